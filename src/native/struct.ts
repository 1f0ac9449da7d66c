/**
 * Fixed little-endian kernel structs. Every struct pagesnap passes to an ioctl or syscall is a run of u64/s64
 * (or u32) fields, so a layout is a name → byte offset table; tests check sizes and offsets against the
 * reference values measured with the kernel headers.
 */
export type FieldType = 'u64' | 's64' | 'u32' | 'u8';

export interface Layout<F extends string> {
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<F, readonly [offset: number, type: FieldType]>>;
}

export function layout<F extends string>(
  name: string,
  size: number,
  fields: Record<F, readonly [number, FieldType]>,
): Layout<F> {
  return { name, size, fields };
}

export type StructValues<F extends string> = Partial<Record<F, bigint | number>>;

export function pack<F extends string>(l: Layout<F>, values: StructValues<F>, into?: Buffer): Buffer {
  const buf = into ?? Buffer.alloc(l.size);
  if (into) buf.fill(0, 0, l.size);
  // (a key at a time and through one DataView: Object.entries and Buffer's BigInt writes allocated ~1 KiB a call,
  // and a dump makes a few calls for each of a process's 60000 regions)
  const view = new DataView(buf.buffer, buf.byteOffset, l.size);
  for (const key in values) {
    const v = values[key];
    if (v !== undefined) put(view, l.fields[key], v);
  }
  return buf;
}

const TWO32 = 2 ** 32;

/**
 * A 64-bit little-endian word at `off`, wrapped modulo 2^64 as the C cast does (so signed values too); a
 * non-negative number is written without making a BigInt.
 */
export function putU64(view: DataView, off: number, v: bigint | number): void {
  if (typeof v === 'bigint') view.setBigUint64(off, BigInt.asUintN(64, v), true);
  else if (v >= 0 && Number.isSafeInteger(v)) {
    view.setUint32(off, v % TWO32, true);
    view.setUint32(off + 4, Math.floor(v / TWO32), true);
  } else view.setBigUint64(off, BigInt.asUintN(64, BigInt(v)), true);
}

function put(view: DataView, [off, type]: readonly [number, FieldType], v: bigint | number): void {
  switch (type) {
    case 'u64':
    case 's64':
      putU64(view, off, v);
      break;
    case 'u32': view.setUint32(off, Number(v) >>> 0, true); break;
    case 'u8': view.setUint8(off, Number(v) & 0xff); break;
  }
}

export function readField(buf: Buffer, [off, type]: readonly [number, FieldType]): bigint {
  switch (type) {
    case 'u64': return buf.readBigUInt64LE(off);
    case 's64': return buf.readBigInt64LE(off);
    case 'u32': return BigInt(buf.readUInt32LE(off));
    case 'u8': return BigInt(buf.readUInt8(off));
  }
}
