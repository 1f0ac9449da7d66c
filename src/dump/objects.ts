/**
 * Objects: shmem (memfd, shared anonymous, SysV, tmpfs files), hugetlbfs, and deleted files. Their content is
 * enumerated on the object itself with SEEK_DATA/SEEK_HOLE and read with pread, because pagemap does not show
 * shmem pages that are swapped out, zapped, written through another mapping or inherited by a fork child (cases
 * S2, S3, H2), nor the pages of a file that are not mapped (F1) — and a deleted file has no name to find it by later.
 */
import { openSync, closeSync, fstatSync, readdirSync } from 'node:fs';
import { seekData, seekHole, cachestat, isErrno } from '../native/index.js';
import { isMappedFile, procPath, type Region } from '../proc/index.js';
import type { Segment } from './pages.js';

export interface OpenObject {
  fd: number;
  key: string;
  dev: number;
  ino: number;
  size: number;
  /** how it was reached: /proc/PID/map_files (root) or one of the target's open fds */
  via: string;
}

/** Open the object behind a mapping, or say why it cannot be opened. */
export function openObject(pid: number, r: Region): OpenObject | { error: string } {
  const hex = (a: bigint) => a.toString(16);
  let mapError = '';
  const tryOpen = (path: string): OpenObject | null => {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      mapError ||= (e as { code?: string }).code ?? String(e);
      return null;
    }
    const st = fstatSync(fd);
    return { fd, key: `${st.dev}:${st.ino}`, dev: st.dev, ino: st.ino, size: st.size, via: path };
  };
  const mapFile = `/proc/${pid}/map_files/${hex(r.start)}-${hex(r.end)}`;
  const viaMap = tryOpen(mapFile);
  if (viaMap) return viaMap;
  // Without CAP_SYS_ADMIN map_files is closed; an fd the target holds on the same inode is as good.
  try {
    const fds = procPath(pid, 'fd');
    for (const fd of readdirSync(fds)) {
      const path = `${fds}/${fd}`;
      const o = isMappedFile(path, r, pid) ? tryOpen(path) : null;
      if (o) return o;
    }
  } catch (e) {
    if (!isErrno(e, 'EACCES', 'EPERM')) throw e;
  }
  const what = r.backing === 'shmem' ? 'its shmem object' : r.backing === 'hugetlbfs' ? 'its hugetlbfs file' : 'its deleted file';
  // (map_files: closed without CAP_SYS_ADMIN; gone with a process's main thread, which the memory outlives)
  const why = mapError === 'EACCES' || mapError === 'EPERM' ? ' needs CAP_SYS_ADMIN' : `: ${mapError}`;
  return { error: `${what} cannot be opened (${mapFile}${why}, and the process holds no fd on it)` };
}

export function closeObject(o: OpenObject): void {
  closeSync(o.fd);
}

/**
 * Pages [from, to) of the object as data and hole segments (SEEK_DATA counts swapped pages as data,
 * fallocated-only pages as holes).
 */
export function objectSegments(o: OpenObject, from: number, to: number, pageSize = 4096): Segment[] {
  const out: Segment[] = [];
  // A hole to SEEK_DATA may still be allocated: fallocated, never written (S5). Either reads as zero.
  const holes = (a: number, b: number) => {
    for (const h of a < b ? cachedRuns(o.fd, a, b, pageSize) : []) out.push({ offset: h.first, pages: h.pages, verdict: 'hole', case: h.cached ? 'S5' : 'S6' });
  };
  let pos = from;
  for (const d of objectData(o, from, to, pageSize)) {
    holes(pos, d.first);
    out.push({ offset: d.first, pages: d.pages, verdict: 'data', case: 'S2' });
    pos = d.first + d.pages;
  }
  holes(pos, Math.min(to, Math.ceil(o.size / pageSize)));
  return out;
}

/** The runs of pages in [from, to) where the object holds data, by SEEK_DATA and SEEK_HOLE (swapped pages included). */
export function objectData(o: OpenObject, from: number, to: number, pageSize = 4096): { first: number; pages: number }[] {
  const out: { first: number; pages: number }[] = [];
  const end = Math.min(o.size, to * pageSize);
  let pos = from * pageSize;
  while (pos < end) {
    const d = seekData(o.fd, pos);
    if (d === null || d >= end) break;
    const h = Math.min(seekHole(o.fd, d) ?? end, end);
    const first = Math.max(from, Math.floor(d / pageSize));
    const last = Math.min(to, Math.ceil(h / pageSize));
    if (last > first) out.push({ first, pages: last - first });
    pos = h;
  }
  return out;
}

/**
 * Pages [first, last) of a file cut into runs by whether the page cache holds them, from cachestat(2) counts
 * (halving a range until each piece is all cached or all not). Without cachestat (before 6.5): one run, not cached.
 */
function cachedRuns(fd: number, first: number, last: number, pageSize = 4096): { first: number; pages: number; cached: boolean }[] {
  const out: { first: number; pages: number; cached: boolean }[] = [];
  const add = (a: number, n: number, cached: boolean) => {
    const prev = out[out.length - 1];
    if (prev && prev.cached === cached && prev.first + prev.pages === a) prev.pages += n;
    else out.push({ first: a, pages: n, cached });
  };
  const split = (a: number, b: number) => {
    const cached = cachestat(fd, a * pageSize, (b - a) * pageSize).cache;
    if (cached === 0 || cached === b - a) return add(a, b - a, cached > 0);
    const m = (a + b) >> 1;
    split(a, m);
    split(m, b);
  };
  try {
    split(first, last);
  } catch (e) {
    if (!isErrno(e, 'ENOSYS', 'EOPNOTSUPP', 'EINVAL')) throw e;
    return [{ first, pages: last - first, cached: false }];
  }
  return out;
}
