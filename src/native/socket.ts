/**
 * Unix sockets with what Node's net module does not offer: receiving file descriptors (SCM_RIGHTS) and the
 * peer's credentials (SO_PEERCRED). Blocking calls: use them from worker threads, or after poll says ready.
 */
import { fn, errno, addressOf } from './libc.js';
import { NativeError } from './errors.js';
import { AF_UNIX, SOCK, SOL_SOCKET, SO_PEERCRED, SCM_RIGHTS, MSG } from './constants.js';

const EINTR = 4;

function check(call: string, rc: number | bigint, subject?: string): number {
  if (Number(rc) < 0) throw new NativeError(call, errno(), subject);
  return Number(rc);
}

function sockaddrUn(path: string): Buffer {
  const b = Buffer.alloc(110);
  b.writeUInt16LE(AF_UNIX, 0);
  if (Buffer.byteLength(path) > 107) throw new NativeError('bind', 36 /* ENAMETOOLONG */, path);
  b.write(path, 2);
  return b;
}

/** A listening SOCK_STREAM unix socket at `path`, made owner-only (0600) before anyone can connect. */
export function listenUnix(path: string, backlog = 16): number {
  const fd = check('socket', fn.socket(AF_UNIX, SOCK.STREAM | SOCK.CLOEXEC, 0));
  try {
    const addr = sockaddrUn(path);
    check('bind', fn.bind(fd, addr, addr.length), path);
    // connect() needs write permission on the socket file: restrict it before listen() admits anyone
    check('chmod', fn.chmod(path, 0o600), path);
    check('listen', fn.listen(fd, backlog), path);
    return fd;
  } catch (e) {
    fn.close(fd);
    throw e;
  }
}

export function accept(fd: number): number {
  for (;;) {
    const rc = Number(fn.accept4(fd, null, null, SOCK.CLOEXEC));
    if (rc >= 0) return rc;
    if (errno() !== EINTR) throw new NativeError('accept4', errno());
  }
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export function peerCred(fd: number): PeerCred {
  const b = Buffer.alloc(12);
  const len = [12];
  check('getsockopt(SO_PEERCRED)', fn.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, b, len));
  return { pid: b.readInt32LE(0), uid: b.readUInt32LE(4), gid: b.readUInt32LE(8) };
}

/**
 * Receive up to `len` bytes and any descriptors sent with them (SCM_RIGHTS). Returns the bytes (empty at end
 * of stream) and the descriptors, which are ours to close (received close-on-exec).
 */
export function recvWithFds(fd: number, len: number): { data: Buffer; fds: number[]; truncated: boolean } {
  const data = Buffer.alloc(len);
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(addressOf(data), 0);
  iov.writeBigUInt64LE(BigInt(len), 8);
  const control = Buffer.alloc(64);
  // struct msghdr (LP64): name@0 namelen@8 iov@16 iovlen@24 control@32 controllen@40 flags@48
  const msg = Buffer.alloc(56);
  msg.writeBigUInt64LE(addressOf(iov), 16);
  msg.writeBigUInt64LE(1n, 24);
  msg.writeBigUInt64LE(addressOf(control), 32);
  msg.writeBigUInt64LE(BigInt(control.length), 40);
  let n: number;
  for (;;) {
    n = Number(fn.recvmsg(fd, msg, MSG.CMSG_CLOEXEC));
    if (n >= 0) break;
    if (errno() !== EINTR) throw new NativeError('recvmsg', errno());
  }
  const fds: number[] = [];
  const controllen = Number(msg.readBigUInt64LE(40));
  // struct cmsghdr: len@0 (size_t) level@8 type@12 data@16, each aligned to 8
  for (let off = 0; off + 16 <= controllen; ) {
    const clen = Number(control.readBigUInt64LE(off));
    if (clen < 16) break;
    if (control.readInt32LE(off + 8) === SOL_SOCKET && control.readInt32LE(off + 12) === SCM_RIGHTS) {
      for (let k = off + 16; k + 4 <= off + clen; k += 4) fds.push(control.readInt32LE(k));
    }
    off += (clen + 7) & ~7;
  }
  // (MSG_CTRUNC: descriptors were sent that did not arrive: too many for the buffer, or none free to install them in)
  return { data: data.subarray(0, n), fds, truncated: (msg.readInt32LE(48) & MSG.CTRUNC) !== 0 };
}

/**
 * Send one message (SOCK_SEQPACKET: the message is the unit). False when the peer is gone (EPIPE, ECONNRESET);
 * other failures throw.
 */
export function sendMessage(fd: number, b: Buffer): boolean {
  for (;;) {
    if (Number(fn.send(fd, b, b.length, MSG.NOSIGNAL)) >= 0) return true;
    const e = errno();
    if (e === EINTR) continue;
    if (e === 32 /* EPIPE */ || e === 104 /* ECONNRESET */) return false;
    throw new NativeError('send', e, `socket ${fd}`);
  }
}

/** Receive one message into `b`; returns its length (0 at end of stream). */
export function recvMessage(fd: number, b: Buffer): number {
  for (;;) {
    const n = Number(fn.recv(fd, b, b.length, 0));
    if (n >= 0) return n;
    const e = errno();
    if (e !== EINTR) throw new NativeError('recv', e, `socket ${fd}`);
  }
}

export function sendAll(fd: number, b: Buffer): void {
  for (let sent = 0; sent < b.length; ) {
    const n = Number(fn.send(fd, b.subarray(sent), b.length - sent, MSG.NOSIGNAL));
    if (n < 0) {
      if (errno() === EINTR) continue;
      throw new NativeError('send', errno());
    }
    sent += n;
  }
}
