/**
 * The identity of a mapped file, as a dump records it and a restore checks it. A clean file page is not stored: it
 * comes back from the file, so a restore must know whether the file at the path is still the one the process mapped,
 * and unchanged.
 */
import { statSync, type BigIntStats } from 'node:fs';

/** A mapped file's size and modification time when it was dumped (its dev and inode are the region's). */
export interface FileStamp {
  size: number;
  mtimeNs: bigint;
}

/** st_dev as stat(2) gives it (the kernel's new_encode_dev), from maps' `major:minor` in hex. */
export function encodeDev(majorMinor: string): number {
  const [ma, mi] = majorMinor.split(':').map((x) => parseInt(x, 16)) as [number, number];
  return (mi & 0xff) | (ma << 8) | ((mi & ~0xff) << 12);
}

interface MappedFile {
  start: bigint;
  end: bigint;
  name: string | null;
  dev: string;
  inode: number;
}

const sameFile = (st: BigIntStats, r: { dev: string; inode: number }) => Number(st.ino) === r.inode && Number(st.dev) === encodeDev(r.dev);

/**
 * The stamp of the file a live region maps: looked at through map_files (root: the very file, in any mount
 * namespace), else through the process's root directory, else by name; a file that is not the mapped inode does
 * not count.
 */
export function stampMappedFile(pid: number, r: MappedFile): FileStamp | undefined {
  const hex = (a: bigint) => a.toString(16);
  const ways = [`/proc/${pid}/map_files/${hex(r.start)}-${hex(r.end)}`];
  if (r.name?.startsWith('/')) ways.push(`/proc/${pid}/root${r.name}`, r.name);
  for (const p of ways) {
    try {
      const st = statSync(p, { bigint: true });
      if (sameFile(st, r)) return { size: Number(st.size), mtimeNs: st.mtimeNs };
    } catch {
      /* try the next way */
    }
  }
  return undefined;
}

/** A mapped file as a snapshot region records it: maps' dev and inode, and the stamp when the dump could take one. */
export interface StampedFile {
  dev: string;
  inode: number;
  file?: FileStamp;
}

/**
 * What tells the file a region mapped from another time's (`now`: dev as stat(2) gives it): another inode
 * (replaced), another size, another modification time; undefined when nothing does (a missing stamp tells nothing).
 */
export function fileDifference(was: StampedFile, now: { dev: number; inode: number; file?: FileStamp }): 'replaced' | 'resized' | 'modified' | undefined {
  if (encodeDev(was.dev) !== now.dev || was.inode !== now.inode) return 'replaced';
  if (!was.file || !now.file) return undefined;
  if (was.file.size !== now.file.size) return 'resized';
  return was.file.mtimeNs !== now.file.mtimeNs ? 'modified' : undefined;
}

/**
 * How the file now at `path` differs from the one a region mapped when it was dumped, or undefined when it is the
 * same as far as its inode, size and modification time tell.
 */
export function fileChange(path: string, was: StampedFile): string | undefined {
  let st: BigIntStats;
  try {
    st = statSync(path, { bigint: true });
  } catch (e) {
    return `cannot be looked at (${(e as NodeJS.ErrnoException).code ?? e}): whether it changed since the dump is not known`;
  }
  const now = { size: Number(st.size), mtimeNs: st.mtimeNs };
  switch (fileDifference(was, { dev: Number(st.dev), inode: Number(st.ino), file: now })) {
    case 'replaced': return 'is another file than the one the process mapped (replaced since the dump)';
    case 'resized': return `changed since the dump (${was.file!.size} bytes then, ${now.size} now)`;
    case 'modified': return `was modified since the dump (at ${isoOf(now.mtimeNs)}; dumped as of ${isoOf(was.file!.mtimeNs)})`;
    default: return undefined;
  }
}

const isoOf = (ns: bigint) => new Date(Number(ns / 1_000_000n)).toISOString();
