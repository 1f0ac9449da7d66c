/**
 * Starting worker threads whose entry is a module next to the caller, both from dist/ (plain JavaScript) and
 * from the TypeScript sources (tests, tsx), where the worker must register tsx before loading its module.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

export function startWorker(entry: URL, options: WorkerOptions = {}): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => m.register()).then(() => import(${JSON.stringify(entry.href)}))`;
  return new Worker(boot, { ...options, eval: true });
}

/** Block this thread for `ms` milliseconds (where there is nothing to await: a synchronous retry loop). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A typed array of `C` holding `values`, in shared memory: posted to a worker, it is shared, not copied. */
export function sharedArray<T extends ArrayBufferView>(C: { new (b: SharedArrayBuffer): T; BYTES_PER_ELEMENT: number }, values: ArrayLike<number>): T {
  const a = new C(new SharedArrayBuffer(values.length * C.BYTES_PER_ELEMENT));
  (a as unknown as { set(v: ArrayLike<number>): void }).set(values);
  return a;
}

/** The sibling module `name` (given without extension) of `base`, in the same language as `base`. */
export function sibling(base: string, name: string): URL {
  return new URL(`./${name}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);
}
