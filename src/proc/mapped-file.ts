/**
 * The identity of a mapped file, as a dump records it and a restore checks it. A clean file page is not stored: it
 * comes back from the file, so a restore must know whether the file at the path is still the one the process mapped,
 * and unchanged.
 */
import { statx, AT_STATX_DONT_SYNC } from '../native/index.js';
import { readMounts, devName, isFuse } from './mounts.js';
import { procPath } from './process.js';

/** A mapped file's size and modification time when it was dumped (its dev and inode are the region's). */
export interface FileStamp {
  size: number;
  mtimeNs: bigint;
}

interface MappedFile {
  start: bigint;
  end: bigint;
  name: string | null;
  dev: string;
  inode: number;
  fsType?: string;
}

/** A file as stat(2) shows it, but with its device named as maps names it (see lookAt). */
interface Looked {
  dev: string;
  inode: number;
  file: FileStamp;
}

/** The device of mount `id` (ours, else `pid`'s: mount ids are global, and a path through /proc/PID/root or map_files
 * lies in the target's mount namespace). */
function mountDev(id: number, pid?: number): string | undefined {
  for (const who of ['self' as const, ...(pid === undefined ? [] : [pid])]) {
    const m = readMounts(who).find((x) => x.id === id);
    if (m) return m.dev;
  }
  return undefined;
}

/**
 * statx of `path`, its device named as maps names the file's: maps gives the superblock's device, where stat gives
 * a btrfs subvolume's own (maps 00:27, stat 0:41, for one file: every file on Fedora's and openSUSE's root). The
 * mount the file was reached through tells the superblock's; it is asked only when that decides whether this is the
 * inode maps named (`mapped`).
 */
function lookAt(path: string, mapped: { dev: string; inode: number }, pid?: number, flags = 0): Looked {
  const st = statx(path, flags);
  let dev = devName(st.devMajor, st.devMinor);
  if (dev !== mapped.dev && st.ino === mapped.inode && st.mntId !== undefined) dev = mountDev(st.mntId, pid) ?? dev;
  return { dev, inode: st.ino, file: { size: st.size, mtimeNs: st.mtimeNs } };
}

/** `path` (in process `pid`'s view) looked at, when it is the file a region maps. */
function lookAtMapped(path: string, r: { dev: string; inode: number }, pid?: number, flags = 0): Looked | undefined {
  try {
    const now = lookAt(path, r, pid, flags);
    return now.inode === r.inode && now.dev === r.dev ? now : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `path` (in process `pid`'s view) is the file a region maps, as the kernel has it cached (see below). */
export const isMappedFile = (path: string, r: { dev: string; inode: number }, pid?: number): boolean => lookAtMapped(path, r, pid, AT_STATX_DONT_SYNC) !== undefined;

/**
 * The stamp of the file a live (frozen) region maps, as the kernel has it cached: the file system is not asked,
 * as a FUSE daemon being dumped could not answer. Looked at through map_files (root: the very file, in any mount
 * namespace, with no lookup), else through the process's root directory, else by name — except on FUSE, where a
 * lookup asks the daemon. A file that is not the mapped inode does not count.
 */
export function stampMappedFile(pid: number, r: MappedFile): FileStamp | undefined {
  const hex = (a: bigint) => a.toString(16);
  const look = (p: string) => lookAtMapped(p, r, pid, AT_STATX_DONT_SYNC)?.file;
  const direct = look(`/proc/${pid}/map_files/${hex(r.start)}-${hex(r.end)}`);
  if (direct || !r.name?.startsWith('/') || isFuse(r.fsType)) return direct;
  return look(`${procPath(pid, 'root')}${r.name}`) ?? look(r.name);
}

/** A mapped file as a snapshot region records it: maps' dev and inode, and the stamp when the dump could take one. */
export interface StampedFile {
  dev: string;
  inode: number;
  file?: FileStamp;
}

/**
 * What tells the file a region mapped from another time's (`now`): another device or inode (replaced), another size,
 * another modification time; undefined when nothing does (a missing stamp tells nothing).
 */
export function fileDifference(was: StampedFile, now: StampedFile): 'replaced' | 'resized' | 'modified' | undefined {
  if (was.dev !== now.dev || was.inode !== now.inode) return 'replaced';
  if (!was.file || !now.file) return undefined;
  if (was.file.size !== now.file.size) return 'resized';
  return was.file.mtimeNs !== now.file.mtimeNs ? 'modified' : undefined;
}

/**
 * How the file now at `path` differs from the one a region mapped when it was dumped, or undefined when it is the
 * same as far as its inode, size and modification time tell.
 */
export function fileChange(path: string, was: StampedFile): string | undefined {
  let now: Looked;
  try {
    now = lookAt(path, was);
  } catch (e) {
    return `cannot be looked at (${(e as NodeJS.ErrnoException).code ?? e}): whether it changed since the dump is not known`;
  }
  switch (fileDifference(was, now)) {
    case 'replaced': return 'is another file than the one the process mapped (replaced since the dump)';
    case 'resized': return `changed since the dump (${was.file!.size} bytes then, ${now.file.size} now)`;
    case 'modified': return `was modified since the dump (at ${isoOf(now.file.mtimeNs)}; dumped as of ${isoOf(was.file!.mtimeNs)})`;
    default: return undefined;
  }
}

const isoOf = (ns: bigint) => new Date(Number(ns / 1_000_000n)).toISOString();
