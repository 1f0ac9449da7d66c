/**
 * Mapping a plan's regions into the restore host at their own addresses (MAP_FIXED_NOREPLACE), with their
 * protections and madvise flags. A region that collides with the host's own mappings (its binary, libc, stack:
 * where ASLR put them this time) makes the caller start another host; `relocate` maps such regions wherever
 * the kernel chooses instead, and reports where.
 */
import { MAP, PROT, O_RDONLY, O_RDWR, MFD, PagesnapError, errnoName, type Addr } from '../native/index.js';
import type { MapsEntry } from '../proc/index.js';
import type { RestoreHost } from './host.js';
import type { BatchCall } from './host-protocol.js';
import type { RegionPlan, RegionsPlan } from './plan.js';

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
  const r = c.region.region;
  const w = c.with;
  return new PagesnapError(
    `region ${hex(r.start)}-${hex(r.end)} ${r.path ?? `[${r.kind}]`} collides with the restore host's ` +
      `${hex(w.start)}-${hex(w.end)} ${w.name ?? '[anon]'}`,
    { code: 'EEXIST', hint: 'run again (the host lands elsewhere each time), or pass --relocate to map such regions elsewhere' },
  );
}

/**
 * Create each shmem object as a memfd in the host (sized, not yet filled). Returns host fd per object id.
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
 * region went. Regions at their own addresses are mapped in batches (map, protect, advise); a relocated one
 * alone, since where it goes is known only once it is mapped.
 */
export function mapRegions(host: RestoreHost, plan: RegionsPlan, objectFds: Map<number, number>, relocate: boolean): Relocation[] {
  const files = new Map<string, number>();
  const relocations: Relocation[] = [];
  const own = relocate ? host.maps() : [];
  /** calls not yet sent, and the region each one is for */
  const calls: BatchCall[] = [];
  const callFor: RegionPlan[] = [];
  const flush = () => {
    const results = host.batch(calls);
    if (results.length < calls.length || results.some((r, i) => r < 0n && !calls[i]!.optional)) {
      const i = results.length - 1;
      throw callError(calls[i]!, callFor[i]!, Number(-results[i]!));
    }
    results.forEach((r, i) => {
      // without MAP_FIXED_NOREPLACE (before Linux 4.17) the address is only a hint
      if (calls[i]!.op === 'MAP' && r !== callFor[i]!.start) throw new PagesnapError(`region ${hex(callFor[i]!.start)} was mapped at ${hex(r)} instead`, { code: 'EEXIST' });
    });
    calls.length = 0;
    callFor.length = 0;
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
      const clash = own.some((m) => m.start < r.end && r.start < m.end);
      if (clash) {
        const got = host.mapRaw(0n, len, rp.mapProt, rp.flags, fd, offset);
        if (got < 0n) throw mapError(rp, Number(-got));
        rp.start = got;
        relocations.push({ from: r.start, to: rp.start, len, path: r.path });
      } else {
        rp.start = r.start;
        calls.push({ op: 'MAP', words: [r.start, len, rp.mapProt, rp.flags | MAP.FIXED_NOREPLACE, fd, offset] });
        callFor.push(rp);
      }
      const at = (call: BatchCall) => {
        calls.push(call);
        callFor.push(rp);
      };
      if (rp.mapProt !== rp.prot) at({ op: 'MPROTECT', words: [rp.start, len, rp.prot] });
      // advice the kernel no longer takes (or this mapping refuses) only costs fidelity
      for (const a of rp.advice) at({ op: 'MADVISE', words: [rp.start, len, a], optional: true });
      if (clash) flush();
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

/** Why a batched call for region `rp` failed. */
function callError(call: BatchCall, rp: RegionPlan, errno: number): PagesnapError {
  const r = rp.region;
  if (call.op === 'MAP') {
    if (errno === EEXIST) return new PagesnapError(`region ${hex(r.start)}-${hex(r.end)} overlaps a mapping the restore host made meanwhile`, { code: 'EEXIST' });
    return mapError(rp, errno);
  }
  const code = errnoName(errno);
  return new PagesnapError(`cannot ${call.op.toLowerCase()} region ${hex(r.start)}-${hex(r.end)} ${r.path ?? `[${r.kind}]`} in the restore host: ${code}`, { code });
}

function mapError(rp: RegionPlan, errno: number): PagesnapError {
  const r = rp.region;
  const what = `cannot map region ${hex(r.start)}-${hex(r.end)} ${r.path ?? `[${r.kind}]`} in the restore host`;
  const code = errnoName(errno);
  const hint = r.kind === 'hugetlb' && code === 'ENOMEM' ? 'reserve huge pages first: echo N > /proc/sys/vm/nr_hugepages'
    : code === 'EPERM' ? 'addresses below vm.mmap_min_addr need CAP_SYS_RAWIO, or pass --relocate' : undefined;
  return new PagesnapError(`${what}: ${code}`, { code, hint });
}
