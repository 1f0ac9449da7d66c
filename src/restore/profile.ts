/**
 * Working-set profiles: the pages a lazy restore saw faulted first, in order, kept beside the snapshot
 * (`FILE.profile`). The next restore of the same snapshot and process fills those pages before the rest.
 *
 *   "PSNPPROF"  u32 version (1)  u32 page size  16-byte snapshot id  u32 pid  u32 count  count × u64 page number
 */
import { readFileSync, statSync } from 'node:fs';
import { writeWhole } from '../snapshot/pending-file.js';

const MAGIC = 'PSNPPROF';
const HEAD = 8 + 4 + 4 + 16 + 4 + 4;

export interface Profile {
  pageSize: number;
  snapshotId: Buffer;
  pid: number;
  /** page numbers (address / page size), first-touch order */
  pages: number[];
}

export const profilePath = (snapshot: string) => `${snapshot}.profile`;

/** A profile of more pages than this is not one (a page each of 4 TiB). */
const MAX_PAGES = 1 << 30;

/** The profile for this snapshot and process, or null (none, another snapshot's, or unreadable). */
export function readProfile(path: string, snapshotId: Buffer, pid: number): Profile | null {
  let b: Buffer;
  try {
    const st = statSync(path);
    if (!st.isFile() || st.size > HEAD + 8 * MAX_PAGES) return null;
    b = readFileSync(path);
  } catch {
    return null; // none, or not readable: a restore goes on without it
  }
  if (b.length < HEAD || b.toString('latin1', 0, 8) !== MAGIC || b.readUInt32LE(8) !== 1) return null;
  const p: Profile = { pageSize: b.readUInt32LE(12), snapshotId: b.subarray(16, 32), pid: b.readUInt32LE(32), pages: [] };
  const count = b.readUInt32LE(36);
  if (!p.snapshotId.equals(snapshotId) || p.pid !== pid || b.length !== HEAD + count * 8) return null;
  for (let i = 0; i < count; i++) p.pages.push(Number(b.readBigUInt64LE(HEAD + i * 8)));
  return p;
}

/** Written whole or not at all, readable by the owner only. */
export async function writeProfile(path: string, p: Profile): Promise<void> {
  const b = Buffer.alloc(HEAD + p.pages.length * 8);
  b.write(MAGIC, 0, 'latin1');
  b.writeUInt32LE(1, 8);
  b.writeUInt32LE(p.pageSize, 12);
  p.snapshotId.copy(b, 16);
  b.writeUInt32LE(p.pid, 32);
  b.writeUInt32LE(p.pages.length, 36);
  p.pages.forEach((n, i) => b.writeBigUInt64LE(BigInt(n), HEAD + i * 8));
  await writeWhole(path, b);
}
