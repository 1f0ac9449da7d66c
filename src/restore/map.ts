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
import { dumpAdvice, type RegionPlan, type RegionsPlan } from './plan.js';

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

/**
 * Create each object (shmem, hugetlbfs, deleted file) as a memfd in the host (sized, not yet filled). Returns host fd per object id.
 */
export function createObjects(host: RestoreHost, plan: RegionsPlan): Map<number, number> {
  const fds = new Map<number, number>();
  for (const o of plan.objects) {
    const base = o.object.name.replace(/^.*\//, '').replace(/ \(deleted\)$/, '') || `object-${o.object.id}`;
    const flags = o.hugePage ? MFD.HUGETLB | (Math.log2(o.hugePage) << MFD_HUGE_SHIFT) : 0;
    const fd = host.memfd(`pagesnap:${base}`, flags);
    host.ftruncate(fd, o.object.size);
    fds.set(o.object.id, fd);
  }
  return fds;
}

/**
 * Map every region that is not skipped. Returns the relocations made; sets each plan's `start` to where its
 * region went. Regions at their own addresses are mapped in batches (map, protect, advise), in plan order; a
 * relocated one goes alone, after everything before it: where the kernel puts it must not be a place a region
 * mapped earlier in the plan wanted.
 */
export function mapRegions(host: RestoreHost, plan: RegionsPlan, objectFds: Map<number, number>, relocate: boolean): Relocation[] {
  const files = new Map<string, number>();
  const relocations: Relocation[] = [];
  const own = relocate ? host.maps() : [];
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
  };
  try {
    for (const rp of plan.regions) {
      const r = rp.region;
      const p = rp.place;
      if (p.how === 'skip') continue;
      const len = Number(r.end - r.start);
      let fd = -1;
      let offset = 0n;
      if (p.how === 'file') {
        const writable = (rp.flags & MAP.SHARED) !== 0 && (rp.prot & PROT.WRITE) !== 0;
        const key = `${writable ? 'w' : 'r'}${p.path}`;
        if (!files.has(key)) files.set(key, host.open(p.path, writable ? O_RDWR : O_RDONLY));
        fd = files.get(key)!;
        offset = r.offset;
      } else if (p.how === 'object') {
        fd = objectFds.get(p.object)!;
        offset = r.object!.offset;
      }
      if (own.some((m) => m.start < r.end && r.start < m.end)) {
        flush();
        const got = host.mapRaw(0n, len, rp.mapProt, rp.flags, fd, offset);
        if (got < 0n) throw mapError(rp, Number(-got), () => mapCountHint(host, plan));
        rp.start = got;
        relocations.push({ from: r.start, to: rp.start, len, path: r.path });
      } else {
        rp.start = r.start;
        queued.push({ call: { op: 'MAP', words: [r.start, len, rp.mapProt, rp.flags | MAP.FIXED_NOREPLACE, fd, offset] }, rp });
      }
      if (rp.mapProt !== rp.prot) queued.push({ call: { op: 'MPROTECT', words: [rp.start, len, rp.prot] }, rp });
      // advice the kernel no longer takes (or this mapping refuses) only costs fidelity
      const advice = rp.apart ? [...rp.advice.filter((a) => a !== MADV.DONTDUMP), dumpAdvice(rp, true)] : rp.advice;
      for (const a of advice) queued.push({ call: { op: 'MADVISE', words: [rp.start, len, a], optional: true }, rp });
    }
    flush();
  } finally {
    try {
      host.batch([...files.values()].map((fd) => ({ op: 'CLOSE', words: [fd], optional: true })));
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

/** Why a batched call for region `rp` failed. */
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
