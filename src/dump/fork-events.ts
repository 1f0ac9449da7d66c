/**
 * The forks of a precopy's targets, as userfaultfd tells them (UFFD_FEATURE_EVENT_FORK): a child of a tracked process
 * keeps its parent's registration and write protection, under a userfaultfd of its own that the event brings, so
 * its writes are tracked in its own page tables. What must then hold is that every process forked meanwhile is still
 * there, frozen, to be looked at (one gone took what it wrote with its page tables): forks are counted per family
 * (a target tracked and every process forked from it since), and compared at the freeze with the processes found.
 * The events are read by a thread of their own (fork-events-worker.ts).
 */
import type { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { startWorker, sibling, closeAsync, PagesnapError } from '../native/index.js';
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
/**
 * How long the main thread waits for the thread to take a command (it looks every 10 ms). It waits with the targets
 * frozen, in a loop no signal handler can run beside: a thread that never answers would keep them frozen for ever,
 * Ctrl-C of pagesnap included. Past this the thread is taken for stuck and the dump fails (resuming them).
 */
const ANSWER_MS = 10_000;

export class ForkEvents {
  private sent = 0;
  private families = 0;
  private stopped?: Promise<void>;
  /** the thread did not take a command in time: it is no longer waited for */
  private stuck = false;

  private constructor(private readonly worker: Worker, private readonly forks: Int32Array, private readonly dropped: Int32Array, private readonly gone: Int32Array, private readonly ack: Int32Array,
    /** children's userfaultfds held at most (a quarter of the open files pagesnap may have): more are let go */
    readonly maxChildren: number, private readonly answerMs: number) {}

  /** (`entry` and `answerMs` are for the tests: a thread that never answers, and a shorter wait for it) */
  static start(entry = sibling(import.meta.url, 'fork-events-worker'), answerMs = ANSWER_MS): ForkEvents {
    const data: ForkEventsData = {
      forks: new SharedArrayBuffer(4 * FAMILIES), dropped: new SharedArrayBuffer(4 * FAMILIES), gone: new SharedArrayBuffer(4 * FAMILIES), ack: new SharedArrayBuffer(8),
      maxChildren: Math.floor(openFilesLimit() / 4),
    };
    const worker = startWorker(entry, { workerData: data });
    worker.unref();
    return new ForkEvents(worker, new Int32Array(data.forks), new Int32Array(data.dropped), new Int32Array(data.gone), new Int32Array(data.ack), data.maxChildren, answerMs);
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

  /**
   * Wait until the thread has taken every command sent (it looks every few ms), or has ended. A thread stuck past
   * `answerMs` is stopped (once it returns to JavaScript; the children's userfaultfds it held close as pagesnap
   * exits) and not waited for again: the caller gets an error, and every later call returns at once.
   */
  private taken(): void {
    const deadline = performance.now() + this.answerMs;
    for (let seen = Atomics.load(this.ack, 0); !this.stuck && seen < this.sent && Atomics.load(this.ack, 1) === 0; seen = Atomics.load(this.ack, 0)) {
      if (performance.now() > deadline) {
        this.stuck = true;
        this.stopped ??= Promise.resolve();
        void this.worker.terminate();
        throw new PagesnapError(`the thread that reads the targets' fork events took no command in ${this.answerMs / 1000} s: the precopy's tracking cannot be trusted`, {
          code: 'ETIMEDOUT', hint: 'the targets are resumed; dump again, or without --precopy',
        });
      }
      Atomics.wait(this.ack, 0, seen, 100);
    }
  }
}
