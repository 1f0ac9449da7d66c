/**
 * The serve listener's thread: accepts connections, checks who is calling, and receives the hello (a length-
 * prefixed JSON with the client's userfaultfd attached), so the main thread never blocks on a slow client. Hellos
 * are received side by side, each within its own time: a client that stalls holds up nobody else.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { accept, peerCred, recvWithFds, poll, POLL, closeFd, sleepSync, type PeerCred } from '../native/index.js';
import type { AcceptMessage } from './serve-protocol.js';

const { listenFd, stopfd, uid } = workerData as { listenFd: number; stopfd: number; uid: number };
const post = (m: AcceptMessage) => parentPort!.postMessage(m);
const HELLO_TIMEOUT_MS = 5000;
const MAX_HELLO = 1 << 20;

/** A connection whose hello is on its way: the bytes and descriptors received so far. */
interface Pending {
  conn: number;
  cred: PeerCred;
  deadline: number;
  parts: Buffer[];
  got: number;
  /** the hello's length once its 4-byte prefix is in */
  len: number | null;
  fds: number[];
}

const pending: Pending[] = [];

function refuse(p: Pending, why: string): void {
  p.fds.forEach(closeFd);
  post({ kind: 'refused', conn: p.conn, cred: p.cred, why });
}

/** Read what `p`'s connection has (poll said it is readable); true when its hello is done, either way. */
function receive(p: Pending): boolean {
  const want = p.len === null ? 4 - p.got : 4 + p.len - p.got;
  const { data, fds, truncated } = recvWithFds(p.conn, want);
  p.fds.push(...fds);
  if (truncated) {
    refuse(p, fds.length === 0 ? 'its descriptor did not arrive: this server has none free to receive it in (EMFILE)' : 'the hello must carry exactly one descriptor (its userfaultfd), it carried more');
    return true;
  }
  if (data.length === 0) {
    refuse(p, p.got === 0 ? 'the connection closed before a hello' : `the connection closed in the middle of the hello (${p.got} bytes)`);
    return true;
  }
  p.parts.push(Buffer.from(data));
  p.got += data.length;
  if (p.len === null && p.got >= 4) {
    p.len = Buffer.concat(p.parts).readUInt32LE(0);
    if (p.len > MAX_HELLO) {
      refuse(p, `a ${p.len}-byte hello is too large`);
      return true;
    }
  }
  if (p.len === null || p.got < 4 + p.len) return false;
  if (p.fds.length !== 1) {
    refuse(p, `the hello must carry exactly one descriptor (its userfaultfd), it carried ${p.fds.length}`);
    return true;
  }
  post({ kind: 'hello', conn: p.conn, cred: p.cred, uffd: p.fds[0]!, hello: Buffer.concat(p.parts).subarray(4).toString('utf8') });
  return true;
}

function admit(conn: number): void {
  const cred = peerCred(conn);
  if (cred.uid !== uid && cred.uid !== 0) post({ kind: 'refused', conn, cred, why: `uid ${cred.uid} may not use a server run by uid ${uid}` });
  else pending.push({ conn, cred, deadline: Date.now() + HELLO_TIMEOUT_MS, parts: [], got: 0, len: null, fds: [] });
}

const ACCEPT_RETRY_MS = 50;
/** the last accept(2) failure said, until one succeeds */
let acceptError = '';

for (;;) {
  const now = Date.now();
  const wait = pending.length ? Math.max(0, Math.min(...pending.map((p) => p.deadline)) - now) : -1;
  const rev = poll([{ fd: listenFd, events: POLL.IN }, { fd: stopfd, events: POLL.IN }, ...pending.map((p) => ({ fd: p.conn, events: POLL.IN }))], wait);
  if (rev[1]) break;
  // (from the end, so removing one leaves the indexes of those still to look at)
  for (let i = pending.length - 1; i >= 0; i--) {
    const p = pending[i]!;
    let done: boolean;
    try {
      if (rev[2 + i]) done = receive(p);
      else if (Date.now() >= p.deadline) {
        refuse(p, p.got === 0 ? 'no hello within 5 s' : `the hello did not arrive whole within 5 s (${p.got} bytes)`);
        done = true;
      } else done = false;
    } catch (e) {
      refuse(p, (e as Error).message);
      done = true;
    }
    if (done) pending.splice(i, 1);
  }
  if (!(rev[0]! & POLL.IN)) continue;
  let conn: number;
  try {
    conn = accept(listenFd);
    acceptError = '';
  } catch (e) {
    // Out of descriptors, say: the connection waits in the backlog, and the socket stays readable. Said once, and
    // looked at again a little later (looking at once spun a CPU, a message each time).
    const message = `cannot accept a connection: ${(e as Error).message}`;
    if (message !== acceptError) post({ kind: 'error', message });
    acceptError = message;
    sleepSync(ACCEPT_RETRY_MS);
    continue;
  }
  try {
    admit(conn);
  } catch (e) {
    post({ kind: 'refused', conn, cred: null, why: (e as Error).message });
  }
}
for (const p of pending) refuse(p, 'the server is stopping');
