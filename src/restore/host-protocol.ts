/**
 * The restore host's channel protocol (native/host.c): one SOCK_SEQPACKET message per request and per reply.
 * Usable from any thread that holds a channel fd: the control channel belongs to the main thread, each fill
 * worker has a channel of its own for UFFDIO_MOVE.
 */
import { errnoName, NativeError, sendMessage, recvMessage, type Addr } from '../native/index.js';

export const HostOp = {
  HELLO: 1, MAP: 2, OPEN: 3, MEMFD: 4, FTRUNCATE: 5, CLOSE: 6, MADVISE: 7, MPROTECT: 8, MOVE: 9, STAGE: 10, DETACH: 11, BATCH: 12, MSEAL: 13,
} as const;
export type HostOpName = keyof typeof HostOp;

/** A call BATCH can carry: words in, one value out. `optional`: its failure does not stop the calls after it. */
export interface BatchCall {
  op: 'MAP' | 'FTRUNCATE' | 'CLOSE' | 'MADVISE' | 'MPROTECT' | 'MSEAL';
  words: readonly (number | bigint)[];
  optional?: boolean;
}

const OPTIONAL = 1n << 63n;

/** The BATCH words of `calls`: per call a header (op | words << 32 | OPTIONAL), then its words. */
export function batchWords(calls: readonly BatchCall[]): bigint[] {
  const out: bigint[] = [];
  for (const c of calls) {
    out.push(BigInt(HostOp[c.op]) | (BigInt(c.words.length) << 32n) | (c.optional ? OPTIONAL : 0n));
    for (const w of c.words) out.push(BigInt.asUintN(64, BigInt(w)));
  }
  return out;
}

export const MAX_MSG = 64 << 10;
/** Replies land here (one per thread: module state is per worker); a reply's words are valid until the next call. */
const REPLY = Buffer.alloc(MAX_MSG);

export class HostGoneError extends Error {
  constructor(what: string) {
    super(`the restore host exited during ${what}`);
    this.name = 'HostGoneError';
  }
}

/** One request/reply on `fd`. Returns the result word (>= 0, or -errno) and the reply's extra words. */
export function hostCall(fd: number, op: HostOpName, words: readonly (number | bigint)[] = [], name?: string): { result: bigint; words: BigInt64Array } {
  const reply = REPLY;
  const nameBytes = name === undefined ? 0 : Buffer.byteLength(name) + 1;
  const req = Buffer.alloc(8 + words.length * 8 + nameBytes);
  req.writeUInt32LE(HostOp[op], 0);
  words.forEach((w, i) => req.writeBigUInt64LE(BigInt.asUintN(64, BigInt(w)), 8 + i * 8));
  if (name !== undefined) req.write(name, 8 + words.length * 8);
  if (req.length > MAX_MSG) throw new RangeError(`host request ${op} is ${req.length} bytes, more than ${MAX_MSG}`);
  if (!sendMessage(fd, req)) throw new HostGoneError(op);
  const got = recvMessage(fd, reply);
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
export function hostMove(fd: number, ops: readonly MoveOp[], mode = 0): MoveResult[] {
  const words: bigint[] = [BigInt(mode), BigInt(ops.length)];
  for (const o of ops) words.push(o.dst, o.src, BigInt(o.len));
  const r = hostCall(fd, 'MOVE', words);
  hostValue(r, 'UFFDIO_MOVE');
  return ops.map((_, i) => {
    const e = Number(r.words[2 * i + 1]!);
    return { bytes: Number(r.words[2 * i]!), errno: e, code: e ? errnoName(e) : 'OK' };
  });
}
