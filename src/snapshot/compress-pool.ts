/**
 * zstd compression of page frames on worker threads, so reading and hashing (main thread) overlap compression.
 * Frames live in SharedArrayBuffer slots: a worker compresses a slot's input into its output in place.
 */
import type { Worker } from 'node:worker_threads';
import { cpus } from 'node:os';
import { createRequire } from 'node:module';
import { startWorker, sibling } from '../native/index.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');

/** A frame's memory, shared with every worker: the pages going in, the compressed bytes coming out. */
export interface Slot {
  index: number;
  input: Buffer;
  output: Buffer;
}

/** Frames per message to a worker. */
const BATCH = 4;

export class CompressPool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (n: number) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failure: Error | null = null;
  private readonly queued: { id: number; slot: number; length: number }[][];
  private flushing = false;

  readonly slots: Slot[];

  /** `slots` frames of `frameBytes` can be in flight at once. */
  constructor(level: number, frameBytes: number, slots: number, readonly threads = Math.max(1, Math.min(4, cpus().length))) {
    this.slots = Array.from({ length: slots }, (_, index) => ({
      index, input: Buffer.from(new SharedArrayBuffer(frameBytes)), output: Buffer.from(new SharedArrayBuffer(zstd.compressBound(frameBytes))),
    }));
    const shared = this.slots.map((s) => ({ input: s.input.buffer, output: s.output.buffer }));
    this.queued = Array.from({ length: threads }, () => []);
    this.workers = Array.from({ length: threads }, () => {
      const w = startWorker(sibling(import.meta.url, 'compress-worker'), { workerData: { level } });
      w.on('message', (m: { done: { id: number; size?: number; error?: string }[] }) => {
        for (const d of m.done) {
          const p = this.waiting.get(d.id)!;
          this.waiting.delete(d.id);
          if (d.error !== undefined) p.reject(new Error(`zstd: ${d.error}`));
          else p.resolve(d.size!);
        }
      });
      w.on('error', (e) => this.fail(e));
      w.postMessage({ slots: shared });
      return w;
    });
  }

  private fail(e: Error): void {
    this.failure = e;
    for (const p of this.waiting.values()) p.reject(e);
    this.waiting.clear();
  }

  /**
   * Compress the first `length` bytes of the slot's input into its output; resolves to the compressed size.
   * Requests go to a worker BATCH at a time, or when the event loop turns: a message costs more than a frame.
   */
  compress(slot: Slot, length: number): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const q = this.queued[id % this.workers.length]!;
    q.push({ id, slot: slot.index, length });
    const p = new Promise<number>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    if (q.length >= BATCH) this.flush();
    else if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush());
    }
    return p;
  }

  private flush(): void {
    this.flushing = false;
    this.queued.forEach((jobs, i) => {
      if (jobs.length) this.workers[i]!.postMessage({ jobs: jobs.splice(0) });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
