/**
 * The thread that reads the fork events of a precopy's userfaultfds (see fork-events.ts). A process forking waits in
 * the kernel until its event is read, and it cannot be frozen meanwhile: so it is read here, never behind the main
 * thread's work. Each event brings the child's userfaultfd, watched from then on too (a child forks as well).
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { poll, readRaw, setNonblocking, closeFd, sleepSync, uffdMemoryGone, POLL, decodeUffdMsg } from '../native/index.js';
import type { ForkEventsCommand, ForkEventsData } from './fork-events.js';

const MSG = 32;
/** How long a poll waits before it looks for commands (a descriptor added waits this long at most to be watched). */
const TICK_MS = 10;
const EMFILE = 24;
const ENFILE = 23;

const { forks, dropped, gone, ack, maxChildren } = workerData as ForkEventsData;
const counts = new Int32Array(forks);
const drops = new Int32Array(dropped);
const gones = new Int32Array(gone);
const acks = new Int32Array(ack);
interface Child {
  fd: number;
  family: number;
}
const watched: Child[] = [];
const children: Child[] = [];
const buf = Buffer.alloc(MSG * 64);

/**
 * Children's userfaultfds let go, counted in `counter` for their families: dropped (their memory no longer tracked, as
 * the kernel unregisters it when the descriptor closes: their family's shared memory will be read frozen), or gone.
 */
function letGo(these: readonly Child[], counter: Int32Array): void {
  const out = new Set(these);
  for (const list of [children, watched]) {
    let kept = 0;
    for (const x of list) if (!out.has(x)) list[kept++] = x;
    list.length = kept;
  }
  for (const c of these) {
    closeFd(c.fd);
    Atomics.add(counter, c.family, 1);
  }
}

/** Let go the children whose memory is gone (exited, or exec'd): what they wrote is in the memory they shared. */
function census(): void {
  letGo(children.filter((c) => uffdMemoryGone(c.fd)), gones);
}

/** Poll and read until told to stop; gives back the children's userfaultfds held, the caller's to close. */
function serve(): number[] {
  for (let stopping = false; !stopping; ) {
    for (let m; (m = receiveMessageOnPort(parentPort!)); ) {
      const c = m.message as ForkEventsCommand;
      if (c.kind === 'watch') watched.push({ fd: c.fd, family: c.family });
      else if (c.kind === 'unwatch') {
        const i = watched.findIndex((w) => w.fd === c.fd);
        if (i >= 0) watched.splice(i, 1);
      } else if (c.kind === 'census') census();
      else if (c.kind === 'stop') stopping = true;
      // (the main thread may wait for this: a descriptor it closes must no longer be polled here; and the ack of a
      // sync, which asks nothing more, says every event read before it is counted)
      Atomics.add(acks, 0, 1);
      Atomics.notify(acks, 0);
    }
    if (stopping) break;
    const revents = poll(watched.map((w) => ({ fd: w.fd, events: POLL.IN })), TICK_MS);
    for (const [i, w] of [...watched.entries()]) {
      // (one that errs is no longer read: a userfaultfd errs only when misused, and a busy loop helps nobody)
      if (revents[i]! & (POLL.ERR | POLL.HUP | POLL.NVAL)) watched.splice(watched.indexOf(w), 1);
      if (!(revents[i]! & POLL.IN)) continue;
      const n = readRaw(w.fd, buf);
      if (n === -EMFILE || n === -ENFILE) {
        // No descriptor free for the child's: its event stays queued, and its parent waits in fork until it is read.
        // Room is made by letting the newest child go; with none to let go, the main thread must close some first.
        const newest = children.at(-1);
        if (newest) letGo([newest], drops);
        else sleepSync(TICK_MS);
        break;
      }
      for (let off = 0; off + MSG <= n; off += MSG) {
        const msg = decodeUffdMsg(buf, off);
        if (msg.event !== 'fork') continue;
        Atomics.add(counts, w.family, 1);
        const child = { fd: msg.ufd, family: w.family };
        // (beyond its share of open files: a process forking without pause would take them all)
        if (children.length >= maxChildren) {
          letGo([child], drops);
          continue;
        }
        // (poll errs on a userfaultfd that blocks, as the child's is made: like its parent's)
        setNonblocking(child.fd);
        watched.push(child);
        children.push(child);
      }
    }
  }
  return children.map((c) => c.fd);
}

try {
  parentPort!.postMessage({ children: serve() });
} finally {
  // (whatever ended it, even a throw: nothing is polled from here on, which the main thread may be waiting for)
  Atomics.store(acks, 1, 1);
  Atomics.notify(acks, 0);
}
