/**
 * What the streamer's threads share: the control words, and the data each worker starts with. The main thread
 * builds these; fill workers and the fault thread attach to the same SharedArrayBuffers.
 */
import type { FrameIndex } from '../snapshot/manifest.js';
import type { SharedTable } from './segments.js';

/** Control words (Int32Array). */
export const CTL = {
  /** next index into the fill order */
  CURSOR: 0,
  /** a unit a fault just landed in (fill continues from there), or -1 */
  HINT: 1,
  /** 1: stop claiming units (shutdown, or the process is gone) */
  STOP: 2,
} as const;
export const CTL_WORDS = 4;

export interface StreamShared {
  /** the snapshot file and its parents (incremental), oldest first, and the frames of all of them */
  snapshot: string[];
  frames: FrameIndex;
  pageSize: number;
  table: SharedTable;
  /** Int32Array of unit numbers: the order fill workers take units in (profile first, then by address) */
  order: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
  /** Float64Array, one row of STAT_FIELDS per thread */
  stats: SharedArrayBuffer;
  uffd: number;
  /** the address map (address-map.ts) and fill gate (gate.ts): only when the process produces events */
  events: { map: SharedArrayBuffer; gate: SharedArrayBuffer } | null;
}

export interface FillWorkerData extends StreamShared {
  row: number;
  move?: {
    /** this worker's channel to the host, and its staging area there */
    channel: number;
    stage: bigint;
    hostPid: number;
    /** Uint8Array per unit: 1 where the whole unit is stored data that may be moved whole */
    eligible: SharedArrayBuffer;
    /** weigh moving against copying as it goes and take the cheaper (else always move) */
    auto: boolean;
  };
}

export interface FaultWorkerData extends StreamShared {
  row: number;
  /** readable when the process owning the memory has exited; -1 when unknown (a forked child): then the
   * fault thread checks once a second whether the memory is still there */
  pidfd: number;
  /** a connection whose end (EOF or hangup) ends the session, or -1 */
  conn: number;
  /** readable when the main thread wants the fault thread to stop */
  stopfd: number;
  /** registered ranges (page numbers) with their placement size in pages: faults in holes need it */
  ranges: { first: number; pages: number; unitPages: number }[];
  /** record the page numbers of first faults, in order */
  profile: boolean;
  /** bytes of decoded frames the fault thread keeps (a frame of 64 pages decodes in ~90 µs; a page copies in ~3) */
  cacheBytes: number;
}

/**
 * The fault thread's decoded frames, by default. A frame is decoded once for all its pages instead of once per
 * fault: a process touching its memory at random faults in each frame many times. Filled only as faults come.
 */
export const FAULT_CACHE_BYTES = 256 << 20;

/** Messages from the workers to the main thread. */
export type WorkerMessage =
  | { kind: 'loaded' }
  | { kind: 'damage'; frame: number; addr: bigint; pages: number; message: string }
  | { kind: 'gone' }
  | { kind: 'fork'; ufd: number; map: SharedArrayBuffer }
  | { kind: 'move-choice'; moveMs: number; copyMs: number; moved: number; copied: number }
  | { kind: 'error'; message: string }
  | { kind: 'done'; faults?: FaultReport };

export interface FaultReport {
  /** service time of each fault, µs (from reading the message to the page being placed) */
  serviceUs: Float64Array;
  /** performance.timeOrigin + performance.now() of the first fault served, or 0 */
  firstAt: number;
  /** page numbers in first-fault order (when profiling) */
  firstTouch: Float64Array;
}
