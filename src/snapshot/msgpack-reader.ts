/**
 * Decoding a manifest's msgpack, with each process's region records left as bytes until they are read. Decoded whole
 * by @msgpack/msgpack, a manifest of 60000 regions was a tree of 40 MB alive at once beside the records made of it,
 * then old garbage: a reader's heap grew to twice what it kept; and every short string value ("rd", "anon") was
 * decoded anew, 120 MB of garbage. Here a record is decoded when the reader converts it, so what it leaves dies
 * young, and each string is made once.
 *
 * Values come out as @msgpack/msgpack gives them with `useBigInt64` (which writes the manifest, and whose decoder
 * the tests hold this one to): 64-bit integers as BigInt, byte strings as views of the manifest's bytes, extension
 * values as ExtData (timestamps as Date), map keys strings or numbers and never `__proto__`.
 */
import { ExtData, decodeTimestampExtension } from '@msgpack/msgpack';

/** A list of msgpack values not decoded yet: `at(i)` decodes the i-th. */
export class RecordList {
  constructor(
    private readonly src: Source,
    /** where each value starts, and where the last ends */
    private readonly bounds: number[],
  ) {}

  get length(): number {
    return this.bounds.length - 1;
  }

  at(i: number): unknown {
    return decodeAt(this.src, this.bounds[i]!, 0);
  }

  /**
   * Record i read by `read`, a reader of the shape it expects (see Fields), straight from the bytes; null where
   * `read` met something else (then `at(i)` gives the value for the caller's checks to name).
   */
  read<T>(i: number, read: (f: Fields) => T | null): T | null {
    const f = new Fields(this.src, this.bounds[i]!);
    try {
      return read(f);
    } catch (e) {
      if (e instanceof RangeError) return null;
      throw e;
    }
  }
}

/**
 * A cursor over one value for a reader that knows its shape: each read takes the next value if it is of the kind
 * asked for, and otherwise gives the "not that" answer (-1, undefined) without moving, for the reader to give up.
 * Decoding a record this way makes no map of it to be read again (60000 regions: most of the time of opening a
 * snapshot went into such maps, the megamorphic stores that made them and the reads that took them apart).
 */
export class Fields {
  constructor(
    private readonly src: Source,
    public at: number,
  ) {}

  private header(at: number, fix: number, fixMask: number, b16: number): number {
    const { raw, view } = this.src;
    const b = byteAt(raw, at);
    if ((b & ~fixMask) === fix) return (this.at = at + 1), b & fixMask;
    if (b === b16) return (this.at = at + 3), u16At(raw, view, at + 1);
    if (b === b16 + 1) return (this.at = at + 5), u32At(raw, view, at + 1);
    return -1;
  }

  /** A map's entry count (its entries follow), or -1. */
  map(): number {
    return this.header(this.at, 0x80, 0x0f, 0xde);
  }

  /** An array's length (its items follow), or -1. */
  array(): number {
    return this.header(this.at, 0x90, 0x0f, 0xdc);
  }

  /** A string (made once per distinct bytes, as in a full decode), or undefined. */
  str(): string | undefined {
    const { raw, view } = this.src;
    const at = this.at;
    const b = byteAt(raw, at);
    let v: string;
    if ((b & 0xe0) === 0xa0) v = stringAt(this.src, at + 1, b & 0x1f);
    else if (b === 0xd9) v = stringAt(this.src, at + 2, byteAt(raw, at + 1));
    else if (b === 0xda) v = stringAt(this.src, at + 3, u16At(raw, view, at + 1));
    else if (b === 0xdb) v = stringAt(this.src, at + 5, u32At(raw, view, at + 1));
    else return undefined;
    this.at = next;
    return v;
  }

  /** An integer 0..2^53-1, or -1. */
  uint(): number {
    const { raw, view } = this.src;
    const at = this.at;
    const b = byteAt(raw, at);
    let v: number;
    if (b <= 0x7f) v = b;
    else if (b === 0xcc || b === 0xcd || b === 0xce || b === 0xcf) {
      const len = FIXED[b - 0xca]!;
      if (at + len > raw.length) throw ended(at);
      v = b === 0xcc ? raw[at + 1]! : b === 0xcd ? view.getUint16(at + 1) : b === 0xce ? view.getUint32(at + 1) : Number(view.getBigUint64(at + 1));
      if (v > Number.MAX_SAFE_INTEGER) return -1;
    } else return -1;
    this.at = at + (b <= 0x7f ? 1 : FIXED[b - 0xca]!);
    return v;
  }

  /** An integer of any size and sign, or undefined (BigInt as a full decode gives a 64-bit one; numbers are converted). */
  big(): bigint | undefined {
    const v = decodeAt(this.src, this.at, 0);
    if (typeof v === 'bigint') return (this.at = next), v;
    if (typeof v === 'number' && Number.isInteger(v)) return (this.at = next), BigInt(v);
    return undefined;
  }

  /** A byte string (a view of the manifest's bytes), or undefined. */
  bytes(): Uint8Array | undefined {
    const b = byteAt(this.src.raw, this.at);
    if (b !== 0xc4 && b !== 0xc5 && b !== 0xc6) return undefined;
    const v = decodeAt(this.src, this.at, 0) as Uint8Array;
    this.at = next;
    return v;
  }

  /** Nil (taken), or false (not taken). */
  nil(): boolean {
    if (byteAt(this.src.raw, this.at) !== 0xc0) return false;
    this.at++;
    return true;
  }

  /** True if the value is `true`; any other value is taken too. */
  isTrue(): boolean {
    const t = byteAt(this.src.raw, this.at) === 0xc3;
    this.skip();
    return t;
  }

  /** Pass over the value. */
  skip(): void {
    this.at = skipValue(this.src, this.at);
  }
}

/**
 * Which values a decode leaves as bytes: a map's by key, an array's items, or `records` (an array whose items are
 * kept as bytes, a RecordList). Where the value is not of the kind its shape expects, it is decoded as it is, for
 * the caller's checks to name.
 */
type Shape = { readonly keys: Readonly<Record<string, Shape>> } | { readonly items: Shape } | 'records';

const MANIFEST: Shape = { keys: { processes: { items: { keys: { regions: 'records' } } } } };

/** The manifest in `raw`, decoded, except that `processes[i].regions` is a RecordList. Throws on bytes that are not one msgpack value. */
export function decodeManifestTree(raw: Uint8Array): unknown {
  const src: Source = {
    raw, view: new DataView(raw.buffer, raw.byteOffset, raw.byteLength), text: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength),
    strings: new Map(),
  };
  const m = decodeAt(src, 0, 0, MANIFEST);
  if (next !== raw.length) throw new RangeError(`${raw.length - next} bytes follow the manifest`);
  return m;
}

interface Source {
  raw: Uint8Array;
  view: DataView;
  /** the same bytes, for decoding longer strings */
  text: Buffer;
  /** the strings made so far, by a hash of their bytes (and where those bytes are) */
  strings: Map<number, { at: number; len: number; str: string }>;
}

// (functions, not methods: walking the bytes in a method was ten times slower and allocated for every value)

/** Where the value decodeAt last decoded ends (decoding is synchronous: one cursor serves). */
let next = 0;
/** Nesting deeper than any manifest's is refused before the stack is. */
const MAX_DEPTH = 64;

/** The value at `at` (shaped by `shape`, if given); sets `next` to where it ends. */
function decodeAt(s: Source, at: number, depth: number, shape?: Shape): unknown {
  const { raw, view } = s;
  const b = byteAt(raw, at);
  if (b <= 0x7f || b >= 0xe0) {
    next = at + 1;
    return b <= 0x7f ? b : b - 0x100;
  }
  if (b <= 0x8f) return mapAt(s, at + 1, b & 0x0f, depth, shape);
  if (b <= 0x9f) return arrayAt(s, at + 1, b & 0x0f, depth, shape);
  if (b <= 0xbf) return stringAt(s, at + 1, b & 0x1f);
  const fixed = b >= 0xca && b <= 0xd8 ? FIXED[b - 0xca]! : 1;
  if (at + fixed > raw.length) throw ended(at);
  switch (b) {
    case 0xc0: next = at + 1; return null;
    case 0xc2: next = at + 1; return false;
    case 0xc3: next = at + 1; return true;
    case 0xc4: return bytesAt(s, at + 2, byteAt(raw, at + 1));
    case 0xc5: return bytesAt(s, at + 3, u16At(raw, view, at + 1));
    case 0xc6: return bytesAt(s, at + 5, u32At(raw, view, at + 1));
    case 0xc7: return extAt(s, at + 2, byteAt(raw, at + 1));
    case 0xc8: return extAt(s, at + 3, u16At(raw, view, at + 1));
    case 0xc9: return extAt(s, at + 5, u32At(raw, view, at + 1));
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return extAt(s, at + 1, fixed - 2);
    case 0xd9: return stringAt(s, at + 2, byteAt(raw, at + 1));
    case 0xda: return stringAt(s, at + 3, u16At(raw, view, at + 1));
    case 0xdb: return stringAt(s, at + 5, u32At(raw, view, at + 1));
    case 0xdc: return arrayAt(s, at + 3, u16At(raw, view, at + 1), depth, shape);
    case 0xdd: return arrayAt(s, at + 5, u32At(raw, view, at + 1), depth, shape);
    case 0xde: return mapAt(s, at + 3, u16At(raw, view, at + 1), depth, shape);
    case 0xdf: return mapAt(s, at + 5, u32At(raw, view, at + 1), depth, shape);
  }
  if (b === 0xc1) throw new RangeError(`byte 0xc1 at ${at} starts no msgpack value`);
  next = at + fixed;
  switch (b) {
    case 0xca: return view.getFloat32(at + 1);
    case 0xcb: return view.getFloat64(at + 1);
    case 0xcc: return view.getUint8(at + 1);
    case 0xcd: return view.getUint16(at + 1);
    case 0xce: return view.getUint32(at + 1);
    case 0xcf: return view.getBigUint64(at + 1);
    case 0xd0: return view.getInt8(at + 1);
    case 0xd1: return view.getInt16(at + 1);
    case 0xd2: return view.getInt32(at + 1);
    default: return view.getBigInt64(at + 1);
  }
}

function mapAt(s: Source, at: number, n: number, depth: number, shape: Shape | undefined): Record<string | number, unknown> {
  if (depth >= MAX_DEPTH) throw new RangeError(`values nest more than ${MAX_DEPTH} deep`);
  const keys = shape !== undefined && typeof shape === 'object' && 'keys' in shape ? shape.keys : undefined;
  const out: Record<string | number, unknown> = {};
  next = at;
  for (let i = 0; i < n; i++) {
    const key = keyOf(decodeAt(s, next, depth + 1));
    out[key] = decodeAt(s, next, depth + 1, keys && Object.hasOwn(keys, key) ? keys[key] : undefined);
  }
  return out;
}

function arrayAt(s: Source, at: number, n: number, depth: number, shape: Shape | undefined): unknown[] | RecordList {
  if (depth >= MAX_DEPTH) throw new RangeError(`values nest more than ${MAX_DEPTH} deep`);
  next = at;
  if (shape === 'records') {
    const bounds = [at];
    for (let i = 0; i < n; i++) bounds.push((next = skipValue(s, next)));
    return new RecordList(s, bounds);
  }
  const items = shape !== undefined && typeof shape === 'object' && 'items' in shape ? shape.items : undefined;
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) out.push(decodeAt(s, next, depth + 1, items));
  return out;
}

function keyOf(key: unknown): string | number {
  if (typeof key !== 'string' && typeof key !== 'number') throw new RangeError(`a map key is a ${key === null ? 'nil' : typeof key}`);
  if (key === '__proto__') throw new RangeError('the key __proto__ is not allowed');
  return key;
}

/**
 * A string, made once: the same bytes again give the same string (a manifest of 60000 regions holds 700000
 * strings, most of them "rd", "A3", "anon"; its readers keep them all).
 */
function stringAt(s: Source, at: number, len: number): string {
  const end = at + len;
  if (end > s.raw.length) throw ended(at);
  next = end;
  const raw = s.raw;
  let h = len;
  for (let i = at; i < end; i++) h = Math.imul(h ^ raw[i]!, 0x01000193);
  const seen = s.strings.get(h);
  if (seen && seen.len === len && sameBytes(raw, seen.at, at, len)) return seen.str;
  const str = s.text.toString('utf8', at, end);
  // (a string whose hash another holds is made each time it comes: rare, and still right)
  if (!seen) s.strings.set(h, { at, len, str });
  return str;
}

function sameBytes(raw: Uint8Array, a: number, b: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (raw[a + i] !== raw[b + i]) return false;
  return true;
}

function bytesAt(s: Source, at: number, len: number): Uint8Array {
  if (at + len > s.raw.length) throw ended(at);
  next = at + len;
  return s.raw.subarray(at, at + len);
}

/** An extension value: its type byte at `at`, then `len` bytes. */
function extAt(s: Source, at: number, len: number): ExtData | Date {
  const type = (byteAt(s.raw, at) << 24) >> 24;
  const data = bytesAt(s, at + 1, len);
  return type === -1 ? decodeTimestampExtension(data) : new ExtData(type, data);
}

/** Where the value at `at` (and everything in it) ends. */
function skipValue(s: Source, at: number): number {
  const { raw, view } = s;
  for (let values = 1; values > 0; values--) {
    const b = byteAt(raw, at);
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) at += 1;
    else if (b <= 0x8f) (at += 1), (values += 2 * (b & 0x0f));
    else if (b <= 0x9f) (at += 1), (values += b & 0x0f);
    else if (b <= 0xbf) at += 1 + (b & 0x1f);
    else if (b === 0xdc || b === 0xdd) (values += b === 0xdc ? u16At(raw, view, at + 1) : u32At(raw, view, at + 1)), (at += b === 0xdc ? 3 : 5);
    else if (b === 0xde || b === 0xdf) (values += 2 * (b === 0xde ? u16At(raw, view, at + 1) : u32At(raw, view, at + 1))), (at += b === 0xde ? 3 : 5);
    else if (b === 0xc4 || b === 0xd9) at += 2 + byteAt(raw, at + 1);
    else if (b === 0xc5 || b === 0xda) at += 3 + u16At(raw, view, at + 1);
    else if (b === 0xc6 || b === 0xdb) at += 5 + u32At(raw, view, at + 1);
    else if (b === 0xc7) at += 3 + byteAt(raw, at + 1);
    else if (b === 0xc8) at += 4 + u16At(raw, view, at + 1);
    else if (b === 0xc9) at += 6 + u32At(raw, view, at + 1);
    else if (b >= 0xca && b <= 0xd8) at += FIXED[b - 0xca]!;
    else throw new RangeError(`byte 0x${b.toString(16)} at ${at} starts no msgpack value`);
  }
  if (at > raw.length) throw ended(raw.length);
  return at;
}

const ended = (at: number) => new RangeError(`the manifest ends inside a value (at ${at})`);

function byteAt(raw: Uint8Array, at: number): number {
  if (at >= raw.length) throw ended(at);
  return raw[at]!;
}
function u16At(raw: Uint8Array, view: DataView, at: number): number {
  if (at + 2 > raw.length) throw ended(at);
  return view.getUint16(at);
}
function u32At(raw: Uint8Array, view: DataView, at: number): number {
  if (at + 4 > raw.length) throw ended(at);
  return view.getUint32(at);
}

/** Lengths of the fixed-size values from 0xca on: float32/64, uint8..64, int8..64, fixext1..16 (with their bytes). */
const FIXED = [5, 9, 2, 3, 5, 9, 2, 3, 5, 9, 3, 4, 6, 10, 18];
