/**
 * The serve listener's thread: accepts connections, checks who is calling, and receives the hello (a length-
 * prefixed JSON with the client's userfaultfd attached), so the main thread never blocks on a slow client.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { accept, peerCred, recvWithFds, recvAll, poll, POLL, closeFd } from '../native/index.js';
import type { AcceptMessage } from './serve-protocol.js';

const { listenFd, stopfd, uid } = workerData as { listenFd: number; stopfd: number; uid: number };
const post = (m: AcceptMessage) => parentPort!.postMessage(m);
const HELLO_TIMEOUT_MS = 5000;
const MAX_HELLO = 1 << 20;

function handshake(conn: number): AcceptMessage {
  const cred = peerCred(conn);
  if (cred.uid !== uid && cred.uid !== 0) return { kind: 'refused', conn, cred, why: `uid ${cred.uid} may not use a server run by uid ${uid}` };
  if (!(poll([{ fd: conn, events: POLL.IN }], HELLO_TIMEOUT_MS)[0]! & POLL.IN)) return { kind: 'refused', conn, cred, why: 'no hello within 5 s' };
  const head = recvWithFds(conn, 4);
  if (head.data.length < 4) {
    head.fds.forEach(closeFd);
    return { kind: 'refused', conn, cred, why: 'the connection closed before a hello' };
  }
  const len = head.data.readUInt32LE(0);
  if (len > MAX_HELLO) {
    head.fds.forEach(closeFd);
    return { kind: 'refused', conn, cred, why: `a ${len}-byte hello is too large` };
  }
  const body = recvAll(conn, len);
  if (head.fds.length !== 1) {
    head.fds.forEach(closeFd);
    return { kind: 'refused', conn, cred, why: `the hello must carry exactly one descriptor (its userfaultfd), it carried ${head.fds.length}` };
  }
  return { kind: 'hello', conn, cred, uffd: head.fds[0]!, hello: body.toString('utf8') };
}

for (;;) {
  const rev = poll([{ fd: listenFd, events: POLL.IN }, { fd: stopfd, events: POLL.IN }], -1);
  if (rev[1]) break;
  if (!(rev[0]! & POLL.IN)) continue;
  let conn: number;
  try {
    conn = accept(listenFd);
  } catch (e) {
    post({ kind: 'error', message: (e as Error).message });
    continue;
  }
  try {
    post(handshake(conn));
  } catch (e) {
    post({ kind: 'refused', conn, cred: null, why: (e as Error).message });
  }
}
