/**
 * Shmem objects (memfd, shared anonymous, SysV, tmpfs files, hugetlbfs): their content is enumerated on the
 * object itself with SEEK_DATA/SEEK_HOLE and read with pread, because pagemap does not show shmem pages that are
 * swapped out, zapped, written through another mapping or inherited by a fork child (cases S2, S3, H2).
 */
import { openSync, closeSync, fstatSync, readdirSync, statSync } from 'node:fs';
import { seekData, seekHole, isErrno } from '../native/index.js';
import type { Region } from '../proc/index.js';
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

/** The kernel's encoding of a dev_t as stat(2) returns it (new_encode_dev). */
function encodeDev(majorMinor: string): number {
  const [ma, mi] = majorMinor.split(':').map((x) => parseInt(x, 16)) as [number, number];
  return (mi & 0xff) | (ma << 8) | ((mi & ~0xff) << 12);
}

/** Open the object behind a shared mapping, or say why it cannot be opened. */
export function openObject(pid: number, r: Region): OpenObject | { error: string } {
  const hex = (a: bigint) => a.toString(16);
  const tryOpen = (path: string): OpenObject | null => {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      return null;
    }
    const st = fstatSync(fd);
    return { fd, key: `${st.dev}:${st.ino}`, dev: st.dev, ino: st.ino, size: st.size, via: path };
  };
  const mapFile = `/proc/${pid}/map_files/${hex(r.start)}-${hex(r.end)}`;
  const viaMap = tryOpen(mapFile);
  if (viaMap) return viaMap;
  // Without CAP_SYS_ADMIN map_files is closed; an fd the target holds on the same inode is as good.
  const dev = encodeDev(r.dev);
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const path = `/proc/${pid}/fd/${fd}`;
      try {
        const st = statSync(path);
        if (st.ino === r.inode && st.dev === dev) {
          const o = tryOpen(path);
          if (o) return o;
        }
      } catch {
        /* closed meanwhile */
      }
    }
  } catch (e) {
    if (!isErrno(e, 'EACCES', 'EPERM')) throw e;
  }
  return { error: `its shmem object cannot be opened (${mapFile} needs CAP_SYS_ADMIN and the process holds no fd on it)` };
}

export function closeObject(o: OpenObject): void {
  closeSync(o.fd);
}

/** The object's pages as data and hole segments (SEEK_DATA counts swapped pages as data, fallocated-only as holes). */
export function objectSegments(o: OpenObject, pageSize = 4096): Segment[] {
  const out: Segment[] = [];
  const pages = Math.ceil(o.size / pageSize);
  let pos = 0;
  while (pos < o.size) {
    const d = seekData(o.fd, pos);
    const dataStart = d === null ? o.size : d;
    if (dataStart > pos) out.push({ offset: Math.floor(pos / pageSize), pages: Math.ceil(dataStart / pageSize) - Math.floor(pos / pageSize), verdict: 'hole', case: 'S6' });
    if (d === null) break;
    const h = seekHole(o.fd, d) ?? o.size;
    const first = Math.floor(d / pageSize);
    out.push({ offset: first, pages: Math.ceil(h / pageSize) - first, verdict: 'data', case: 'S2' });
    pos = h;
  }
  // SEEK_HOLE reports the end of the file as a hole boundary; keep the last segment inside the object's pages.
  const last = out[out.length - 1];
  if (last && last.offset + last.pages > pages) last.pages = pages - last.offset;
  return out.filter((s) => s.pages > 0);
}
