/**
 * zstd compression of page frames on worker threads, so reading and hashing (main thread) overlap compression.
 * Results come back per frame; the writer orders them.
 */
import { Worker } from 'node:worker_threads';
import { cpus } from 'node:os';

const fromSource = import.meta.url.endsWith('.ts');

function startWorker(level: number): Worker {
  const entry = new URL(fromSource ? './compress-worker.ts' : './compress-worker.js', import.meta.url);
  if (!fromSource) return new Worker(entry, { workerData: { level } });
  // Running from TypeScript sources (tests, tsx): register tsx in the worker before loading its module.
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => m.register()).then(() => import(${JSON.stringify(entry.href)}))`;
  return new Worker(boot, { eval: true, workerData: { level } });
}

export class CompressPool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failure: Error | null = null;

  constructor(level: number, threads = Math.max(1, Math.min(4, cpus().length))) {
    this.workers = Array.from({ length: threads }, () => {
      const w = startWorker(level);
      w.on('message', (m: { id: number; out: Uint8Array }) => {
        const p = this.waiting.get(m.id)!;
        this.waiting.delete(m.id);
        p.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
      });
      w.on('error', (e) => this.fail(e));
      return w;
    });
  }

  private fail(e: Error): void {
    this.failure = e;
    for (const p of this.waiting.values()) p.reject(e);
    this.waiting.clear();
  }

  get inFlight(): number {
    return this.waiting.size;
  }

  /**
   * Compress one frame. `frame` must own its whole ArrayBuffer (allocate it with `new ArrayBuffer`): it is
   * transferred to the worker and unusable here afterwards.
   */
  compress(frame: Uint8Array): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const w = this.workers[id % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      if (frame.byteOffset !== 0 || frame.byteLength !== frame.buffer.byteLength) throw new Error('frame must own its ArrayBuffer');
      w.postMessage({ id, frame }, [frame.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
