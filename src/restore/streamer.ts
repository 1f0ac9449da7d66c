/**
 * The page streamer, main-thread side: starts the fault thread and the fill workers on one segment table,
 * and reports when everything is placed. Used by `restore` (the host's userfaultfd) and `serve` (a client's).
 */
import type { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { startWorker, sibling, eventfd, eventfdSignal, closeFd, setNonblocking } from '../native/index.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import { STAT, STAT_FIELDS, type Damage } from './placer.js';
import { share, segmentAt, unitOf, unitCount, type SegmentTable } from './segments.js';
import { AddressMap } from './address-map.js';
import { Gate } from './gate.js';
import { CTL, CTL_WORDS, FAULT_CACHE_BYTES, type FaultReport, type FaultWorkerData, type FillWorkerData, type StreamShared, type WorkerMessage } from './stream-shared.js';

export interface StreamOptions {
  uffd: number;
  /** readable once the process that owns the memory has exited; -1 if there is none to watch */
  pidfd: number;
  /** a connection whose end ends the session (serve), or -1 */
  conn?: number;
  /** the process produces non-cooperative events: track them (an address map to start from, or a fresh one) */
  events?: AddressMap | true;
  /** called with the new userfaultfd when the process forks (EVENT_FORK) */
  onFork?: (ufd: number, map: AddressMap) => void;
  ranges: FaultWorkerData['ranges'];
  fillThreads: number;
  /** page numbers to fill first, in order (a recorded profile) */
  first?: readonly number[];
  /** record first-fault order */
  profile?: boolean;
  /** decoded frames the fault thread may keep, bytes (default FAULT_CACHE_BYTES) */
  faultCacheBytes?: number;
  /** per fill worker: its MOVE channel and staging area, and which units may be moved whole */
  move?: { hostPid: number; channels: number[]; stages: bigint[]; eligible: Uint8Array; auto: boolean };
}

export type StreamStats = Record<keyof typeof STAT, number>;

/**
 * The streamer's threads, started before they have anything to do: a worker takes tens of milliseconds to load,
 * which a restore spends setting up the host meanwhile. Idle ones do not keep the process alive.
 */
export class StreamWorkers {
  readonly fault: Worker;
  readonly fillers: Worker[];

  /** per worker: resolves once it has loaded its modules (or exited) */
  private readonly loaded: Promise<unknown>[];
  /** per worker: resolves when it has exited (watched from the start: a worker can die before it is given work) */
  readonly exited: Promise<void>[];
  /** what a worker died of before a streamer watched it (loading its modules can fail) */
  failure: Error | undefined;

  constructor(fillThreads: number) {
    this.fault = startWorker(sibling(import.meta.url, 'fault-worker'));
    this.fillers = Array.from({ length: fillThreads }, () => startWorker(sibling(import.meta.url, 'fill-worker')));
    this.exited = this.all.map((w) => new Promise((done) => w.once('exit', () => done())));
    this.loaded = this.all.map((w, i) => new Promise((done) => {
      w.on('message', (m: WorkerMessage) => m.kind === 'loaded' && done(m));
      void this.exited[i]!.then(done);
    }));
    for (const w of this.all) {
      w.on('error', (e) => {
        this.failure ??= e;
      });
      w.unref();
    }
  }

  get all(): Worker[] {
    return [this.fault, ...this.fillers];
  }

  /**
   * Terminate the workers (those still running: never given anything to do, or left behind by a failure). Only
   * once each has loaded: terminating a worker while koffi is declaring its functions makes that throw into a
   * dying environment, which Node treats as a fatal error of the whole process (a restore failing during setup).
   */
  async terminate(): Promise<void> {
    // not awaiting the exit: a worker inside a blocking call ends when that returns
    await Promise.all(this.all.map(async (w, i) => {
      w.ref(); // an idle worker does not keep the process alive, but waiting for it must
      await this.loaded[i];
      void w.terminate();
    }));
  }
}

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
  private fillData: FillWorkerData[] | null;
  private readonly damage: Damage[] = [];
  /** what each fill worker's `auto` weighing did: blocks moved and copied, and the last costs (ms) */
  readonly moveChoices: { moveMs: number; copyMs: number; moved: number; copied: number }[] = [];
  private failure: { stopped: 'gone' | 'error'; error?: string } | undefined;
  private readonly onFork?: StreamOptions['onFork'];
  /** resolves when the fault thread has ended (the process went away, or stop()) */
  readonly ended: Promise<void>;
  private faultReport: FaultReport | undefined;
  private faultExit: Promise<void>;
  private fillersExit: Promise<void>;
  /** resolves when every unit is placed; never, without fill workers */
  readonly full: Promise<void>;
  readonly startedAt = performance.now();
  fullAt = 0;
  /** where the plan's pages are now, when the process produces events */
  readonly map: AddressMap | null;

  constructor(reader: SnapshotReader, table: SegmentTable, opts: StreamOptions, workers = new StreamWorkers(opts.fillThreads)) {
    // The fault thread drains the userfaultfd until a read finds it empty: a blocking one (a client's, or the one
    // the kernel makes for its fork child with the client's creation flags) would stall it in read.
    setNonblocking(opts.uffd);
    const threads = 1 + workers.fillers.length;
    this.stats = new Float64Array(new SharedArrayBuffer(threads * STAT_FIELDS * 8));
    this.ctl[CTL.HINT] = -1;
    this.map = opts.events === true ? AddressMap.identity(opts.ranges) : (opts.events ?? null);
    const shared: StreamShared = {
      ...source(reader), pageSize: reader.pageSize, table: share(table),
      order: fillOrder(table, opts.first ?? []).buffer as SharedArrayBuffer, ctl: this.ctl.buffer as SharedArrayBuffer,
      stats: this.stats.buffer as SharedArrayBuffer, uffd: opts.uffd,
      events: this.map && { map: this.map.buffer, gate: Gate.buffer() },
    };
    const faultData: FaultWorkerData = {
      ...shared, row: 0, pidfd: opts.pidfd, conn: opts.conn ?? -1, stopfd: this.stopfd, ranges: opts.ranges, profile: !!opts.profile,
      cacheBytes: opts.faultCacheBytes ?? FAULT_CACHE_BYTES,
    };
    this.onFork = opts.onFork;
    for (const w of workers.all) w.ref();
    this.fault = workers.fault;
    this.faultExit = this.watch(this.fault, workers.exited[0]!, true);
    if (workers.failure) this.fail(workers.failure.message);
    this.fault.postMessage(faultData);
    this.fillers = workers.fillers;
    this.fillData = this.fillers.map((_, i) => {
      const m = opts.move;
      return {
        ...shared, row: 1 + i,
        move: m && { channel: m.channels[i]!, stage: m.stages[i]!, hostPid: m.hostPid, eligible: m.eligible.buffer as SharedArrayBuffer, auto: m.auto },
      };
    });
    this.fillersExit = Promise.all(this.fillers.map((w, i) => this.watch(w, workers.exited[1 + i]!, false))).then(() => {});
    this.full = this.fillers.length === 0 ? new Promise(() => {}) : this.fillersExit.then(() => {
      if (!this.failure && !Atomics.load(this.ctl, CTL.STOP)) this.fullAt = performance.now();
    });
    /** streaming ends early when the fault thread sees the process go */
    this.ended = this.faultExit;
  }

  /**
   * Start the background fill. Faults are served from construction on; the fill waits for this, so a caller can
   * let the process (or itself) touch its working set first. Idempotent.
   */
  startFill(): void {
    this.fillData?.forEach((data, i) => this.fillers[i]!.postMessage(data));
    this.fillData = null;
  }

  private watch(w: Worker, exited: Promise<void>, isFault: boolean): Promise<void> {
    w.on('message', (m: WorkerMessage) => {
      if (m.kind === 'damage') this.damage.push(m);
      else if (m.kind === 'fork') this.onFork?.(m.ufd, AddressMap.attach(m.map));
      else if (m.kind === 'move-choice') this.moveChoices.push(m);
      else if (m.kind === 'gone') this.failure ??= { stopped: 'gone' };
      else if (m.kind === 'error') this.fail(m.message);
      else if (m.kind === 'done' && isFault) this.faultReport = m.faults;
    });
    w.on('error', (e) => this.fail(e.message));
    return exited;
  }

  /** Stop everything: a thread failed. */
  private fail(error: string): void {
    this.failure ??= { stopped: 'error', error };
    Atomics.store(this.ctl, CTL.STOP, 1);
  }

  /** Statistics summed over all threads (a moment's view while streaming). */
  totals(): StreamStats {
    const out = Object.fromEntries(Object.keys(STAT).map((k) => [k, 0])) as StreamStats;
    const rows = this.stats.length / STAT_FIELDS;
    for (let r = 0; r < rows; r++) for (const [k, i] of Object.entries(STAT)) out[k as keyof typeof STAT] += this.stats[r * STAT_FIELDS + i]!;
    return out;
  }

  private stopped?: Promise<StreamEnd>;

  /** Stop filling (if still going), stop the fault thread, and report. Once; later calls get the same end. */
  stop(): Promise<StreamEnd> {
    this.stopped ??= this.finish();
    return this.stopped;
  }

  private async finish(): Promise<StreamEnd> {
    Atomics.store(this.ctl, CTL.STOP, 1);
    this.startFill(); // fillers never started see STOP and end
    await this.fillersExit;
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

/** The files and frames the threads decode: the snapshot's, and its parents' for an incremental one. */
function source(reader: SnapshotReader): { snapshot: string[]; frames: StreamShared['frames'] } {
  const s = reader.frameSource();
  return { snapshot: s.paths, frames: s.frames };
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
