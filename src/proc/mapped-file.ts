/**
 * The identity of a mapped file, as a dump records it and a restore checks it. A clean file page is not stored: it
 * comes back from the file, so a restore must know whether the file at the path is still the one the process mapped,
 * and unchanged.
 */
import { openSync, fstatSync, closeSync, readFileSync } from 'node:fs';

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

/** A handle on the file itself, opened for no I/O: a FIFO does not block, a device is not opened. */
const O_PATH = 0o10000000;

/** A file as stat(2) shows it, but with the device maps would name it by (see mapsDev). */
interface Looked {
  dev: number;
  inode: number;
  file: FileStamp;
}

/**
 * The superblock device of the mount `fd` was reached through, from mountinfo (ours, else `pid`'s: mount ids are
 * global, and a path through /proc/PID/root or map_files lies in the target's mount namespace).
 */
function mountDevOf(fd: number, pid?: number): number | undefined {
  const id = /^mnt_id:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
  for (const who of ['self', ...(pid === undefined ? [] : [pid])]) {
    let text: string;
    try {
      text = readFileSync(`/proc/${who}/mountinfo`, 'utf8');
    } catch {
      continue;
    }
    const line = text.split('\n').find((l) => l.slice(0, l.indexOf(' ')) === id);
    if (!line) continue;
    const [major, minor] = line.split(' ')[2]!.split(':').map(Number) as [number, number];
    return (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12);
  }
  return undefined;
}

/**
 * stat of `path`, with the device maps names the file by when that is not stat's: maps gives the superblock's
 * device, where stat gives a btrfs subvolume's own (maps 00:27, stat 0:41, for one file: every file on Fedora's
 * and openSUSE's root). The mount the file lies in tells the superblock's; it is asked only when that decides
 * whether this is the inode maps named (`mapped`).
 */
function lookAt(path: string, mapped: { dev: string; inode: number }, pid?: number): Looked {
  const fd = openSync(path, O_PATH);
  try {
    const st = fstatSync(fd, { bigint: true });
    const mapsDev = encodeDev(mapped.dev);
    const dev = Number(st.dev) === mapsDev || Number(st.ino) !== mapped.inode ? Number(st.dev) : mountDevOf(fd, pid) ?? Number(st.dev);
    return { dev, inode: Number(st.ino), file: { size: Number(st.size), mtimeNs: st.mtimeNs } };
  } finally {
    closeSync(fd);
  }
}

/** `path` (in process `pid`'s view) looked at, when it is the file a region maps. */
function lookAtMapped(path: string, r: { dev: string; inode: number }, pid?: number): Looked | undefined {
  try {
    const now = lookAt(path, r, pid);
    return now.inode === r.inode && now.dev === encodeDev(r.dev) ? now : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `path` (in process `pid`'s view) is the file a region maps. */
export const isMappedFile = (path: string, r: { dev: string; inode: number }, pid?: number): boolean => lookAtMapped(path, r, pid) !== undefined;

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
    const now = lookAtMapped(p, r, pid);
    if (now) return now.file;
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
 * What tells the file a region mapped from another time's (`now`: its device as maps names it, see lookAt): another inode
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
