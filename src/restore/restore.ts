/**
 * `pagesnap restore`: a restore host receives one process of a snapshot. Regions are mapped at their own
 * addresses; shmem objects come back as memfds and copied-on-write file pages are written in; private anonymous
 * and hugetlb memory is registered with userfaultfd and streamed (eagerly, or lazily: ready at once, faults
 * served first, the rest prefetched). The host exits when the restore is done, or is held for inspection.
 */
import { performance } from 'node:perf_hooks';
import { cpus } from 'node:os';
import {
  uffdApi, uffdRegister, uffdUnregister, UFFD_FEATURE, UFFDIO_REGISTER_MODE, UFFDIO_BIT, MADV, PROT, PagesnapError,
  kernelUffdFeatures, type Addr,
} from '../native/index.js';
import { FrameDecoder } from '../snapshot/frame-decoder.js';
import { SnapshotReader } from '../snapshot/reader.js';
import { RestoreHost, type UffdKind } from './host.js';
import { collisions, collisionError, createObject, mapRegions, joinApart, sealRegions, type Relocation } from './map.js';
import { planContent, planRegions, type ContentPlan, type LostRange, type Range, type RegionsPlan } from './plan.js';
import { refsCount, type SnapshotProcess } from '../snapshot/manifest.js';
import { writePages } from './direct.js';
import { ObjectFiller } from './object-fill.js';
import { Placer, STAT_FIELDS } from './placer.js';
import { Op, UNIT_PAGES, type SegmentTable } from './segments.js';
import { Streamer, StreamWorkers } from './streamer.js';
import { profilePath, readProfile, writeProfile } from './profile.js';
import { Verifier, type VerifyResult } from './verify.js';

export type FillMode = 'copy' | 'move' | 'auto';

export interface RestoreOptions {
  pid?: number;
  mode?: FillMode;
  lazy?: boolean;
  hold?: boolean;
  verify?: boolean;
  relocate?: boolean;
  /** fill threads (default: 2, or one per CPU if fewer) */
  threads?: number;
  /** use and (lazy) record the working-set profile beside the snapshot (default true) */
  profile?: boolean;
  /** the host is ready: its pid (lazy: faults are served, and the background fill starts when this returns) */
  onReady?: (hostPid: number) => void;
  /**
   * Bytes placed so far, of all to place: first those written into shmem objects (`objects`, before the host's
   * memory is streamed), then the rest (`memory`).
   */
  onProgress?: (done: number, total: number, what: 'objects' | 'memory') => void;
}

export interface RestoreResult {
  snapshot: string;
  pid: number;
  hostPid: number;
  held: boolean;
  lazy: boolean;
  mode: FillMode;
  uffd: UffdKind;
  /** milliseconds from the start */
  timings: { setupMs: number; readyMs: number; fullMs: number; firstFaultMs: number | null };
  faults: { served: number; p50Us: number | null; p99Us: number | null };
  bytes: { copied: number; zeroed: number; moved: number; poisoned: number; written: number; objects: number };
  /** bytes placed per second while streaming (copied + moved) */
  throughputMBs: number;
  /** pagesnap's own peak resident memory (all threads; not the host's) */
  peakRssBytes: number;
  regions: { mapped: number; skipped: { start: Addr; end: Addr; path: string | null; why: string }[] };
  relocations: Relocation[];
  lost: LostRange[];
  damage: { frame: number; addr: Addr; pages: number; message: string }[];
  profile: { used: number; recorded: number; path: string } | null;
  notes: string[];
  verify?: VerifyResult;
}

/**
 * Start hosts until one's own mappings leave the snapshot's addresses free: the first at the top of the address
 * space without ASLR (free in nearly every process), the others where ASLR puts them (a process that ran without ASLR
 * itself, as under gdb, has its mappings exactly there).
 */
const HOST_ATTEMPTS = 6;

function startHost(plan: RegionsPlan, channels: number, relocate: boolean): RestoreHost {
  for (let attempt = 1; ; attempt++) {
    const host = RestoreHost.spawn(channels, attempt === 1);
    const clash = collisions(host, plan);
    if (clash.length === 0 || relocate) return host;
    host.kill();
    if (attempt === HOST_ATTEMPTS) throw collisionError(clash[0]!);
  }
}

const percentile = (xs: Float64Array, q: number) => {
  if (xs.length === 0) return null;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/**
 * Units whose 2 MiB are all stored data or zero pages in writable private anonymous memory (no holes: a moved
 * block fills all of it): the candidates for a whole MOVE.
 */
function moveEligible(t: SegmentTable, plan: RegionsPlan, mode: FillMode, ps: number): Uint8Array {
  const units = t.unitState.length;
  const out = new Uint8Array(new SharedArrayBuffer(units));
  if (mode === 'copy') return out;
  for (let u = 0; u < units; u++) {
    const s0 = t.unitStart[u]!;
    const s1 = t.unitStart[u + 1]!;
    let pages = 0;
    let data = 0;
    for (let s = s0; s < s1; s++) {
      if (t.shift[s] !== 0 || t.op[s] === Op.POISON) continue;
      pages += t.pages[s]!;
      if (t.op[s] === Op.DATA) data += t.pages[s]!;
    }
    if (pages !== UNIT_PAGES || data === 0) continue;
    const addr = BigInt(t.page[s0]!) * BigInt(ps);
    const rp = plan.regions.find((r) => r.start <= addr && addr < r.start + (r.region.end - r.region.start));
    if (!rp || rp.place.how !== 'anon' || rp.prot !== (PROT.READ | PROT.WRITE)) continue;
    // a moved block lands as a huge page: not where the process asked for none
    if (rp.region.vmFlags.includes('nh')) continue;
    // auto: only where the process had huge pages (the dump saw THP there); move: wherever it can
    if (mode === 'auto' && !rp.region.smaps.AnonHugePages) continue;
    out[u] = 1;
  }
  return out;
}

/** The mode the kernel allows: without UFFDIO_MOVE, `auto` copies and `move` is refused. */
function fillMode(asked: FillMode | undefined, offered: bigint): FillMode {
  const canMove = (offered & BigInt(UFFD_FEATURE.MOVE)) !== 0n;
  if (asked === 'move' && !canMove) throw new PagesnapError('this kernel has no UFFDIO_MOVE (Linux 6.8+)', { code: 'EOPNOTSUPP', hint: 'use --mode copy' });
  return canMove ? (asked ?? 'auto') : 'copy';
}

interface Prepared {
  host: RestoreHost;
  plan: RegionsPlan;
  content: ContentPlan;
  relocations: Relocation[];
  /** the ranges registered with userfaultfd (touching ones as one) */
  registered: Range[];
  /** pages placed before streaming: into shmem objects, written in directly (see DirectWrite), poisoned (bytes) */
  objectPages: number;
  written: number;
  poisoned: number;
}

/**
 * Registered ranges that touch, of one page size, as one range each: the kernel registers a range across regions,
 * and a process of 60000 regions cost 60000 calls each way.
 */
function spans(ranges: readonly (Range & { hugePage: number })[]): Range[] {
  const out: (Range & { hugePage: number })[] = [];
  for (const r of [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1))) {
    const last = out[out.length - 1];
    if (last && last.hugePage === r.hugePage && last.start + BigInt(last.len) === r.start) last.len += r.len;
    else out.push({ ...r });
  }
  return out;
}

/**
 * Everything before streaming: a host whose mappings leave the snapshot's addresses free, the regions mapped,
 * objects created and filled, copied-on-write file pages written, private memory registered with userfaultfd,
 * guards installed and lost pages poisoned (POISON needs an empty pte: before anything can fault there).
 */
function prepare(
  reader: SnapshotReader, decoder: FrameDecoder, workers: StreamWorkers, proc: SnapshotProcess, mode: FillMode, channels: number, offered: bigint,
  opts: RestoreOptions, verifier: Verifier | undefined, keep: (h: RestoreHost) => void,
): Prepared {
  const plan = planRegions(reader, proc);
  const host = startHost(plan, channels, !!opts.relocate);
  keep(host);
  const ps = reader.pageSize;
  const progress = opts.onProgress;
  const toWrite = plan.objects.reduce((n, o) => n + refsCount(o.object.refs), 0) * ps;
  const filler = new ObjectFiller(reader, decoder, workers.fillers, progress && ((pages) => progress(pages * ps, toWrite, 'objects')));
  const objects = new Map(plan.objects.map((o) => [o.object.id, o]));
  let objectPages = 0;
  // each object is made and filled as its regions are reached, and checked while we hold it
  const relocations = mapRegions(host, plan, !!opts.relocate, (id) => {
    const o = objects.get(id)!;
    const fd = createObject(host, o);
    objectPages += filler.fill(host, o, fd, verifier && ((ours) => verifier.object(o, ours)));
    return fd;
  });
  const content = planContent(reader, plan);
  const has = (f: number) => (offered & BigInt(f)) !== 0n;
  if (content.counts.poison > 0 && !has(UFFD_FEATURE.POISON)) {
    throw new PagesnapError(`this kernel has no UFFDIO_POISON (Linux 6.6+), which the ${content.counts.poison} pages the snapshot lacks need`, {
      code: 'EOPNOTSUPP', hint: 'restore on a newer kernel (pages without content are never left to read as zeros)',
    });
  }
  // POISON whenever the kernel has it: a frame found damaged while streaming is poisoned too
  uffdApi(host.uffd, (has(UFFD_FEATURE.POISON) ? UFFD_FEATURE.POISON : 0) | (mode === 'copy' ? 0 : UFFD_FEATURE.MOVE) |
    (content.registered.some((r) => r.hugePage > 0) ? UFFD_FEATURE.MISSING_HUGETLBFS : 0));
  const registered = spans(content.registered);
  for (const r of registered) {
    const ioctls = uffdRegister(host.uffd, r.start, r.len, UFFDIO_REGISTER_MODE.MISSING);
    if (!(ioctls & (1n << BigInt(UFFDIO_BIT.COPY)))) {
      throw new PagesnapError(`userfaultfd cannot fill 0x${r.start.toString(16)} (register gave ioctls 0x${ioctls.toString(16)})`, { code: 'EINVAL' });
    }
  }
  const written = writePages(host, decoder, content.writes);
  for (const g of content.guards) host.madvise(g.start, g.len, MADV.GUARD_INSTALL);
  const poisoned = placePoison(host.uffd, decoder, content);
  return { host, plan, content, relocations, registered, objectPages, written, poisoned };
}

export async function restore(path: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const t0 = performance.now();
  const reader = SnapshotReader.open(path);
  const source = reader.frameSource();
  const decoder = new FrameDecoder(source.paths, source.frames, reader.pageSize, 4);
  let host: RestoreHost | undefined;
  let workers: StreamWorkers | undefined;
  try {
    const proc = reader.process(opts.pid);
    reader.prefetchTables(proc);
    const offered = kernelUffdFeatures();
    const mode = fillMode(opts.mode, offered);
    const lazy = !!opts.lazy;
    const threads = Math.max(1, opts.threads ?? Math.min(2, cpus().length));
    // the workers load while the host is set up (and help fill its shmem objects)
    workers = new StreamWorkers(threads);
    const verifier = opts.verify ? new Verifier(reader) : undefined;
    const p = prepare(reader, decoder, workers, proc, mode, mode === 'copy' ? 0 : threads, offered, opts, verifier, (h) => (host = h));
    const h = p.host;
    const setupMs = performance.now() - t0;
    const ps = reader.pageSize;
    const profileFile = profilePath(path);
    const prior = opts.profile === false ? null : readProfile(profileFile, reader.manifest.id, proc.pid);
    const streamer = new Streamer(reader, p.content.table, {
      uffd: h.uffd, pidfd: h.pidfd, fillThreads: threads, first: prior?.pages, profile: lazy && opts.profile !== false,
      ranges: p.content.registered.map((r) => ({ first: Number(r.start / BigInt(ps)), pages: r.len / ps, unitPages: Math.max(1, r.hugePage / ps) })),
      move: mode === 'copy' ? undefined : {
        hostPid: h.pid, channels: h.moveChannels, stages: h.moveChannels.map(() => h.stage(UNIT_PAGES * ps)),
        eligible: moveEligible(p.content.table, p.plan, mode, ps), auto: mode === 'auto',
      },
    }, workers);
    workers = undefined;
    const readyMs = lazy ? performance.now() - t0 : undefined;
    if (lazy) {
      // faults are served from here on; the fill starts after the caller's first look, which it takes priority over
      try {
        opts.onReady?.(h.pid);
      } finally {
        streamer.startFill();
      }
    } else streamer.startFill();
    const toPlace = (p.content.counts.data + p.content.counts.zero) * ps;
    const report = () => {
      const t = streamer.totals();
      opts.onProgress?.(t.copied + t.moved + t.zeroed, toPlace, 'memory');
    };
    const progress = opts.onProgress && setInterval(report, 100);
    await streamer.full;
    if (progress) clearInterval(progress);
    report();
    // Full: no missing page is left but holes, which may now fault normally (to zero pages, as they were).
    if (!streamer.failed) for (const r of p.registered) uffdUnregister(h.uffd, r.start, r.len);
    const end = await streamer.stop();
    if (end.stopped === 'gone') throw h.gone('the restore host exited before the restore was complete');
    if (end.stopped === 'error') throw new PagesnapError(`restore failed: ${end.error}`);
    joinApart(h, p.plan);
    const sealNotes = sealRegions(h, p.plan);
    const fullMs = performance.now() - t0;

    const verify: VerifyResult | undefined = verifier?.memory(h.pid, p.content, end.damage);
    let profile: RestoreResult['profile'] = prior ? { used: prior.pages.length, recorded: 0, path: profileFile } : null;
    const profileNotes: string[] = [];
    if (lazy && opts.profile !== false && end.faults.firstTouch.length > 0) {
      // the memory is restored either way: a profile that cannot be kept (a read-only directory) is only a note
      try {
        await writeProfile(profileFile, { pageSize: ps, snapshotId: reader.manifest.id, pid: proc.pid, pages: [...end.faults.firstTouch] });
        profile = { used: prior?.pages.length ?? 0, recorded: end.faults.firstTouch.length, path: profileFile };
      } catch (e) {
        profileNotes.push(`the working-set profile was not written (${profileFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): the next restore starts without it`);
      }
    }
    const totals = streamer.totals();
    const streamMs = Math.max(1e-3, streamer.fullAt - streamer.startedAt);
    const result: RestoreResult = {
      snapshot: path, pid: proc.pid, hostPid: h.pid, held: !!opts.hold, lazy, mode, uffd: h.uffdKind,
      timings: {
        setupMs, readyMs: readyMs ?? fullMs, fullMs,
        firstFaultMs: end.faults.firstAt ? end.faults.firstAt - (performance.timeOrigin + t0) : null,
      },
      faults: { served: totals.faults, p50Us: percentile(end.faults.serviceUs, 0.5), p99Us: percentile(end.faults.serviceUs, 0.99) },
      bytes: {
        copied: totals.copied, zeroed: totals.zeroed, moved: totals.moved, poisoned: totals.poisoned + p.poisoned,
        written: p.written * ps, objects: p.objectPages * ps,
      },
      throughputMBs: (totals.copied + totals.moved) / 1e6 / (streamMs / 1000),
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      regions: {
        mapped: p.plan.regions.filter((r) => r.place.how !== 'skip').length,
        skipped: p.plan.regions.flatMap((r) => (r.place.how === 'skip' ? [{ start: r.region.start, end: r.region.end, path: r.region.path, why: r.place.why }] : [])),
      },
      relocations: p.relocations, lost: p.content.lost, damage: uniqueDamage(end.damage), profile,
      notes: [...p.plan.notes, ...sealNotes, ...moveNotes(streamer), ...profileNotes], verify,
    };
    if (opts.hold) {
      h.detach();
      if (!lazy) opts.onReady?.(h.pid);
    }
    return result;
  } finally {
    await workers?.terminate();
    decoder.close();
    reader.close();
    if (host) {
      host.kill(); // a held (detached) host is left alone: this only releases our descriptors
      if (!opts.hold) await host.exited();
    }
  }
}

/** What `auto` did, when it copied more huge-page blocks than it moved. */
function moveNotes(streamer: Streamer): string[] {
  const moved = streamer.moveChoices.reduce((n, c) => n + c.moved, 0);
  const copied = streamer.moveChoices.reduce((n, c) => n + c.copied, 0);
  if (copied <= moved) return [];
  const c = streamer.moveChoices[0]!;
  return [`auto: moving a 2 MiB block cost ${c.moveMs.toFixed(2)} ms here, copying it ${c.copyMs.toFixed(2)} ms: ${copied} of ${moved + copied} huge-page blocks were copied as small pages (--mode move keeps them whole)`];
}

/** The fault thread and a fill worker may both meet a damaged frame: report each place once. */
function uniqueDamage(ds: RestoreResult['damage']): RestoreResult['damage'] {
  const seen = new Set<string>();
  return ds.filter((d) => {
    const k = `${d.frame}:${d.addr}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Poison what must be poisoned before anything can fault on it (POISON needs a none pte: do it first). */
function placePoison(uffd: number, decoder: FrameDecoder, content: ContentPlan): number {
  const t = content.table;
  const stats = new Float64Array(STAT_FIELDS);
  const placer = new Placer(uffd, decoder, t, stats, () => {});
  let bytes = 0;
  for (let s = 0; s < t.pages.length; s++) {
    if (t.op[s] !== Op.POISON) continue;
    const unit = 2 ** t.shift[s]! * decoder.pageSize;
    const o = placer.poison(BigInt(t.page[s]!) * BigInt(decoder.pageSize), t.pages[s]! * decoder.pageSize, unit);
    if (o !== 'ok') throw new PagesnapError(`cannot poison 0x${(BigInt(t.page[s]!) * BigInt(decoder.pageSize)).toString(16)}: ${o}`);
    bytes += t.pages[s]! * decoder.pageSize;
  }
  return bytes;
}

