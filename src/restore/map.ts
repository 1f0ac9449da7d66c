/**
 * Mapping a plan's regions into the restore host at their own addresses (MAP_FIXED_NOREPLACE), with their
 * protections and madvise flags. A region that collides with the host's own mappings (its binary, libc, stack:
 * where ASLR put them this time) makes the caller start another host; `relocate` maps such regions wherever
 * the kernel chooses instead, and reports where.
 */
import { readFileSync } from 'node:fs';
import { MAP, MADV, PROT, O_RDONLY, O_RDWR, MFD, PagesnapError, errnoName, type Addr } from '../native/index.js';
import type { MapsEntry } from '../proc/index.js';
import type { RestoreHost } from './host.js';
import type { BatchCall } from './host-protocol.js';
import { dumpAdvice, type ObjectPlan, type RegionPlan, type RegionsPlan } from './plan.js';

export interface Relocation {
  from: Addr;
  to: Addr;
  len: number;
  path: string | null;
}

export interface Collision {
  region: RegionPlan;
  with: MapsEntry;
}

const hex = (a: Addr) => `0x${a.toString(16)}`;
const MFD_HUGE_SHIFT = 26;
const EEXIST = 17;

/** Regions that overlap a mapping the host already has. */
export function collisions(host: RestoreHost, plan: RegionsPlan): Collision[] {
  const own = host.maps();
  const out: Collision[] = [];
  for (const rp of plan.regions) {
    if (rp.place.how === 'skip') continue;
    const hit = own.find((m) => m.start < rp.region.end && rp.region.start < m.end);
    if (hit) out.push({ region: rp, with: hit });
  }
  return out;
}

export function collisionError(c: Collision): PagesnapError {
  const w = c.with;
  return new PagesnapError(
    `${regionName(c.region)} collides with the restore host's ` +
      `${hex(w.start)}-${hex(w.end)} ${w.name ?? '[anon]'}`,
    { code: 'EEXIST', hint: 'run again (the host lands elsewhere each time), or pass --relocate to map such regions elsewhere' },
  );
}

/** Create an object (shmem, hugetlbfs, a deleted file) as a memfd in the host, sized, not yet filled; its host fd. */
export function createObject(host: RestoreHost, o: ObjectPlan): number {
  // `/memfd:NAME (deleted)` comes back as `/memfd:pagesnap:NAME (deleted)`, `/dev/shm/NAME` as `…pagesnap:NAME`
  const base = o.object.name.replace(/^.*\//, '').replace(/^memfd:/, '').replace(/ \(deleted\)$/, '') || `object-${o.object.id}`;
  const flags = o.hugePage ? MFD.HUGETLB | (Math.log2(o.hugePage) << MFD_HUGE_SHIFT) : 0;
  const fd = host.memfd(`pagesnap:${base}`, flags);
  host.ftruncate(fd, o.object.size);
  return fd;
}

/** Files and objects the host holds open at once while regions are mapped (past it, queued closes are sent). */
const HELD_FILES = 32;
/** Calls queued before they are sent (a few messages' worth: 60000 regions' calls held at once were 15 MB). */
const QUEUED_CALLS = 4096;

/** What a region is mapped from: '' for anonymous memory, else a file (by path and access) or an object. */
function sourceOf(rp: RegionPlan): string {
  const p = rp.place;
  if (p.how === 'file') return `${(rp.flags & MAP.SHARED) !== 0 && (rp.prot & PROT.WRITE) !== 0 ? 'w' : 'r'}${p.path}`;
  if (p.how === 'object') return `o${p.object}`;
  return '';
}

/**
 * Map every region that is not skipped. Returns the relocations made; sets each plan's `start` to where its
 * region went. `openObject(id)` gives an object's fd in the host, created and filled; it is called once per object.
 *
 * Regions at their own addresses may be mapped in any order, so those of one file or object are mapped together, in
 * batches of calls (map, protect, advise): each file is opened and each object made once, and closed as soon as its
 * regions are mapped, so the host holds a few files at a time however many the process had (a browser has
 * thousands of shared memory objects; one fd each would need more than the usual limit of 1024). Relocated
 * regions go last, one at a time: where the kernel puts one must not be a place another region wants.
 */
export function mapRegions(host: RestoreHost, plan: RegionsPlan, relocate: boolean, openObject: (id: number) => number): Relocation[] {
  const relocations: Relocation[] = [];
  const own = relocate ? host.maps() : [];
  const groups = new Map<string, RegionPlan[]>();
  const later: RegionPlan[] = [];
  for (const rp of plan.regions) {
    if (rp.place.how === 'skip') continue;
    if (own.some((m) => m.start < rp.region.end && rp.region.start < m.end)) later.push(rp);
    else {
      const src = sourceOf(rp);
      const g = groups.get(src);
      if (g) g.push(rp);
      else groups.set(src, [rp]);
    }
  }
  const laterSources = new Set(later.map(sourceOf));
  /** host fds open, by source; those whose CLOSE is queued are in `closing` */
  const held = new Map<string, number>();
  const closing: string[] = [];
  /** calls not yet sent, each with the region it is for */
  const queued: { call: BatchCall; rp: RegionPlan }[] = [];
  const flush = () => {
    const results = host.batch(queued.map((q) => q.call));
    // the batch stops at a failure that is not optional: that one is the last result
    const failed = results.findIndex((r, i) => r < 0n && !queued[i]!.call.optional);
    if (failed >= 0) throw callError(queued[failed]!.call, queued[failed]!.rp, Number(-results[failed]!), () => mapCountHint(host, plan));
    results.forEach((r, i) => {
      const { call, rp } = queued[i]!;
      // without MAP_FIXED_NOREPLACE (before Linux 4.17) the address is only a hint
      if (call.op === 'MAP' && r !== rp.start) throw new PagesnapError(`${regionName(rp)} was mapped at ${hex(r)} instead`, { code: 'EEXIST' });
    });
    queued.length = 0;
    for (const src of closing.splice(0)) held.delete(src);
  };
  /** The host fd of `rp`'s source `src` (-1 for anonymous memory), opened or made on first use. */
  const open = (src: string, rp: RegionPlan): number => {
    const p = rp.place;
    if (p.how !== 'file' && p.how !== 'object') return -1;
    let fd = held.get(src);
    if (fd === undefined) {
      if (held.size >= HELD_FILES) flush();
      fd = p.how === 'file' ? host.open(p.path, src.startsWith('w') ? O_RDWR : O_RDONLY) : openObject(p.object);
      held.set(src, fd);
    }
    return fd;
  };
  const queueRest = (rp: RegionPlan, len: number) => {
    if (rp.mapProt !== rp.prot) queued.push({ call: { op: 'MPROTECT', words: [rp.start, len, rp.prot] }, rp });
    // advice the kernel no longer takes (or this mapping refuses) only costs fidelity
    const advice = rp.apart ? [...rp.advice.filter((a) => a !== MADV.DONTDUMP), dumpAdvice(rp, true)] : rp.advice;
    for (const a of advice) queued.push({ call: { op: 'MADVISE', words: [rp.start, len, a], optional: true }, rp });
  };
  const offsetOf = (rp: RegionPlan) => (rp.place.how === 'file' ? rp.region.offset : rp.place.how === 'object' ? rp.region.object!.offset : 0n);
  try {
    for (const [src, rps] of groups) {
      for (const rp of rps) {
        const r = rp.region;
        const len = Number(r.end - r.start);
        const fd = open(src, rp);
        rp.start = r.start;
        queued.push({ call: { op: 'MAP', words: [r.start, len, rp.mapProt, rp.flags | MAP.FIXED_NOREPLACE, fd, offsetOf(rp)] }, rp });
        queueRest(rp, len);
        if (queued.length >= QUEUED_CALLS) flush();
      }
      // a mapping keeps its file: the fd is not needed once the map call has run
      if (held.has(src) && !laterSources.has(src)) {
        queued.push({ call: { op: 'CLOSE', words: [held.get(src)!], optional: true }, rp: rps[0]! });
        closing.push(src);
      }
    }
    flush();
    for (const rp of later) {
      const r = rp.region;
      const len = Number(r.end - r.start);
      const got = host.mapRaw(0n, len, rp.mapProt, rp.flags, open(sourceOf(rp), rp), offsetOf(rp));
      if (got < 0n) throw mapError(rp, Number(-got), () => mapCountHint(host, plan));
      rp.start = got;
      relocations.push({ from: r.start, to: rp.start, len, path: r.path });
      queueRest(rp, len);
      flush();
    }
  } finally {
    try {
      host.batch([...held.values()].map((fd) => ({ op: 'CLOSE', words: [fd], optional: true })));
    } catch {
      /* the host is gone: what failed first is the error to report */
    }
  }
  return relocations;
}

/** Put back the dump flag of regions kept apart from a like neighbour while they were filled (see keepApart). */
export function joinApart(host: RestoreHost, plan: RegionsPlan): void {
  const apart = plan.regions.filter((rp) => rp.apart);
  host.batch(apart.map((rp) => ({ op: 'MADVISE', words: [rp.start, Number(rp.region.end - rp.region.start), dumpAdvice(rp, false)], optional: true })));
}

/**
 * mseal(2) the regions the process had sealed, once their content is in place (a sealed region can no longer be
 * unmapped, remapped or re-protected, and guards could not be installed). Returns a note per region left unsealed.
 */
export function sealRegions(host: RestoreHost, plan: RegionsPlan): string[] {
  const sealed = plan.regions.filter((rp) => rp.seal && rp.place.how !== 'skip');
  if (sealed.length === 0) return [];
  const results = host.batch(sealed.map((rp) => ({ op: 'MSEAL', words: [rp.start, Number(rp.region.end - rp.region.start)], optional: true })));
  return sealed.flatMap((rp, i) => (results[i]! < 0n ? [`${regionName(rp)} was sealed (mseal); it is restored unsealed: ${errnoName(Number(-results[i]!))}`] : []));
}

/** `region 0x…-0x… PATH` (or `[kind]`), as errors name a region. */
function regionName(rp: RegionPlan): string {
  const r = rp.region;
  return `region ${hex(r.start)}-${hex(r.end)} ${r.path ?? `[${r.kind}]`}`;
}

/** Why a batched call for region `rp` failed (`countHint`: what to say if the host ran out of mappings). */
function callError(call: BatchCall, rp: RegionPlan, errno: number, countHint: () => string | undefined): PagesnapError {
  if (call.op === 'MAP') {
    if (errno === EEXIST) return new PagesnapError(`${regionName(rp)} overlaps a mapping the restore host made meanwhile`, { code: 'EEXIST' });
    return mapError(rp, errno, countHint);
  }
  const code = errnoName(errno);
  return new PagesnapError(`cannot ${call.op.toLowerCase()} ${regionName(rp)} in the restore host: ${code}`, { code, hint: code === 'ENOMEM' ? countHint() : undefined });
}

function mapError(rp: RegionPlan, errno: number, countHint: () => string | undefined): PagesnapError {
  const r = rp.region;
  const what = `cannot map ${regionName(rp)} in the restore host`;
  const code = errnoName(errno);
  const hint = code === 'ENOMEM' ? countHint() ?? (r.kind === 'hugetlb' ? 'reserve huge pages first: echo N > /proc/sys/vm/nr_hugepages' : undefined)
    : code === 'EPERM' ? 'addresses below vm.mmap_min_addr need CAP_SYS_RAWIO, or pass --relocate' : undefined;
  return new PagesnapError(`${what}: ${code}`, { code, hint });
}

/**
 * ENOMEM from mmap or mprotect with the host at vm.max_map_count: the process had more regions than this machine
 * lets one have (Elasticsearch and some JVMs run with the limit raised).
 */
function mapCountHint(host: RestoreHost, plan: RegionsPlan): string | undefined {
  let max: number;
  let have: number;
  try {
    max = Number(readFileSync('/proc/sys/vm/max_map_count', 'utf8'));
    have = host.maps().length;
  } catch {
    return undefined;
  }
  if (have < max - 8) return undefined;
  const need = plan.regions.filter((rp) => rp.place.how !== 'skip').length;
  return `the process had ${need} regions and vm.max_map_count lets a process have ${max}: raise it (sysctl -w vm.max_map_count=${Math.max(2 * need, 65530)}) and retry`;
}
