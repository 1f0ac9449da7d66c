/**
 * Decoding a manifest with each process's region records left as bytes until they are read. Decoded whole, a
 * manifest of 60000 regions was a tree of 40 MB alive at once beside the records made of it, and then old garbage:
 * a reader's heap grew to twice what it kept. Here the structure around the records is walked by hand (msgpack's
 * headers say how long each value is), every other value is decoded as usual, and a record is decoded only when the
 * reader converts it, so what it leaves dies young.
 */
import { Decoder, type DecoderOptions } from '@msgpack/msgpack';

/** A list of msgpack values not decoded yet: `at(i)` decodes the i-th. */
export class RecordList {
  constructor(
    private readonly raw: Uint8Array,
    /** where each value starts, and where the last ends */
    private readonly bounds: number[],
    private readonly decoder: Decoder,
  ) {}

  get length(): number {
    return this.bounds.length - 1;
  }

  at(i: number): unknown {
    return this.decoder.decode(this.raw.subarray(this.bounds[i]!, this.bounds[i + 1]!));
  }
}

/**
 * The manifest in `raw`, decoded, except that `processes[i].regions` is a RecordList. Where the structure is not a
 * map, array or list where one is expected, that value is decoded as it is, for the caller's checks to name.
 * Throws (as the decoder does) on bytes that are not one msgpack value.
 */
export function decodeManifestTree(raw: Uint8Array, options: DecoderOptions): unknown {
  const w = new Walk(raw, new Decoder(options));
  const m = w.map((key) => (key === 'processes' ? () => w.array(() => w.map((k) => (k === 'regions' ? () => w.records() : undefined))) : undefined));
  if (w.at !== raw.length) throw new RangeError(`${raw.length - w.at} bytes follow the manifest`);
  return m;
}

class Walk {
  at = 0;
  private readonly view: DataView;

  constructor(
    private readonly raw: Uint8Array,
    private readonly decoder: Decoder,
  ) {
    this.view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  }

  /** A map; `special(key)` gives how to read the value of a key read otherwise than by decoding it. */
  map(special: (key: string | number) => (() => unknown) | undefined): unknown {
    const n = this.header(0x80, 0xde);
    if (n < 0) return this.plain();
    const out: Record<string | number, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = this.plain();
      if (key === '__proto__') throw new RangeError('the key __proto__ is not allowed');
      if (typeof key !== 'string' && typeof key !== 'number') throw new RangeError(`a map key is a ${typeof key}`);
      const read = special(key);
      out[key] = read ? read() : this.plain();
    }
    return out;
  }

  array(item: () => unknown): unknown {
    const n = this.header(0x90, 0xdc);
    if (n < 0) return this.plain();
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(item());
    return out;
  }

  /** An array whose items are left as bytes. */
  records(): unknown {
    const n = this.header(0x90, 0xdc);
    if (n < 0) return this.plain();
    const bounds = [this.at];
    for (let i = 0; i < n; i++) bounds.push(this.skip());
    return new RecordList(this.raw, bounds, this.decoder);
  }

  /** The next value, decoded. */
  private plain(): unknown {
    const from = this.at;
    return this.decoder.decode(this.raw.subarray(from, this.skip()));
  }

  /** The count of a map or array header (fix form `fix`, 16-bit form `wide`, 32-bit `wide + 1`) read, or -1 (nothing read). */
  private header(fix: number, wide: number): number {
    const b = byteAt(this.raw, this.at);
    if ((b & 0xf0) === fix) return this.advance(1, b & 0x0f);
    if (b === wide) return this.advance(3, this.u16(this.at + 1));
    if (b === wide + 1) return this.advance(5, this.u32(this.at + 1));
    return -1;
  }

  private advance(by: number, value: number): number {
    this.at += by;
    return value;
  }

  /** Past the next value (and everything in it); returns where it ends. */
  private skip(): number {
    this.at = skipValue(this.raw, this.view, this.at);
    return this.at;
  }

  private u16(at: number): number {
    return u16At(this.raw, this.view, at);
  }
  private u32(at: number): number {
    return u32At(this.raw, this.view, at);
  }
}

// (functions of their own, not methods: a method walking the bytes was ten times slower and allocated per value)

/** Where the msgpack value at `from` (and everything in it) ends. */
function skipValue(raw: Uint8Array, view: DataView, from: number): number {
  let at = from;
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
  if (at > raw.length) throw new RangeError(`a value runs past the end of the manifest (${at} > ${raw.length})`);
  return at;
}

function byteAt(raw: Uint8Array, at: number): number {
  if (at >= raw.length) throw new RangeError(`the manifest ends inside a value (at ${at})`);
  return raw[at]!;
}
function u16At(raw: Uint8Array, view: DataView, at: number): number {
  if (at + 2 > raw.length) throw new RangeError(`the manifest ends inside a value (at ${at})`);
  return view.getUint16(at);
}
function u32At(raw: Uint8Array, view: DataView, at: number): number {
  if (at + 4 > raw.length) throw new RangeError(`the manifest ends inside a value (at ${at})`);
  return view.getUint32(at);
}

/** Lengths of the fixed-size values from 0xca on: float32/64, uint8..64, int8..64, fixext1..16. */
const FIXED = [5, 9, 2, 3, 5, 9, 2, 3, 5, 9, 3, 4, 6, 10, 18];
