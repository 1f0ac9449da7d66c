/**
 * The page streamer, main-thread side: starts the fault thread and the fill workers on one segment table,
 * and reports when everything is placed. Used by `restore` (the host's userfaultfd) and `serve` (a client's).
 */
import type { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { startWorker, sibling, eventfd, eventfdSignal, closeFd } from '../native/index.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import { STAT, STAT_FIELDS, type Damage } from './placer.js';
import { share, segmentAt, unitOf, unitCount, type SegmentTable } from './segments.js';
import { CTL, CTL_WORDS, type FaultReport, type FaultWorkerData, type FillWorkerData, type StreamShared, type WorkerMessage } from './stream-shared.js';

export interface StreamOptions {
  uffd: number;
  /** readable once the process that owns the memory has exited */
  pidfd: number;
  ranges: FaultWorkerData['ranges'];
  fillThreads: number;
  /** page numbers to fill first, in order (a recorded profile) */
  first?: readonly number[];
  /** record first-fault order */
  profile?: boolean;
  /** per fill worker: its MOVE channel and staging area, and which units may be moved whole */
  move?: { hostPid: number; channels: number[]; stages: bigint[]; eligible: Uint8Array };
}

export type StreamStats = Record<keyof typeof STAT, number>;

export interface StreamEnd {
  /** why streaming ended early, if it did */
  stopped?: 'gone' | 'error';
  error?: string;
  faults: FaultReport;
  damage: Damage[];
}

export class Streamer {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
  private readonly stats: Float64Array;
  private readonly stopfd = eventfd();
  private readonly fault: Worker;
  private readonly fillers: Worker[];
  private readonly damage: Damage[] = [];
  private failure: { stopped: 'gone' | 'error'; error?: string } | undefined;
  private faultReport: FaultReport | undefined;
  private faultExit: Promise<void>;
  /** resolves when every unit is placed (or streaming stopped early) */
  readonly full: Promise<void>;
  readonly startedAt = performance.now();
  fullAt = 0;

  constructor(reader: SnapshotReader, table: SegmentTable, opts: StreamOptions) {
    const threads = 1 + opts.fillThreads;
    this.stats = new Float64Array(new SharedArrayBuffer(threads * STAT_FIELDS * 8));
    this.ctl[CTL.HINT] = -1;
    const shared: StreamShared = {
      snapshot: reader.path, frames: reader.manifest.frames, pageSize: reader.pageSize, table: share(table),
      order: fillOrder(table, opts.first ?? []).buffer as SharedArrayBuffer, ctl: this.ctl.buffer as SharedArrayBuffer,
      stats: this.stats.buffer as SharedArrayBuffer, uffd: opts.uffd,
    };
    const faultData: FaultWorkerData = { ...shared, row: 0, pidfd: opts.pidfd, stopfd: this.stopfd, ranges: opts.ranges, profile: !!opts.profile };
    this.fault = startWorker(sibling(import.meta.url, 'fault-worker'), { workerData: faultData });
    this.faultExit = this.watch(this.fault, true);
    this.fillers = Array.from({ length: opts.fillThreads }, (_, i) => {
      const m = opts.move;
      const data: FillWorkerData = {
        ...shared, row: 1 + i,
        move: m && { channel: m.channels[i]!, stage: m.stages[i]!, hostPid: m.hostPid, eligible: m.eligible.buffer as SharedArrayBuffer },
      };
      return startWorker(sibling(import.meta.url, 'fill-worker'), { workerData: data });
    });
    this.full = Promise.all(this.fillers.map((w) => this.watch(w, false))).then(() => {
      this.fullAt = performance.now();
    });
  }

  private watch(w: Worker, isFault: boolean): Promise<void> {
    return new Promise((resolve) => {
      w.on('message', (m: WorkerMessage) => {
        if (m.kind === 'damage') this.damage.push(m);
        else if (m.kind === 'gone') this.failure ??= { stopped: 'gone' };
        else if (m.kind === 'error') {
          this.failure ??= { stopped: 'error', error: m.message };
          Atomics.store(this.ctl, CTL.STOP, 1);
        } else if (m.kind === 'done' && isFault) this.faultReport = m.faults;
      });
      w.on('error', (e) => {
        this.failure ??= { stopped: 'error', error: e.message };
        Atomics.store(this.ctl, CTL.STOP, 1);
      });
      w.on('exit', () => resolve());
    });
  }

  /** Statistics summed over all threads (a moment's view while streaming). */
  totals(): StreamStats {
    const out = Object.fromEntries(Object.keys(STAT).map((k) => [k, 0])) as StreamStats;
    const rows = this.stats.length / STAT_FIELDS;
    for (let r = 0; r < rows; r++) for (const [k, i] of Object.entries(STAT)) out[k as keyof typeof STAT] += this.stats[r * STAT_FIELDS + i]!;
    return out;
  }

  /** Stop filling (if still going), stop the fault thread, and report. */
  async stop(): Promise<StreamEnd> {
    Atomics.store(this.ctl, CTL.STOP, 1);
    await this.full;
    eventfdSignal(this.stopfd);
    await this.faultExit;
    closeFd(this.stopfd);
    return {
      ...this.failure,
      faults: this.faultReport ?? { serviceUs: new Float64Array(0), firstAt: 0, firstTouch: new Float64Array(0) },
      damage: this.damage,
    };
  }

  get failed(): { stopped: 'gone' | 'error'; error?: string } | undefined {
    return this.failure;
  }
}

/** Units in fill order: those holding the given pages first (in their order), then the rest by address. */
function fillOrder(t: SegmentTable, first: readonly number[]): Int32Array {
  const n = unitCount(t);
  const order = new Int32Array(new SharedArrayBuffer(n * 4));
  const seen = new Uint8Array(n);
  let k = 0;
  for (const p of first) {
    const s = segmentAt(t, p);
    if (s < 0) continue;
    const u = unitOf(t, s);
    if (seen[u]) continue;
    seen[u] = 1;
    order[k++] = u;
  }
  for (let u = 0; u < n; u++) if (!seen[u]) order[k++] = u;
  return order;
}
