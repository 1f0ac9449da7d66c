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
  for (const [key, v] of Object.entries(values) as [F, bigint | number | undefined][]) {
    if (v === undefined) continue;
    write(buf, l.fields[key], v);
  }
  return buf;
}

export function write(buf: Buffer, [off, type]: readonly [number, FieldType], v: bigint | number): void {
  switch (type) {
    case 'u64': buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), off); break;
    case 's64': buf.writeBigInt64LE(BigInt.asIntN(64, BigInt(v)), off); break;
    case 'u32': buf.writeUInt32LE(Number(v) >>> 0, off); break;
    case 'u8': buf.writeUInt8(Number(v) & 0xff, off); break;
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
