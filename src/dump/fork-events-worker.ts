/**
 * The thread that reads the fork events of a precopy's userfaultfds (see fork-events.ts). A process forking waits in
 * the kernel until its event is read, and it cannot be frozen meanwhile: so it is read here, never behind the main
 * thread's work. Each event brings the child's userfaultfd, watched from then on too (a child forks as well).
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { poll, readRaw, setNonblocking, POLL, decodeUffdMsg } from '../native/index.js';
import type { ForkEventsCommand, ForkEventsData } from './fork-events.js';

const MSG = 32;
/** How long a poll waits before it looks for commands (a descriptor added waits this long at most to be watched). */
const TICK_MS = 10;

const { forks, ack } = workerData as ForkEventsData;
const counts = new Int32Array(forks);
const acks = new Int32Array(ack);
const watched: { fd: number; family: number }[] = [];
const children: number[] = [];
const buf = Buffer.alloc(MSG * 64);

for (let stopping = false; !stopping; ) {
  for (let m; (m = receiveMessageOnPort(parentPort!)); ) {
    const c = m.message as ForkEventsCommand;
    if (c.kind === 'watch') watched.push({ fd: c.fd, family: c.family });
    else if (c.kind === 'unwatch') {
      const i = watched.findIndex((w) => w.fd === c.fd);
      if (i >= 0) watched.splice(i, 1);
    } else stopping = true;
    // (the main thread may wait for this: a descriptor it closes must no longer be polled here)
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
    for (let off = 0; off + MSG <= n; off += MSG) {
      const msg = decodeUffdMsg(buf, off);
      if (msg.event !== 'fork') continue;
      // (poll errs on a userfaultfd that blocks, as the child's is made: like its parent's)
      setNonblocking(msg.ufd);
      watched.push({ fd: msg.ufd, family: w.family });
      children.push(msg.ufd);
      Atomics.add(counts, w.family, 1);
    }
  }
}
parentPort!.postMessage({ children });
