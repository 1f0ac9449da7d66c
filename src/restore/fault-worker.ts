/**
 * The fault thread: waits on the userfaultfd and serves each missing-page fault with exactly the page asked for
 * (a huge page in hugetlb memory), then points the fill workers at that unit so prefetch continues from there.
 * It never waits behind a bulk copy: fill workers do those on their own threads.
 *
 * It never touches the registered memory itself (that would fault into its own queue and deadlock).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { poll, readRaw, POLL, decodeUffdMsg } from '../native/index.js';
import { FrameDecoder } from '../snapshot/frame-decoder.js';
import { Placer, STAT, STAT_FIELDS, type Outcome } from './placer.js';
import { attach, segmentAt, segmentsIn, unitOf } from './segments.js';
import { CTL, type FaultWorkerData, type WorkerMessage } from './stream-shared.js';

const data = workerData as FaultWorkerData;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);
const table = attach(data.table);
const ctl = new Int32Array(data.ctl);
const stats = new Float64Array(data.stats, data.row * STAT_FIELDS * 8, STAT_FIELDS);
const decoder = new FrameDecoder(data.snapshot, data.frames, data.pageSize, 16);
const placer = new Placer(data.uffd, decoder, table, stats, (d) => post({ kind: 'damage', ...d }));
const ps = data.pageSize;
const psn = BigInt(ps);

const MSG = 32;
const msgs = Buffer.alloc(MSG * 64);
const service: number[] = [];
const firstTouch: number[] = [];
const touched = new Set<number>();
let firstAt = 0;

/** The placement size (pages) of the registered range holding page p. */
function unitPagesAt(p: number): number {
  for (const r of data.ranges) if (p >= r.first && p < r.first + r.pages) return r.unitPages;
  return 1;
}

function serve(addr: bigint): Outcome {
  const page = Number(addr / psn);
  const hp = unitPagesAt(page);
  const first = Math.floor(page / hp) * hp;
  if (data.profile && !touched.has(first)) {
    touched.add(first);
    firstTouch.push(first);
  }
  const s = segmentAt(table, first);
  if (s >= 0) Atomics.store(ctl, CTL.HINT, unitOf(table, s));
  if (hp > 1) {
    const [s0, s1] = segmentsIn(table, first, first + hp);
    return placer.placeHuge(first, hp, s0, s1);
  }
  if (s < 0) return placer.zero(BigInt(first) * psn, ps);
  return placer.placeSegment(s, first, first + 1);
}

const fds = [
  { fd: data.uffd, events: POLL.IN },
  { fd: data.pidfd, events: POLL.IN },
  { fd: data.stopfd, events: POLL.IN },
];
const scratch = Buffer.alloc(fds.length * 8);

try {
  loop: for (;;) {
    const rev = poll(fds, -1, scratch);
    if (rev[2]) break;
    if (rev[1]) {
      Atomics.store(ctl, CTL.STOP, 1);
      post({ kind: 'gone' });
      break;
    }
    if (rev[0]! & (POLL.ERR | POLL.HUP | POLL.NVAL)) break;
    for (;;) {
      const n = readRaw(data.uffd, msgs);
      if (n < 0) break; // EAGAIN: drained
      const t0 = performance.now();
      for (let off = 0; off + MSG <= n; off += MSG) {
        const m = decodeUffdMsg(msgs, off);
        if (m.event !== 'pagefault') continue; // the restore host never produces other events
        const o = serve(m.address);
        stats[STAT.faults]! += 1;
        if (!firstAt) firstAt = performance.timeOrigin + performance.now();
        service.push((performance.now() - t0) * 1000);
        if (o === 'gone') {
          Atomics.store(ctl, CTL.STOP, 1);
          post({ kind: 'gone' });
          break loop;
        }
      }
    }
  }
  post({ kind: 'done', faults: { serviceUs: Float64Array.from(service), firstAt, firstTouch: Float64Array.from(firstTouch) } });
} catch (e) {
  post({ kind: 'error', message: (e as Error).message });
} finally {
  decoder.close();
}
