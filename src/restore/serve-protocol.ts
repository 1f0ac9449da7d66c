/**
 * The serve protocol (version 1), as README.md documents it. Every message is a little-endian u32 length and
 * that many bytes of UTF-8 JSON.
 *
 *   client → server   hello, with the client's userfaultfd attached (SCM_RIGHTS), already through UFFDIO_API
 *                     and registered (MISSING) over the ranges:
 *                     { "version": 1, "pid"?: snapshot pid, "prefetch"?: true,
 *                       "events"?: ["remove", "unmap", "remap", "fork"]   (the UFFD_FEATURE_EVENT_* it enabled),
 *                       "ranges": [{ "address", "length", "snapshotAddress", "pageSize"? }] }   (numbers or "0x…")
 *   server → client   { "ok": true, "pages": { "data", "zero", "poison" }, "lost": [{ "address", "length", "why" }] }
 *                     or { "ok": false, "error": "…" } (and the connection closes)
 *   server → client   { "event": "full", … } once everything is placed (with prefetch)
 *
 * The session lasts until the client closes the connection or exits.
 */
import type { PeerCred } from '../native/index.js';
import { PagesnapError } from '../native/index.js';
import type { ClientRange } from './serve-plan.js';

export type AcceptMessage =
  | { kind: 'hello'; conn: number; cred: PeerCred; uffd: number; hello: string }
  | { kind: 'refused'; conn: number; cred: PeerCred | null; why: string }
  | { kind: 'error'; message: string };

export type EventName = 'remove' | 'unmap' | 'remap' | 'fork';

export interface Hello {
  version: 1;
  pid?: number;
  prefetch: boolean;
  events: EventName[];
  ranges: ClientRange[];
}

const EVENTS: EventName[] = ['remove', 'unmap', 'remap', 'fork'];

function addr(v: unknown, what: string): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(v)) return BigInt(v);
  throw new PagesnapError(`hello: ${what} must be a non-negative integer or "0x…" string`, { code: 'EINVAL' });
}

/** A count: a non-negative integer that a JS number holds exactly. */
function count(v: unknown, what: string): number {
  const n = addr(v, what);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new PagesnapError(`hello: ${what} is too large`, { code: 'EINVAL' });
  return Number(n);
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parse and check a hello; every problem is one clear error. */
export function parseHello(text: string): Hello {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw new PagesnapError('hello: not JSON', { code: 'EINVAL' });
  }
  if (!isMap(j)) throw new PagesnapError('hello: not a JSON object', { code: 'EINVAL' });
  if (j.version !== 1) throw new PagesnapError(`hello: version ${String(j.version)} is not supported (this server speaks 1)`, { code: 'EPROTO' });
  if (!Array.isArray(j.ranges) || j.ranges.length === 0) throw new PagesnapError('hello: "ranges" must list at least one range', { code: 'EINVAL' });
  const events = (j.events ?? []) as unknown[];
  if (!Array.isArray(events) || events.some((e) => !EVENTS.includes(e as EventName))) {
    throw new PagesnapError(`hello: "events" may hold ${EVENTS.join(', ')}`, { code: 'EINVAL' });
  }
  const ranges = (j.ranges as unknown[]).map((r, i): ClientRange => {
    if (!isMap(r)) throw new PagesnapError(`hello: ranges[${i}] is not an object`, { code: 'EINVAL' });
    return {
      address: addr(r.address, `ranges[${i}].address`),
      length: count(r.length, `ranges[${i}].length`),
      snapshotAddress: addr(r.snapshotAddress, `ranges[${i}].snapshotAddress`),
      pageSize: r.pageSize === undefined ? undefined : count(r.pageSize, `ranges[${i}].pageSize`),
    };
  });
  return { version: 1, pid: j.pid === undefined ? undefined : count(j.pid, 'pid'), prefetch: j.prefetch !== false, events: events as EventName[], ranges };
}

export function frame(obj: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v)));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length, 0);
  return Buffer.concat([head, body]);
}
