/**
 * zstd compression of page frames on worker threads, so reading and hashing (main thread) overlap compression.
 * Frames live in slots of one anonymous mapping that every thread views: a worker compresses a slot's input into
 * its output in place. Not SharedArrayBuffers: V8 copies into and out of those with a relaxed-atomic memmove, a
 * word at a time, which cost the main thread ~270 ms per GiB dumped (perf: v8::internal::relaxed_memmove).
 */
import type { Worker } from 'node:worker_threads';
import { cpus } from 'node:os';
import { createRequire } from 'node:module';
import { startWorker, sibling, mmap, munmap, PROT, MAP } from '../native/index.js';
import { slotViews, pageAligned, type SlotMemory } from './slots.js';

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
  private readonly memory: SlotMemory;
  private closed = false;
  private readonly exited: Promise<unknown>[] = [];

  /** `slots` frames of `frameBytes` can be in flight at once. */
  constructor(level: number, frameBytes: number, slots: number, readonly threads = Math.max(1, Math.min(4, cpus().length))) {
    const outputBytes = zstd.compressBound(frameBytes);
    const outputAt = pageAligned(frameBytes);
    const stride = outputAt + pageAligned(outputBytes);
    this.memory = { addr: mmap(slots * stride, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS), slots, stride, outputAt, inputBytes: frameBytes, outputBytes };
    this.slots = slotViews(this.memory).map((v, index) => ({ index, ...v }));
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
      this.exited.push(new Promise((done) => w.once('exit', done)));
      w.postMessage({ memory: this.memory });
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

  /**
   * Stop the workers, then unmap the slots: the caller must not touch a slot after this. A worker is asked to
   * stop rather than terminated: terminating one while it is still loading (a dump that fails at once) made
   * koffi's declarations throw into a dying environment, a fatal error for the whole process.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.workers) w.postMessage({ stop: true });
    // once a worker has exited, no compression of its is still writing into a slot
    await Promise.all(this.exited);
    munmap(this.memory.addr, this.memory.slots * this.memory.stride);
  }
}
