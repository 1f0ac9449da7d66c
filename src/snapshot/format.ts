/**
 * The bytes of a pagesnap snapshot file (FORMAT.md is the prose version): a fixed header, independent zstd
 * frames of page data, a zstd-compressed msgpack manifest, and a fixed footer that locates the manifest.
 * Every size a reader takes from the file is checked against the file before anything is allocated for it.
 */
import { PagesnapError } from '../native/index.js';

export const MAGIC = Buffer.from('PAGESNAP', 'latin1');
export const FOOTER_MAGIC = Buffer.from('PSNAPEND', 'latin1');
/**
 * The newest format this pagesnap reads. Version 1: a self-contained snapshot; 2: one with a parent; 3: one with wide
 * run records (a region past 2^32 pages). FORMAT.md has each.
 */
export const FORMAT_VERSION = 3;
/**
 * What a snapshot is written as to begin with: 1 unless it has a parent, so readers older than chains still read
 * every full one (the writer raises it when a table needs more).
 */
export const writtenVersion = (hasParent: boolean) => (hasParent ? 2 : 1);
export const HEADER_SIZE = 64;
export const FOOTER_SIZE = 48;
/** A manifest larger than this is refused (it describes ~100 M pages; real ones are far smaller). */
export const MAX_MANIFEST_BYTES = 1 << 30;

/** Exit codes for a damaged snapshot: its page data (a frame or a page hash), or its structure (header, footer, manifest). */
export const EXIT_DAMAGED_PAGES = 3;
export const EXIT_DAMAGED_STRUCTURE = 4;

export interface Header {
  version: number;
  pageSize: number;
  id: Buffer;
  created: number;
}

export interface Footer {
  manifestOffset: number;
  manifestSize: number;
  manifestRawSize: number;
  /** XXH3-64 (seed 0) of the compressed manifest bytes */
  manifestHash: bigint;
}

/** A file that is not a readable snapshot: says where and what, for one error line. */
export class FormatError extends PagesnapError {
  constructor(file: string, what: string, readonly fileOffset?: number) {
    super(`${file}: ${what}${fileOffset !== undefined ? ` (at byte ${fileOffset})` : ''}`, {
      code: 'EBADMSG', hint: 'the file is not a pagesnap snapshot, or it is damaged or truncated', exitCode: EXIT_DAMAGED_STRUCTURE,
    });
    this.name = 'FormatError';
  }
}

export function encodeHeader(h: Header): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(h.version, 8);
  b.writeUInt16LE(HEADER_SIZE, 10);
  b.writeUInt32LE(h.pageSize, 12);
  h.id.copy(b, 16, 0, 16);
  b.writeBigUInt64LE(BigInt(h.created), 32);
  return b;
}

export function decodeHeader(b: Buffer, file: string): Header {
  if (b.length < HEADER_SIZE) throw new FormatError(file, `too short for a snapshot header (${b.length} bytes)`, 0);
  if (!b.subarray(0, 8).equals(MAGIC)) throw new FormatError(file, 'wrong magic: not a pagesnap snapshot', 0);
  const version = b.readUInt16LE(8);
  if (version > FORMAT_VERSION) {
    throw new PagesnapError(`${file}: snapshot format version ${version} is newer than this pagesnap reads (${FORMAT_VERSION})`, { code: 'ENOTSUP', hint: 'upgrade pagesnap' });
  }
  if (version === 0) throw new FormatError(file, 'format version 0', 8);
  if (b.readUInt16LE(10) !== HEADER_SIZE) throw new FormatError(file, `header size ${b.readUInt16LE(10)}, expected ${HEADER_SIZE}`, 10);
  const pageSize = b.readUInt32LE(12);
  if (pageSize < 4096 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw new FormatError(file, `implausible page size ${pageSize}`, 12);
  return { version, pageSize, id: Buffer.from(b.subarray(16, 32)), created: Number(b.readBigUInt64LE(32)) };
}

export function encodeFooter(f: Footer): Buffer {
  const b = Buffer.alloc(FOOTER_SIZE);
  b.writeBigUInt64LE(BigInt(f.manifestOffset), 0);
  b.writeBigUInt64LE(BigInt(f.manifestSize), 8);
  b.writeBigUInt64LE(BigInt(f.manifestRawSize), 16);
  b.writeBigUInt64LE(f.manifestHash, 24);
  FOOTER_MAGIC.copy(b, 40);
  return b;
}

export function decodeFooter(b: Buffer, fileSize: number, file: string): Footer {
  const at = fileSize - FOOTER_SIZE;
  if (!b.subarray(40, 48).equals(FOOTER_MAGIC)) throw new FormatError(file, 'no footer: the file is truncated or was not finished', at + 40);
  const big = (o: number) => {
    const v = b.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(file, 'implausible footer value', at + o);
    return Number(v);
  };
  const f: Footer = { manifestOffset: big(0), manifestSize: big(8), manifestRawSize: big(16), manifestHash: b.readBigUInt64LE(24) };
  if (f.manifestOffset < HEADER_SIZE || f.manifestOffset + f.manifestSize > at || f.manifestSize === 0) {
    throw new FormatError(file, `manifest at ${f.manifestOffset}+${f.manifestSize} lies outside the file`, at);
  }
  if (f.manifestRawSize > MAX_MANIFEST_BYTES) throw new FormatError(file, `implausible manifest size ${f.manifestRawSize}`, at + 16);
  return f;
}

/**
 * The decompressed size a zstd frame declares in its header (RFC 8878 §3.1.1.1), or null when the frame does not
 * declare one. Read before decompressing so that a damaged or hostile size is refused instead of allocated.
 */
export function zstdFrameContentSize(b: Buffer): number | null {
  if (b.length < 6 || b.readUInt32LE(0) !== 0xfd2fb528) return null;
  const fhd = b[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const dictFlag = fhd & 3;
  let o = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][dictFlag]!;
  const fcsSize = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [1, 2, 4, 8][fcsFlag]!;
  if (fcsSize === 0 || b.length < o + fcsSize) return null;
  switch (fcsSize) {
    case 1: return b[o]!;
    case 2: return b.readUInt16LE(o) + 256;
    case 4: return b.readUInt32LE(o);
    default: {
      const v = b.readBigUInt64LE(o);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
  }
}
