/** The regions (VMAs) of a live process: maps line, smaps counters, VmFlags and what kind of memory each is. */
import { statfsSync } from 'node:fs';
import { SmapsParser, type SmapsEntry } from './smaps.js';
import { classifyRegion, type RegionClass } from './region-kind.js';
import { readProcChunks } from './process.js';

export interface Region extends SmapsEntry, RegionClass {}

const hex = (a: bigint) => a.toString(16);

/**
 * statfs of the mapped file, through /proc/PID/map_files (root) or the path itself: it tells tmpfs files (shmem)
 * and hugetlbfs from ordinary files when the name does not.
 */
function fsTypeOf(pid: number, e: SmapsEntry): number | undefined {
  if (!e.name?.startsWith('/')) return undefined;
  for (const p of [`/proc/${pid}/map_files/${hex(e.start)}-${hex(e.end)}`, e.deleted ? null : e.name]) {
    if (!p) continue;
    try {
      return statfsSync(p).type;
    } catch {
      /* try the next way */
    }
  }
  return undefined;
}

export function readRegions(pid: number): Region[] {
  return [...regionBatches(pid)].flat();
}

/**
 * The regions a batch at a time (those smaps listed in each MiB of its text), for a reader that need not hold them
 * all: the dump of a process of 60000 regions held 50 MB of them.
 */
export function* regionBatches(pid: number): Generator<Region[]> {
  const parser = new SmapsParser();
  const classify = (e: SmapsEntry): Region => {
    // Only shared mappings need the filesystem: it decides shmem (dump the object) vs an ordinary shared file.
    const fsType = e.perms.shared && e.name?.startsWith('/') && !e.name.startsWith('/memfd:') && !e.name.startsWith('/SYSV') ? fsTypeOf(pid, e) : undefined;
    return Object.assign(e, classifyRegion(e, e.vmFlags, fsType));
  };
  for (const text of readProcChunks(pid, 'smaps')) {
    const done = parser.push(text).take();
    if (done.length) yield done.map(classify);
  }
  const rest = parser.finish();
  if (rest.length) yield rest.map(classify);
}
