/**
 * The fault thread: waits on the userfaultfd and serves each missing-page fault with exactly the page asked for
 * (a huge page in hugetlb memory), then points the fill workers at that unit so prefetch continues from there.
 * It never waits behind a bulk copy: fill workers do those on their own threads.
 *
 * It also reads the non-cooperative events (REMOVE, UNMAP, REMAP, FORK) and applies them to the address map,
 * with the fill gate closed (gate.ts). It never touches the registered memory itself: that would fault into its
 * own queue and deadlock.
 */
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { poll, readRaw, POLL, decodeUffdMsg, uffdCopy, type UffdMsg } from '../native/index.js';
import { STAT, type Outcome } from './placer.js';
import { segmentAt, segmentsIn, unitOf } from './segments.js';
import { ROW } from './address-map.js';
import { CTL, type FaultWorkerData, type WorkerMessage } from './stream-shared.js';
import { workerContext } from './worker-context.js';

// Started early (while the restore sets up), the worker waits for its data; until it says it has loaded, it must not
// be terminated (see StreamWorkers.terminate).
parentPort!.once('message', (data: FaultWorkerData) => main(data));
parentPort!.postMessage({ kind: 'loaded' } satisfies WorkerMessage);

function main(data: FaultWorkerData): void {
  const framePages = Math.max(1, data.frames.pages[0] ?? 1);
  // (its cache is what it was given, all of it for frames however they come: faults go anywhere)
  const { post, table, ctl, stats, decoder, placer, map, gate } = workerContext(data, Math.max(16, Math.floor(data.cacheBytes / (framePages * data.pageSize))), 0);
  const ps = data.pageSize;
  const psn = BigInt(ps);

  const MSG = 32;
  const msgs = Buffer.alloc(MSG * 64);
  const service: number[] = [];
  const firstTouch: number[] = [];
  const touched = new Set<number>();
  let firstAt = 0;

  /** The placement size (pages) of the registered range holding plan page p. */
  function unitPagesAt(p: number): number {
    for (const r of data.ranges) if (p >= r.first && p < r.first + r.pages) return r.unitPages;
    return 1;
  }

  /** Serve a fault at client page c: the snapshot's page, or a zero page where the plan has none. */
  function serve(c: number): Outcome {
    const at = map ? map.fromClient(c) : { plan: c, delta: 0, state: ROW.LIVE };
    if (!at || at.state !== ROW.LIVE) return placer.zero(BigInt(c) * psn, ps); // memory the process made anew
    const hp = unitPagesAt(at.plan);
    const first = Math.floor(at.plan / hp) * hp;
    if (data.profile && !touched.has(first)) {
      touched.add(first);
      firstTouch.push(first);
    }
    const s = segmentAt(table, first);
    if (s >= 0) Atomics.store(ctl, CTL.HINT, unitOf(table, s));
    if (hp > 1) {
      const [s0, s1] = segmentsIn(table, first, first + hp);
      return placer.placeHuge(first, hp, s0, s1, at.delta);
    }
    if (s < 0) return placer.zero(BigInt(first + at.delta) * psn, ps);
    return placer.placeSegment(s, first, first + 1, at.delta);
  }

  /** Faults read while draining events for a refused placement: served after. */
  const queued: bigint[] = [];

  function apply(m: UffdMsg): void {
    if (!map) return;
    const page = (a: bigint) => Number(a / psn);
    switch (m.event) {
      case 'remove': map.drop(page(m.start), page(m.end), ROW.REMOVED); break;
      case 'unmap': map.drop(page(m.start), page(m.end), ROW.UNMAPPED); break;
      case 'remap': map.move(page(m.from), page(m.to), m.len / ps); break;
      // the child's memory is the parent's as of now: it starts from a copy of the map
      case 'fork': post({ kind: 'fork', ufd: m.ufd, map: map.clone().buffer }); break;
      default: break;
    }
  }

  /** Read what the userfaultfd holds: events are applied now, faults queued. Returns false when it is empty. */
  function drain(): boolean {
    const n = readRaw(data.uffd, msgs);
    if (n <= 0) return false;
    for (let off = 0; off + MSG <= n; off += MSG) {
      const m = decodeUffdMsg(msgs, off);
      if (m.event === 'pagefault') queued.push(m.address);
      else apply(m);
    }
    return true;
  }

  /** Serve one fault, draining events whenever the kernel refuses because one is pending. */
  function serveQueued(addr: bigint, t0: number): Outcome {
    const c = Number(addr / psn);
    let o: Outcome;
    while ((o = serve(c)) === 'retry') drain();
    stats[STAT.faults]! += 1;
    if (!firstAt) firstAt = performance.timeOrigin + performance.now();
    service.push((performance.now() - t0) * 1000);
    return o;
  }

  /**
   * Whether the memory is still there, for a session with no process to watch (a forked child): a COPY from
   * address 0 fails with ESRCH once the mm is gone, and with EFAULT or ENOENT, placing nothing, while it lives.
   */
  function alive(): boolean {
    const r = data.ranges[0];
    if (!r) return false;
    return uffdCopy(data.uffd, BigInt(r.first) * psn, 0n, ps).code !== 'ESRCH';
  }

  const fds = [
    { fd: data.uffd, events: POLL.IN },
    { fd: data.stopfd, events: POLL.IN },
    ...(data.pidfd >= 0 ? [{ fd: data.pidfd, events: POLL.IN }] : []),
    ...(data.conn >= 0 ? [{ fd: data.conn, events: POLL.IN | 0x2000 /* POLLRDHUP */ }] : []),
  ];
  const scratch = Buffer.alloc(fds.length * 8);

  function end(): 'stop' | 'gone' | null {
    const rev = poll(fds, data.pidfd >= 0 || data.conn >= 0 ? -1 : 1000, scratch);
    if (rev[1]) return 'stop';
    if (rev.slice(2).some((r) => r !== 0)) return 'gone';
    if (rev[0]! & (POLL.ERR | POLL.HUP | POLL.NVAL)) return 'gone';
    if (!rev[0] && data.pidfd < 0 && data.conn < 0 && !alive()) return 'gone';
    return null;
  }

  /** Serve everything the userfaultfd holds, with the fill gate closed. Returns false when the memory is gone. */
  function serveAll(): boolean {
    gate.close();
    try {
      while (drain()) {
        const t0 = performance.now();
        while (queued.length) if (serveQueued(queued.shift()!, t0) === 'gone') return false;
      }
      return true;
    } finally {
      gate.open();
    }
  }

  try {
    for (;;) {
      const why = end();
      if (why === 'gone') {
        Atomics.store(ctl, CTL.STOP, 1);
        post({ kind: 'gone' });
      }
      if (why) break;
      if (!serveAll()) {
        Atomics.store(ctl, CTL.STOP, 1);
        post({ kind: 'gone' });
        break;
      }
    }
    post({ kind: 'done', faults: { serviceUs: Float64Array.from(service), firstAt, firstTouch: Float64Array.from(firstTouch) } });
  } catch (e) {
    post({ kind: 'error', message: (e as Error).message });
  } finally {
    decoder.close();
  }
}
