/**
 * The restore host's channel protocol (native/host.c): one SOCK_SEQPACKET message per request and per reply.
 * Usable from any thread that holds a channel fd: the control channel belongs to the main thread, each fill
 * worker has a channel of its own for UFFDIO_MOVE.
 */
import { errnoName, NativeError, sendMessage, recvMessage, putU64, type Addr } from '../native/index.js';

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

const MAX_MSG = 64 << 10;
/** Replies land here (one per thread: module state is per worker); a reply's words are valid until the next call. */
const REPLY = Buffer.alloc(MAX_MSG);

export class HostGoneError extends Error {
  constructor(what: string) {
    super(`the restore host exited during ${what}`);
    this.name = 'HostGoneError';
  }
}

/**
 * Requests are written here (one per thread, as replies), a word at a time: restoring 60000 regions built a BigInt
 * array and a Buffer for every message, most of the garbage of mapping them.
 */
const REQUEST = Buffer.alloc(MAX_MSG);
const REQ = new DataView(REQUEST.buffer, REQUEST.byteOffset, MAX_MSG);

/** Send the `len` bytes of REQUEST as request `op`, and take the reply. */
function exchange(fd: number, op: HostOpName, len: number): { result: bigint; words: BigInt64Array } {
  REQ.setUint32(0, HostOp[op], true);
  REQ.setUint32(4, 0, true);
  if (!sendMessage(fd, REQUEST.subarray(0, len))) throw new HostGoneError(op);
  const got = recvMessage(fd, REPLY);
  if (got < 8) throw new HostGoneError(op);
  const all = new BigInt64Array(REPLY.buffer, REPLY.byteOffset, Math.floor(got / 8));
  return { result: all[0]!, words: all.subarray(1) };
}

/** One request/reply on `fd`. Returns the result word (>= 0, or -errno) and the reply's extra words. */
export function hostCall(fd: number, op: HostOpName, words: readonly (number | bigint)[] = [], name?: string): { result: bigint; words: BigInt64Array } {
  const nameAt = 8 + words.length * 8;
  const len = nameAt + (name === undefined ? 0 : Buffer.byteLength(name) + 1);
  if (len > MAX_MSG) throw new RangeError(`host request ${op} is ${len} bytes, more than ${MAX_MSG}`);
  words.forEach((w, i) => putU64(REQ, 8 + i * 8, w));
  if (name !== undefined) REQUEST[nameAt + REQUEST.write(name, nameAt)] = 0;
  return exchange(fd, op, len);
}

/**
 * One BATCH request of as many of `calls`, from `from` on, as a message holds: per call a header word (op, its word
 * count, and bit 63 when it is optional), then its words. `next`: the index of the first call not sent.
 */
export function hostBatch(fd: number, calls: readonly BatchCall[], from: number): { result: bigint; words: BigInt64Array; next: number } {
  let at = 8;
  let i = from;
  for (; i < calls.length; i++) {
    const c = calls[i]!;
    const end = at + 8 * (1 + c.words.length);
    if (end > MAX_MSG) {
      if (i > from) break;
      throw new RangeError(`host call ${c.op} is ${end} bytes, more than ${MAX_MSG}`);
    }
    REQ.setUint32(at, HostOp[c.op], true);
    REQ.setUint32(at + 4, (c.words.length | (c.optional ? 0x80000000 : 0)) >>> 0, true);
    at += 8;
    for (const w of c.words) {
      putU64(REQ, at, w);
      at += 8;
    }
  }
  const r = exchange(fd, 'BATCH', at);
  return { result: r.result, words: r.words, next: i };
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
