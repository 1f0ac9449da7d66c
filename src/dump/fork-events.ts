/**
 * The forks of a precopy's targets, as userfaultfd tells them (UFFD_FEATURE_EVENT_FORK): a child of a tracked process
 * keeps its parent's registration and write protection, under a userfaultfd of its own that the event brings, so
 * its writes are tracked in its own page tables. What must then hold is that every process forked meanwhile is still
 * there, frozen, to be looked at (one gone took what it wrote with its page tables): forks are counted per family
 * (a target tracked and every process forked from it since), and compared at the freeze with the processes found.
 * The events are read by a thread of their own (fork-events-worker.ts).
 */
import type { Worker } from 'node:worker_threads';
import { startWorker, sibling, closeAsync } from '../native/index.js';
import { openFilesLimit } from '../proc/index.js';

export type ForkEventsCommand = { kind: 'watch'; fd: number; family: number } | { kind: 'unwatch'; fd: number } | { kind: 'census' } | { kind: 'sync' } | { kind: 'stop' };
export interface ForkEventsData {
  /** Int32 per family: forks seen */
  forks: SharedArrayBuffer;
  /** Int32 per family: children let go (their userfaultfds closed at once: more than maxChildren) */
  dropped: SharedArrayBuffer;
  /** Int32 per family: children found gone by a census */
  gone: SharedArrayBuffer;
  /** children's userfaultfds held at most */
  maxChildren: number;
  /** Int32 [commands taken by the thread, 1 once it polls nothing any more] */
  ack: SharedArrayBuffer;
}

/** Families at most (one per target tracked). */
const FAMILIES = 4096;

export class ForkEvents {
  private sent = 0;
  private families = 0;
  private stopped?: Promise<void>;

  private constructor(private readonly worker: Worker, private readonly forks: Int32Array, private readonly dropped: Int32Array, private readonly gone: Int32Array, private readonly ack: Int32Array,
    /** children's userfaultfds held at most (a quarter of the open files pagesnap may have): more are let go */
    readonly maxChildren: number) {}

  static start(): ForkEvents {
    const data: ForkEventsData = {
      forks: new SharedArrayBuffer(4 * FAMILIES), dropped: new SharedArrayBuffer(4 * FAMILIES), gone: new SharedArrayBuffer(4 * FAMILIES), ack: new SharedArrayBuffer(8),
      maxChildren: Math.floor(openFilesLimit() / 4),
    };
    const worker = startWorker(sibling(import.meta.url, 'fork-events-worker'), { workerData: data });
    worker.unref();
    return new ForkEvents(worker, new Int32Array(data.forks), new Int32Array(data.dropped), new Int32Array(data.gone), new Int32Array(data.ack), data.maxChildren);
  }

  /** A new family, for a target about to be tracked: its number. Undefined when there is no room for one. */
  family(): number | undefined {
    return this.families < FAMILIES ? this.families++ : undefined;
  }

  /** Read the fork events of `fd`, a userfaultfd of `family`, from now on. */
  watch(fd: number, family: number): void {
    this.send({ kind: 'watch', fd, family });
  }

  /** Stop reading `fd`, before it is closed: returns once the thread no longer polls it (or nothing, once stopped). */
  unwatch(fd: number): void {
    if (!this.stopped) this.send({ kind: 'unwatch', fd });
    this.taken();
  }

  /** The forks seen in `family` so far. */
  forksOf(family: number): number {
    return Atomics.load(this.forks, family);
  }

  /** The children of `family` let go so far: their memory untracked, what they write is not seen. */
  droppedOf(family: number): number {
    return Atomics.load(this.dropped, family);
  }

  /**
   * Look, now, which children's memory is gone (exited, or exec'd) and let them go: returns how many, once the thread
   * has. None once stopped.
   */
  census(): number {
    if (this.stopped) return 0;
    const total = () => this.gone.reduce((sum, n) => sum + n, 0);
    const before = total();
    this.send({ kind: 'census' });
    this.taken();
    return total() - before;
  }

  /**
   * Wait until the thread has counted every event it has read (a fork returns in its parent once its event is read,
   * a moment before the thread counts it): then, with the processes frozen, the counts are final.
   */
  settle(): void {
    if (this.stopped) return;
    this.send({ kind: 'sync' });
    this.taken();
  }

  /** The children of `family` found gone by the censuses so far (what they wrote is in the memory they shared then). */
  goneOf(family: number): number {
    return Atomics.load(this.gone, family);
  }

  /**
   * Stop the thread, then close the children's userfaultfds it held (their tracking ends with them): resolves once
   * they are. The trackers' own may be closed meanwhile (unwatch waits for the thread to have stopped). A thread that
   * failed cannot say which: those close as pagesnap exits.
   */
  stop(): Promise<void> {
    this.stopped ??= new Promise<number[]>((resolve) => {
      this.worker.once('message', (m: { children: number[] }) => resolve(m.children));
      this.worker.once('error', () => resolve([]));
      this.worker.once('exit', () => resolve([]));
      this.send({ kind: 'stop' });
    }).then(async (children) => {
      await Promise.all(children.map((fd) => closeAsync(fd, 'the userfaultfd of a process forked by a target')));
    });
    return this.stopped;
  }

  private send(c: ForkEventsCommand): void {
    this.sent++;
    this.worker.postMessage(c);
  }

  /** Wait until the thread has taken every command sent (it looks every few ms), or has ended. */
  private taken(): void {
    for (let seen = Atomics.load(this.ack, 0); seen < this.sent && Atomics.load(this.ack, 1) === 0; seen = Atomics.load(this.ack, 0)) Atomics.wait(this.ack, 0, seen, 100);
  }
}
