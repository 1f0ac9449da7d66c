/**
 * msgpack written straight into large chunks, for the records a dump makes while its targets are frozen (60000
 * regions' records took the general encoder 230 ms of a 1.5 s freeze: a bounds check and a DataView call per byte, a
 * UTF-8 pass per key, a buffer per record copied into the chunk). The bytes are those @msgpack/msgpack writes with
 * `{ useBigInt64: true, ignoreUndefined: true }` (the manifest's options), which the tests hold it to.
 */

/** How deep values may nest: records are shallow, and a cycle must end in an error, not a stack overflow. */
const MAX_DEPTH = 100;
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);

export class MsgpackChunks {
  private readonly done: Buffer[] = [];
  /** (none until the first write: a dump holds one writer per process, and a tree can have hundreds) */
  private buf = Buffer.alloc(0);
  /** the chunk again, for multi-byte numbers (Buffer's writeUInt32BE and the like check their arguments every call) */
  private view = new DataView(this.buf.buffer, 0, 0);
  private pos = 0;

  constructor(private readonly chunkBytes = 1 << 20) {}

  /** Append the encoding of `v`. */
  write(v: unknown): void {
    this.value(v, 0);
  }

  /**
   * The map `o` with room for `more` entries after its own: the caller writes them next, each a key and a value
   * (what a map holding values encoded elsewhere needs, as the manifest's processes and their regions).
   */
  writeOpenMap(o: Record<string, unknown>, more: number): void {
    this.map(o, 0, more);
  }

  /** An array header for `n` items, which the caller writes next. */
  arrayHeader(n: number): void {
    this.header(0x90, 0xdc, n);
  }

  /** Values encoded already (by another writer), appended as they are: the chunks are kept, not copied. */
  append(chunks: readonly Buffer[]): void {
    if (this.pos) this.done.push(this.buf.subarray(0, this.pos));
    this.done.push(...chunks);
    this.buf = this.buf.subarray(this.pos);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    this.pos = 0;
  }

  /** What was written, in order (views of the chunks, not copies). */
  bytes(): Buffer[] {
    return this.pos ? [...this.done, this.buf.subarray(0, this.pos)] : [...this.done];
  }

  /** Room for `n` more bytes in the current chunk (a value may span chunks; a single write never does). */
  private need(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.pos) this.done.push(this.buf.subarray(0, this.pos));
    this.buf = Buffer.allocUnsafe(Math.max(this.chunkBytes, n));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    this.pos = 0;
  }

  private byte(b: number): void {
    this.need(1);
    this.buf[this.pos++] = b;
  }

  private value(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'number':
        return this.number(v);
      case 'string':
        return this.string(v);
      case 'bigint':
        return this.bigint(v);
      case 'boolean':
        return this.byte(v ? 0xc3 : 0xc2);
      case 'undefined':
        return this.byte(0xc0);
      case 'object':
        if (v === null) return this.byte(0xc0);
        if (depth >= MAX_DEPTH) throw new Error(`msgpack: values nest deeper than ${MAX_DEPTH}`);
        if (Array.isArray(v)) {
          this.header(0x90, 0xdc, v.length);
          for (const x of v) this.value(x, depth + 1);
          return;
        }
        if (ArrayBuffer.isView(v)) return this.binary(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
        if (v instanceof Date) throw new Error('msgpack: a Date is not written here');
        return this.map(v as Record<string, unknown>, depth);
      default:
        throw new Error(`msgpack: a ${typeof v} cannot be written`);
    }
  }

  /** Integers in the fewest bytes; others, and integers past 32 bits, as float 64 (as the encoder does with useBigInt64). */
  private number(x: number): void {
    this.need(9);
    const b = this.buf;
    const p = this.pos;
    if (Number.isSafeInteger(x) && x < 0x100000000 && x >= -0x80000000) {
      if (x >= 0) {
        if (x < 0x80) b[p] = x, this.pos = p + 1;
        else if (x < 0x100) b[p] = 0xcc, b[p + 1] = x, this.pos = p + 2;
        else if (x < 0x10000) b[p] = 0xcd, this.view.setUint16(p + 1, x), this.pos = p + 3;
        else b[p] = 0xce, this.view.setUint32(p + 1, x), this.pos = p + 5;
      } else if (x >= -0x20) b[p] = 0xe0 | (x + 0x20), this.pos = p + 1;
      else if (x >= -0x80) b[p] = 0xd0, this.view.setInt8(p + 1, x), this.pos = p + 2;
      else if (x >= -0x8000) b[p] = 0xd1, this.view.setInt16(p + 1, x), this.pos = p + 3;
      else b[p] = 0xd2, this.view.setInt32(p + 1, x), this.pos = p + 5;
      return;
    }
    b[p] = 0xcb;
    this.view.setFloat64(p + 1, x);
    this.pos = p + 9;
  }

  /** uint 64, or int 64 when negative; one past 64 bits is refused (the general encoder would wrap it round). */
  private bigint(v: bigint): void {
    if (v > U64_MAX || v < I64_MIN) throw new Error(`msgpack: ${v} does not fit in 64 bits`);
    this.need(9);
    if (v >= 0n) {
      this.buf[this.pos] = 0xcf;
      this.view.setBigUint64(this.pos + 1, v);
    } else {
      this.buf[this.pos] = 0xd3;
      this.view.setBigInt64(this.pos + 1, v);
    }
    this.pos += 9;
  }

  /** Short ASCII strings (keys, modes, kinds, case ids: nearly all of them) byte by byte; others through Buffer.write. */
  private string(s: string): void {
    const n = s.length;
    if (n < 32) {
      this.need(1 + n);
      const b = this.buf;
      const p = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p + 1 + i] = c;
      }
      if (i === n) {
        b[p] = 0xa0 | n;
        this.pos = p + 1 + n;
        return;
      }
    }
    const len = Buffer.byteLength(s, 'utf8');
    if (len >= 0x100000000) throw new Error(`msgpack: a string of ${len} bytes is too long`);
    this.strHeader(len);
    this.need(len);
    this.pos += this.buf.write(s, this.pos, len, 'utf8');
  }

  private strHeader(len: number): void {
    this.need(5);
    const b = this.buf;
    const p = this.pos;
    if (len < 32) b[p] = 0xa0 | len, this.pos = p + 1;
    else if (len < 0x100) b[p] = 0xd9, b[p + 1] = len, this.pos = p + 2;
    else if (len < 0x10000) b[p] = 0xda, this.view.setUint16(p + 1, len), this.pos = p + 3;
    else b[p] = 0xdb, this.view.setUint32(p + 1, len), this.pos = p + 5;
  }

  private binary(bytes: Uint8Array): void {
    const n = bytes.length;
    if (n >= 0x100000000) throw new Error(`msgpack: ${n} bytes of binary are too many`);
    this.need(5);
    const b = this.buf;
    const p = this.pos;
    if (n < 0x100) b[p] = 0xc4, b[p + 1] = n, this.pos = p + 2;
    else if (n < 0x10000) b[p] = 0xc5, this.view.setUint16(p + 1, n), this.pos = p + 3;
    else b[p] = 0xc6, this.view.setUint32(p + 1, n), this.pos = p + 5;
    this.need(n);
    this.buf.set(bytes, this.pos);
    this.pos += n;
  }

  /** An array (`fix` 0x90, `wide` 0xdc) or map (0x80, 0xde) header for `n` entries. */
  private header(fix: number, wide: number, n: number): void {
    if (n >= 0x100000000) throw new Error(`msgpack: ${n} entries are too many`);
    this.need(5);
    const b = this.buf;
    const p = this.pos;
    if (n < 16) b[p] = fix | n, this.pos = p + 1;
    else if (n < 0x10000) b[p] = wide, this.view.setUint16(p + 1, n), this.pos = p + 3;
    else b[p] = wide + 1, this.view.setUint32(p + 1, n), this.pos = p + 5;
  }

  /**
   * A map of the keys whose values are not undefined, counted first. (for-in, not Object.keys: on an object of fast
   * properties V8 reads each value by its slot in the enumeration cache, where o[k] by a key from an array is a
   * megamorphic lookup: most of the time a record took.)
   */
  private map(o: Record<string, unknown>, depth: number, more = 0): void {
    let n = more;
    for (const k in o) if (o[k] !== undefined) n++;
    this.header(0x80, 0xde, n);
    for (const k in o) {
      const x = o[k];
      if (x !== undefined) this.string(k), this.value(x, depth + 1);
    }
  }
}
