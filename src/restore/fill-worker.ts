/**
 * A fill worker: claims units (2 MiB blocks) and places them through userfaultfd in large runs, until none are
 * left. After a fault it continues from the unit the fault landed in, so prefetch follows the program.
 */
import { parentPort } from 'node:worker_threads';
import { processVmWritev, type Addr } from '../native/index.js';
import { FormatError } from '../snapshot/format.js';
import { hostMove } from './host-protocol.js';
import { STAT, type Outcome } from './placer.js';
import { Op, UNIT, UNIT_PAGES } from './segments.js';
import { ROW } from './address-map.js';
import { CTL, type FillWorkerData, type WorkerMessage } from './stream-shared.js';
import { workerContext } from './worker-context.js';
import { workObjectJob, type ObjectJob } from './object-fill.js';

// Started early (while the restore sets up), the worker waits for its data, meanwhile helping to fill shmem objects;
// until it says it has loaded, it must not be terminated (see StreamWorkers.terminate).
const onMessage = (m: ObjectJob | FillWorkerData) => {
  if ('kind' in m) return workObjectJob(m);
  parentPort!.off('message', onMessage); // the worker ends when the fill does
  main(m);
};
parentPort!.on('message', onMessage);
parentPort!.postMessage({ kind: 'loaded' } satisfies WorkerMessage);

function main(data: FillWorkerData): void {
  const { post, table, ctl, stats, decoder, placer, map, gate } = workerContext(data, 2);
  const order = new Int32Array(data.order);
  const ps = data.pageSize;
  const psn = BigInt(ps);
  const eligible = data.move ? new Uint8Array(data.move.eligible) : null;
  const units = table.unitState.length;
  const retryPause = new Int32Array(new SharedArrayBuffer(4));
  const stopping = () => Atomics.load(ctl, CTL.STOP) !== 0;

  /** How much dearer moving may be and still be chosen; how often `auto` re-tries the other way. */
  const MOVE_TOLERANCE = 1.25;
  const REPROBE = 16;

  /**
   * Segments shorter than this are gathered with their neighbours and placed by one copy: an ioctl costs 1.7 µs
   * besides its pages (a page copied alone 2.9 µs, in 2 MiB 1.2 µs), gathering a page 0.13 µs. 512 MiB of one
   * repeated page restored in 430 ms, then 280 ms.
   */
  const GATHER_BELOW = 8;

  /** How far past a fault's unit a worker keeps going before it returns to the global order. */
  const FOLLOW = 64;
  let follow = -1;
  let followed = 0;

  function claim(): number {
    const hint = Atomics.exchange(ctl, CTL.HINT, -1);
    if (hint >= 0) {
      follow = hint;
      followed = 0;
    }
    while (follow >= 0 && follow < units && followed < FOLLOW) {
      const u = follow++;
      followed++;
      if (Atomics.compareExchange(table.unitState, u, UNIT.PENDING, UNIT.CLAIMED) === UNIT.PENDING) return u;
    }
    follow = -1;
    for (;;) {
      const i = Atomics.add(ctl, CTL.CURSOR, 1);
      if (i >= order.length) return -1;
      const u = order[i]!;
      if (Atomics.compareExchange(table.unitState, u, UNIT.PENDING, UNIT.CLAIMED) === UNIT.PENDING) return u;
    }
  }

  /**
   * Place plan pages [from, to) by `place(from, to, delta)` wherever they are now (`delta` moves them there), inside
   * the gate; again while a pending event makes the kernel refuse (the fault thread drains it meanwhile).
   */
  function inGate(from: number, to: number, place: (from: number, to: number, delta: number) => Outcome): Outcome {
    for (;;) {
      gate.enter();
      let o: Outcome = 'ok';
      try {
        if (!map) o = place(from, to, 0);
        else {
          for (const p of map.pieces(from, to)) {
            if (p.state !== ROW.LIVE) continue;
            o = place(p.from, p.to, p.delta);
            if (o !== 'ok') break;
          }
        }
      } finally {
        gate.exit();
      }
      if (o !== 'retry' || stopping()) return o;
      Atomics.wait(retryPause, 0, 0, 0.05);
    }
  }

  /** Plan pages [from, to) of segment s. */
  const placeChunk = (s: number, from: number, to: number) => inGate(from, to, (a, b, delta) => placer.placeSegment(s, a, b, delta));

  /** Segment s in chunks of one frame (data) or whole (zero): what one pass through the gate places. */
  function placeSegment(s: number): Outcome {
    const first = table.page[s]!;
    if (table.op[s] !== Op.DATA) return placeChunk(s, first, first + table.pages[s]!);
    for (const sp of decoder.spans(table.src[s]!, table.pages[s]!)) {
      const o = placeChunk(s, first + sp.at, first + sp.at + sp.pages);
      if (o !== 'ok') return o;
    }
    return 'ok';
  }

  /** A huge page is placed whole, where it is now (the kernel splits hugetlb mappings only at huge pages). */
  function placeHuge(h: number, hp: number, s0: number, s1: number): Outcome {
    for (;;) {
      gate.enter();
      let o: Outcome = 'ok';
      try {
        const at = map ? map.pieces(h, h + hp).find((p) => p.state === ROW.LIVE) : { delta: 0 };
        if (at) o = placer.placeHuge(h, hp, s0, s1, at.delta);
      } finally {
        gate.exit();
      }
      if (o !== 'retry' || stopping()) return o;
      Atomics.wait(retryPause, 0, 0, 0.05);
    }
  }

  const block = Buffer.allocUnsafeSlow(UNIT_PAGES * ps);

  /**
   * Whether to move or copy a block that could be moved. `move` mode always moves. `auto` keeps a running cost
   * of each (the first blocks try both, and every REPROBE-th block tries the one not in use) and moves unless
   * that costs clearly more: a moved block keeps its huge page, but staging it takes a fresh huge page, which
   * some machines (VMs whose free memory goes back to the hypervisor) make far dearer than small pages, and
   * that changes as the restore goes on.
   */
  const choice = {
    auto: !!data.move?.auto,
    cost: { move: null as number | null, copy: null as number | null },
    seen: 0,
    moved: 0,
    copied: 0,
    use(): boolean {
      if (!this.auto) return true;
      const { move, copy } = this.cost;
      if (move === null) return true;
      if (copy === null) return false;
      const prefer = move <= copy * MOVE_TOLERANCE;
      return ++this.seen % REPROBE === 0 ? !prefer : prefer;
    },
    sample(moved: boolean, ms: number): void {
      if (!this.auto) return;
      const k = moved ? 'move' : 'copy';
      this.cost[k] = this.cost[k] === null ? ms : 0.7 * this.cost[k]! + 0.3 * ms;
      if (moved) this.moved++;
      else this.copied++;
    },
  };

  /**
   * The pages of segments [s0, s1) (data and zero), into `block` from its start, as they lie from the first one on.
   * False where a frame is damaged.
   */
  function assemble(s0: number, s1: number): boolean {
    const first = table.page[s0]!;
    try {
      for (let s = s0; s < s1; s++) {
        if (table.op[s] === Op.ZERO) {
          block.fill(0, (table.page[s]! - first) * ps, (table.page[s]! - first + table.pages[s]!) * ps);
          continue;
        }
        for (const sp of decoder.spans(table.src[s]!, table.pages[s]!)) {
          const to = (table.page[s]! - first + sp.at) * ps;
          if (sp.slot === 0 && sp.pages === decoder.frames.pages[sp.frame]) decoder.decodeInto(sp.frame, block.subarray(to));
          else decoder.frame(sp.frame).copy(block, to, sp.slot * ps, (sp.slot + sp.pages) * ps);
        }
      }
      return true;
    } catch (e) {
      if (e instanceof FormatError) return false;
      throw e;
    }
  }

  /**
   * Place a whole 2 MiB block of stored data (and zero pages) by UFFDIO_MOVE: assemble it, write it into the host's staging area
   * (a fresh huge page there), and have the host move it into place: the page tables get one huge page. Whatever
   * the move could not place (a page already there: EEXIST; a page the kernel will not move: EBUSY) is copied.
   */
  function moveUnit(s0: number, s1: number): Outcome | 'fallback' {
    const m = data.move!;
    const first = table.page[s0]!;
    if (!assemble(s0, s1)) return 'fallback';
    const dst: Addr = BigInt(first) * psn;
    processVmWritev(m.hostPid, [block], [{ addr: m.stage, len: block.length }]);
    const [r] = hostMove(m.channel, [{ dst, src: m.stage, len: block.length }]);
    stats[STAT.moved]! += r!.bytes;
    if (r!.bytes === block.length) return 'ok';
    return placer.copy(dst + BigInt(r!.bytes), block.subarray(r!.bytes));
  }

  function fillUnit(u: number): Outcome {
    const s0 = table.unitStart[u]!;
    const s1 = table.unitStart[u + 1]!;
    const shift = table.shift[s0]!;
    if (shift > 0) {
      const hp = 2 ** shift;
      const last = table.page[s1 - 1]! + table.pages[s1 - 1]!;
      for (let h = Math.floor(table.page[s0]! / hp) * hp; h < last; h += hp) {
        const o = placeHuge(h, hp, s0, s1);
        if (o !== 'ok') return o;
      }
      return 'ok';
    }
    if (eligible?.[u]) {
      const t0 = performance.now();
      if (choice.use()) {
        const o = moveUnit(s0, s1);
        if (o !== 'fallback') {
          choice.sample(true, performance.now() - t0);
          return o;
        }
      } else {
        const o = copyUnit(s0, s1);
        choice.sample(false, performance.now() - t0);
        return o;
      }
    }
    return copyUnit(s0, s1);
  }

  function copyUnit(s0: number, s1: number): Outcome {
    for (let s = s0; s < s1; ) {
      const e = smallStretchEnd(s, s1);
      let o: Outcome = 'ok';
      if (e - s > 1) o = placeGathered(s, e);
      else if (table.op[s] !== Op.POISON) o = placeSegment(s); // (POISON: placed before streaming began)
      if (o === 'gone' || o === 'retry') return o;
      s = Math.max(e, s + 1);
    }
    return 'ok';
  }

  /**
   * Where the stretch of small DATA segments starting at s ends, each beginning where the one before ends: pages
   * stored once and placed many times (dedupe) cut the data into such pieces, down to a page each where one page
   * repeats all along (memory filled with a pattern). Each would cost an ioctl of its own.
   */
  function smallStretchEnd(s: number, s1: number): number {
    let e = s;
    while (e < s1 && table.op[e] === Op.DATA && table.pages[e]! < GATHER_BELOW && (e === s || table.page[e] === table.page[e - 1]! + table.pages[e - 1]!)) e++;
    return e;
  }

  /** Segments [s, e), a stretch of small ones: their pages gathered and placed by one copy. */
  function placeGathered(s: number, e: number): Outcome {
    if (!assemble(s, e)) {
      // (a damaged frame: each segment placed on its own, which poisons its pages and reports them)
      for (let k = s; k < e; k++) {
        const o = placeSegment(k);
        if (o === 'gone' || o === 'retry') return o;
      }
      return 'ok';
    }
    const first = table.page[s]!;
    const end = table.page[e - 1]! + table.pages[e - 1]!;
    return inGate(first, end, (a, b, delta) => placer.copy(BigInt(a + delta) * psn, block.subarray((a - first) * ps, (b - first) * ps)));
  }

  try {
    for (;;) {
      if (stopping()) break;
      const u = claim();
      if (u < 0) break;
      const o = fillUnit(u);
      Atomics.store(table.unitState, u, UNIT.DONE);
      stats[STAT.units]! += 1;
      if (o === 'gone') {
        Atomics.store(ctl, CTL.STOP, 1);
        post({ kind: 'gone' });
        break;
      }
    }
    if (choice.auto && choice.moved + choice.copied > 0) {
      post({ kind: 'move-choice', moveMs: choice.cost.move ?? 0, copyMs: choice.cost.copy ?? 0, moved: choice.moved, copied: choice.copied });
    }
    post({ kind: 'done' });
  } catch (e) {
    post({ kind: 'error', message: (e as Error).message });
  } finally {
    decoder.close();
  }
}
