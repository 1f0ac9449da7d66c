/** The regions (VMAs) of a live process: maps line, smaps counters, VmFlags and what kind of memory each is. */
import { SmapsParser, type SmapsEntry } from './smaps.js';
import { classifyRegion, type RegionClass } from './region-kind.js';
import { readProcChunks, readProcText } from './process.js';
import { parseMapsLine } from './maps.js';
import type { Addr } from '../native/index.js';
import { fsTypesOf } from './mounts.js';

export interface Region extends SmapsEntry, RegionClass {
  /** the type of the file system a mapped file lies on, from the process's mount table */
  fsType?: string;
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
  const fsTypes = fsTypesOf(pid);
  const classify = (e: SmapsEntry): Region => {
    const fsType = e.name?.startsWith('/') ? fsTypes.get(e.dev) : undefined;
    // Only a shared mapping's file system decides its kind: tmpfs is shmem (dump the object), else an ordinary file.
    const c = classifyRegion(e, e.vmFlags, e.perms.shared ? fsType : undefined);
    // (set one by one: Object.assign took 1 KiB a region, of a dump's 60000)
    const r = e as Region;
    r.kind = c.kind;
    r.backing = c.backing;
    if (c.shmem) r.shmem = c.shmem;
    if (fsType) r.fsType = fsType;
    return r;
  };
  for (const text of readProcChunks(pid, 'smaps')) {
    const done = parser.push(text).take();
    if (done.length) yield done.map(classify);
  }
  const rest = parser.finish();
  if (rest.length) yield rest.map(classify);
}

/** Where the process's vDSO is, from maps (no page-table walk, unlike smaps); undefined if it has none. */
export function vdsoOf(pid: number): { start: Addr; end: Addr } | undefined {
  const text = readProcText(pid, 'maps');
  const at = text.indexOf(' [vdso]');
  if (at < 0) return undefined;
  const e = parseMapsLine(text.slice(text.lastIndexOf('\n', at) + 1, at + ' [vdso]'.length));
  return { start: e.start, end: e.end };
}
