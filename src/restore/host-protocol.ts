/**
 * The restore host's channel protocol (native/host.c): one SOCK_SEQPACKET message per request and per reply.
 * Usable from any thread that holds a channel fd: the control channel belongs to the main thread, each fill
 * worker has a channel of its own for UFFDIO_MOVE.
 */
import { fn } from '../native/libc.js';
import { errnoName, errnoMessage, NativeError, MSG, type Addr } from '../native/index.js';
import { errno } from '../native/libc.js';

export const HostOp = {
  HELLO: 1, MAP: 2, OPEN: 3, MEMFD: 4, FTRUNCATE: 5, CLOSE: 6, MADVISE: 7, MPROTECT: 8, MOVE: 9, STAGE: 10, DETACH: 11,
} as const;
export type HostOpName = keyof typeof HostOp;

const MAX_MSG = 64 << 10;

export class HostGoneError extends Error {
  constructor(what: string) {
    super(`the restore host exited during ${what}`);
    this.name = 'HostGoneError';
  }
}

/** One request/reply on `fd`. Returns the result word (>= 0, or -errno) and the reply's extra words. */
export function hostCall(fd: number, op: HostOpName, words: readonly (number | bigint)[] = [], name?: string, reply: Buffer = Buffer.alloc(MAX_MSG)): { result: bigint; words: BigInt64Array } {
  const nameBytes = name === undefined ? 0 : Buffer.byteLength(name) + 1;
  const req = Buffer.alloc(8 + words.length * 8 + nameBytes);
  req.writeUInt32LE(HostOp[op], 0);
  words.forEach((w, i) => req.writeBigUInt64LE(BigInt.asUintN(64, BigInt(w)), 8 + i * 8));
  if (name !== undefined) req.write(name, 8 + words.length * 8);
  if (req.length > MAX_MSG) throw new RangeError(`host request ${op} is ${req.length} bytes, more than ${MAX_MSG}`);
  for (;;) {
    const sent = Number(fn.send(fd, req, req.length, MSG.NOSIGNAL));
    if (sent >= 0) break;
    const e = errno();
    if (e === 4 /* EINTR */) continue;
    if (e === 32 /* EPIPE */ || e === 104 /* ECONNRESET */) throw new HostGoneError(op);
    throw new NativeError('send', e, `host channel ${fd}`);
  }
  let got: number;
  for (;;) {
    got = Number(fn.recv(fd, reply, reply.length, 0));
    if (got >= 0) break;
    const e = errno();
    if (e !== 4) throw new NativeError('recv', e, `host channel ${fd}`);
  }
  if (got < 8) throw new HostGoneError(op);
  const all = new BigInt64Array(reply.buffer, reply.byteOffset, Math.floor(got / 8));
  return { result: all[0]!, words: all.subarray(1) };
}

/** The result as a number, or a NativeError naming the host-side call. */
export function hostValue(r: { result: bigint }, call: string, subject?: string): number {
  if (r.result < 0n) throw new NativeError(`${call} in the restore host`, Number(-r.result), subject);
  return Number(r.result);
}

export interface MoveOp {
  dst: Addr;
  src: Addr;
  len: number;
}

export interface MoveResult {
  bytes: number;
  /** 0 when the whole length moved, else the errno that stopped it (EEXIST, EBUSY, ...) */
  errno: number;
  code: string;
}

/** UFFDIO_MOVE of each op, issued by the host (MOVE works only within the caller's own mm). */
export function hostMove(fd: number, ops: readonly MoveOp[], mode = 0, reply?: Buffer): MoveResult[] {
  const words: bigint[] = [BigInt(mode), BigInt(ops.length)];
  for (const o of ops) words.push(o.dst, o.src, BigInt(o.len));
  const r = hostCall(fd, 'MOVE', words, undefined, reply);
  hostValue(r, 'UFFDIO_MOVE');
  return ops.map((_, i) => {
    const e = Number(r.words[2 * i + 1]!);
    return { bytes: Number(r.words[2 * i]!), errno: e, code: e ? errnoName(e) : 'OK' };
  });
}

export const describeErrno = (e: number) => `${errnoName(e)} (${errnoMessage(e)})`;
