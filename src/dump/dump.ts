/**
 * `dump`: freeze the targets, decide every page through the model, read what holds data (process memory with
 * process_vm_readv, shmem objects with pread), store it compressed and deduplicated, thaw, write the manifest.
 * Regions are planned, read and recorded a window at a time, and every per-page table goes to the file as it
 * fills, so pagesnap's memory does not grow with the targets. Targets are thawed as soon as their memory is read;
 * the file only appears under its name once complete.
 */
import { release, hostname, arch } from 'node:os';
import { isErrno, sleepSync, PagesnapError, NativeError } from '../native/index.js';
import { Pagemap, PREFETCH_PAGES, objectKey, processesMapping, RegionsAhead, readRegions, isStopped, taskState, parseSmaps, readProcText, readIdentity, readStat, isAlive, exited, stampMappedFile, servesFuse, isFuse, type Region, type FileStamp, type PagemapMethod, type PageRun, type PagemapRegion, type ProcessIdentity, type ProcStat } from '../proc/index.js';
import { SnapshotWriter } from '../snapshot/writer.js';
import { openParent } from '../snapshot/chain.js';
import { EncodedRegions, RecordHold, type WrittenManifest, type SnapshotObject, type SnapshotRegion, type DumpStats, type ExitedProcess, type SharingProcess, type OutsideWriters } from '../snapshot/manifest.js';
import { noPages, VERDICT_CODES, type VerdictPages } from '../snapshot/runs.js';
import { decide, type DecideOptions, type RegionShape } from '../model/verdict.js';
import { freeze, cgroupFrozen, type FreezeMethod } from './freeze.js';
import { resolveTargets } from './targets.js';
import { planRegion, type ObjectEvidence } from './plan.js';
import { PageSink, ProcessMemory, Recorder, readProcessSegments, readObjectSegments, BATCH_BYTES, type Segment, type RegionRead } from './pages.js';
import { openObject, objectSegments, objectData, closeObject, type OpenObject } from './objects.js';
import { WriteTracker, sharedTrackable } from './track.js';
import { SharedCopy, onlyTrackedMap, type ForksSeen } from './shared-copy.js';
import { ForkWitness } from './fork-witness.js';
import { ForkEvents } from './fork-events.js';
import { LiveCopy, trackedIn, asFound, dataWithin, type Precopied, type FoundRegion } from './precopy.js';

export interface DumpOptions extends DecideOptions {
  output: string;
  force?: boolean;
  freeze?: FreezeMethod;
  tree?: boolean;
  level?: number;
  framePages?: number;
  threads?: number;
  dedupe?: boolean;
  method?: PagemapMethod | 'auto';
  /** entries per table block in the file (tests use tiny ones to exercise many blocks) */
  tableEntries?: number;
  /** pages of address space planned at a time (tests use tiny windows) */
  windowPages?: number;
  /** called as pages are read: bytes read so far, bytes expected (from smaps: an estimate) */
  onProgress?: (read: number, expected: number) => void;
  /** dump incrementally against this snapshot: store only pages its chain does not hold */
  parent?: string;
  /** leave out the memory the process marked MADV_DONTDUMP, as core dumps do */
  excludeDontdump?: boolean;
  /** read most of the memory while the targets run; freeze them for what they write meanwhile (see precopy.ts) */
  precopy?: boolean;
  /** with precopy: write-protect huge pages too rather than read them frozen (one written meanwhile is split, until khugepaged merges it) */
  splitHuge?: boolean;
  /** called between a precopy's live pass and the freeze (tests write to the targets there) */
  afterPrecopy?: () => Promise<void>;
  /** called once a precopy has made again what a mapper's exit spoiled (copyAgainSpoiled), right before the freeze */
  beforeFreeze?: () => Promise<void>;
  /** called once a precopy has write-protected the shared memory, before it looks for who else maps it (tests fork there) */
  afterProtectShared?: () => Promise<void>;
  /** called once the targets are read, before they are thawed (tests stop them there, to dump that moment again) */
  beforeThaw?: (pids: readonly number[]) => void;
}

/** An object processes not frozen map writable, with what maps showed of it. */
export type NamedWriters = OutsideWriters & { name: string };

export interface DumpSummary {
  path: string;
  id: string;
  processes: number[];
  regions: number;
  objects: number;
  pagesStored: number;
  pagesDeduplicated: number;
  /** pages found in the parent's chain and referenced there (incremental dumps) */
  pagesFromParent: number;
  /** the parent snapshot, when incremental */
  parent: string | null;
  pagesZero: number;
  pagesHole: number;
  pagesShmem: number;
  pagesFile: number;
  pagesMarker: number;
  pagesUnreadable: number;
  /** regions the process marked MADV_DONTDUMP: left out (their pages counted unreadable) under excludeDontdump */
  regionsDontdump: number;
  excludeDontdump: boolean;
  /** with precopy: data pages read while the targets ran and not written since (not read again frozen) */
  pagesPrecopied: number;
  /** with precopy: of those, pages of shared anonymous memory and SysV segments (see shared-copy.ts) */
  pagesPrecopiedShared: number;
  /** with a tree: members that exited while the dump read them, left out of it */
  processesExited: ExitedProcess[];
  /** processes frozen with the targets for running in the address space of one (clone with CLONE_VM) */
  sharers: SharingProcess[];
  /** objects stored that processes not frozen map writable */
  outsideWriters: NamedWriters[];
  /** with precopy: how long reading while they ran took */
  precopyMs: number;
  /** with precopy: pages of huge pages left untracked and read frozen (a write would split them; see splitHuge) */
  pagesHugeFrozen: number;
  /** with precopy: targets, or shared memory, read frozen only, and why (a seccomp filter, a fork, …) */
  precopySkipped: { pid: number; why: string }[];
  bytesRaw: number;
  bytesCompressed: number;
  fileBytes: number;
  freeze: FreezeMethod;
  freezeMs: number;
  frozenMs: number;
  wallMs: number;
  /** bytes of target memory read per second of wall time */
  throughputMBps: number;
  /** pagesnap's own peak resident memory (all threads) */
  peakRssBytes: number;
}

const SMAPS_KEPT = ['KernelPageSize', 'Rss', 'Pss', 'Shared_Clean', 'Shared_Dirty', 'Private_Clean', 'Private_Dirty', 'Anonymous', 'LazyFree', 'AnonHugePages', 'ShmemPmdMapped', 'Swap', 'SwapPss', 'Locked', 'KSM'];
/**
 * The smaps counters a region's record keeps: those not zero (most are, and a process can have 60000 regions). Each
 * is named in code made once from SMAPS_KEPT: looked up by a name from the list, every one was a megamorphic load,
 * 40 ms of a 60000-region freeze.
 */
const keptSmaps = new Function('f', `const s = {}; ${SMAPS_KEPT.map((k) => `if (f.${k}) s.${k} = f.${k};`).join(' ')} return s;`) as (fields: Record<string, number>) => Record<string, number>;

/** 1 GiB of address space per window: the plan of a window is all that is held, however large the region. */
const WINDOW_PAGES = 1 << 18;
/** Migration entries are transient (case A10): look again a few times before reading them anyway. */
const RETRIES = 3;
const PAGE = 4096n;

/** What one dump shares between its processes and regions. */
interface Context {
  opts: DumpOptions;
  writer: SnapshotWriter;
  sink: PageSink;
  /** two batch buffers: one is read into while the other is scanned */
  bufs: [Buffer, Buffer];
  /** shmem objects stored so far, by dev:inode: each is stored once (its tables settle later, see Recorder.finish) */
  objects: Map<string, { id: number; mapsKey: string; name: string; done: Promise<SnapshotObject>; pages: VerdictPages; precopied: number }>;
  /** what the regions of the process being read add up to (see dumpProcess) */
  counts: Counts;
  /** mapped files' stamps by dev:inode */
  stamps: Map<string, FileStamp | undefined>;
  /** a frozen target serves FUSE: a file on a FUSE mount may be one only it could read */
  fuseFrozen: boolean;
  /** targets whose memory was copied while they ran, by pid */
  precopied: Map<number, Precopied>;
  precopySkipped: { pid: number; why: string }[];
  /** shared memory of the targets tracked that a live pass can copy, met by one: copied after their own (copySharedLive) */
  sharedFound: { pid: number; r: Region }[];
  /** shared objects copied while the targets ran, by objectKey */
  shared: Map<string, SharedCopy>;
  /** what shows whether a target that maps one of them forked meanwhile, or why nothing can */
  witnesses: Map<number, ForksSeen | string>;
  /** with precopy: where the targets' forks are read (see fork-events.ts) */
  events?: ForkEvents;
  /** by family (fork-events.ts): why the processes forked meanwhile cannot all be looked at */
  familyWhy: Map<number, string>;
  /** region records made while the targets are frozen wait to be encoded until they are thawed */
  records: RecordHold;
  /** regions the precopy walked: about as many as the frozen pass will record */
  liveRegions: number;
  progress: () => void;
}

/** What a process's regions add up to: part of the dump's once the process is read whole. */
interface Counts {
  pages: VerdictPages;
  /** regions the process marked MADV_DONTDUMP */
  dontdump: number;
  /** data pages recorded from a precopy's copies */
  precopied: number;
}

const noCounts = (): Counts => ({ pages: noPages(), dontdump: 0, precopied: 0 });

function addCounts(into: Counts, c: Counts): void {
  add(into.pages, c.pages);
  into.dontdump += c.dontdump;
  into.precopied += c.precopied;
}

export async function dump(pids: number[], opts: DumpOptions): Promise<DumpSummary> {
  const t0 = performance.now();
  const targets = resolveTargets(pids, opts.tree ?? false);
  const roots = [...new Set(pids)];
  const method = opts.freeze ?? 'ptrace';
  const parent = opts.parent === undefined ? undefined : openParent(opts.parent, opts.output);
  let writer: SnapshotWriter;
  try {
    writer = SnapshotWriter.create(opts.output, {
      force: opts.force, level: opts.level, framePages: opts.framePages, threads: opts.threads, dedupe: opts.dedupe, tableEntries: opts.tableEntries,
      parent: parent?.writer,
    });
  } finally {
    // the writer keeps what it needs of the parent (its hash table); the files are not read again
    parent?.reader.close();
  }
  const sink = new PageSink(writer);
  const ctx: Context = { opts, writer, sink, bufs: [Buffer.alloc(BATCH_BYTES), Buffer.alloc(BATCH_BYTES)], objects: new Map(), counts: noCounts(), stamps: new Map(), fuseFrozen: false, precopied: new Map(), precopySkipped: [], sharedFound: [], shared: new Map(), witnesses: new Map(), familyWhy: new Map(), records: new RecordHold(), liveRegions: 0, progress: () => {} };
  const processes: WrittenProcess[] = [];
  let objects: SnapshotObject[] = [];
  let frozen: ReturnType<typeof freeze> | undefined;
  /** the processes dumped: `targets` until the freeze settles which of a tree are there */
  let dumped = opts.tree ? roots : targets;
  let frozenMs = 0;
  let outsideWriters: NamedWriters[] = [];
  let precopyMs = 0;
  /** with precopy: the targets' write tracking ended */
  let untracked = Promise.resolve();
  let expected = 0;
  /** members of a tree that exited while the dump read them */
  const gone: ExitedProcess[] = [];
  // A member of a tree that has gone is left out, as if it had exited before the freeze (what was read of it stays
  // in the file, unreferenced); a target named on the command line that has gone fails the dump instead.
  const goneMember = (pid: number) => !roots.includes(pid) && !isAlive(pid);
  const leaveOut = (pid: number, comm?: string): boolean => {
    if (!goneMember(pid)) return false;
    gone.push(comm === undefined ? { pid } : { pid, comm });
    forgetCopy(ctx, pid);
    return true;
  };
  ctx.progress = () => opts.onProgress?.(sink.counters.bytesRead, Math.max(expected, sink.counters.bytesRead));
  try {
    if (opts.precopy) {
      const t = performance.now();
      // (what the frozen pass then reads again is what was written meanwhile: the estimate stays this)
      if (opts.onProgress) expected = residentOf(targets);
      // (PAGESNAP_NO_FORK_EVENTS=1: as where the kernel refuses to tell forks, for the tests of ForkWitness)
      if (process.env.PAGESNAP_NO_FORK_EVENTS !== '1') ctx.events = ForkEvents.start();
      for await (const [pid, regions] of RegionsAhead.each(targets, (p) => p)) {
        try {
          await whileAliveAsync(pid, () => copyLive(pid, regions, ctx));
        } catch (e) {
          // (not in the tree when it is frozen: nothing of it is needed)
          if (!goneMember(pid)) throw e;
          forgetCopy(ctx, pid);
        }
      }
      await copySharedLive(ctx);
      // (the frozen pass is the main thread's: compression of the live pass's tail would share the CPUs with it)
      await writer.drained();
      precopyMs = performance.now() - t;
      await opts.afterPrecopy?.();
      const again = performance.now();
      if (await copyAgainSpoiled(ctx)) await writer.drained();
      precopyMs += performance.now() - again;
      await opts.beforeFreeze?.();
      // frozen from here on: a repeated page is stored again rather than compared with a frame read back
      if (ctx.precopied.size > 0) writer.readBackToDedupe = false;
    }
    frozen = freeze(dumped, method, { tree: opts.tree });
    const frozenAt = performance.now();
    // (without a precopy the count is not known until every region has been recorded)
    if (opts.precopy) ctx.records.hold(ctx.liveRegions);
    dumped = frozen.pids;
    // (a copy made of a process since gone whose pid another process of the tree now has is not of that one)
    for (const [pid, p] of ctx.precopied) if (!dumped.includes(pid) || startTimeOf(pid) !== p.startTime) forgetCopy(ctx, pid);
    if (ctx.events) adoptForked(ctx, dumped);
    for (const copy of ctx.shared.values()) {
      copy.check((pid) => ctx.precopied.has(pid), (pid) => {
        const w = ctx.witnesses.get(pid);
        return typeof w === 'string' ? undefined : w;
      });
      if (copy.why) ctx.precopySkipped.push({ pid: copy.pid, why: `the shared memory at 0x${copy.start.toString(16)} of process ${copy.pid}: ${copy.why}` });
    }
    ctx.fuseFrozen = method !== 'none' && dumped.some(servesFuse);
    const layouts: { pid: number; identity: ProcessIdentity }[] = [];
    for (const pid of dumped) {
      try {
        layouts.push({ pid, identity: whileAlive(pid, () => readIdentity(pid)) });
      } catch (e) {
        if (!leaveOut(pid)) throw e;
      }
    }
    // (only for a progress bar: smaps_rollup walks every page table, and the targets are frozen)
    if (!opts.precopy && opts.onProgress) expected = residentOf(dumped);
    const read: (Awaited<ReturnType<typeof dumpProcess>> & { pid: number })[] = [];
    // (each process's smaps is made while the one before it is read)
    for await (const [{ pid, identity }, regions] of RegionsAhead.each(layouts, (l) => l.pid)) {
      try {
        read.push({ pid, ...(await whileAliveAsync(pid, () => dumpProcess(pid, identity, regions, ctx))) });
      } catch (e) {
        if (!leaveOut(pid, identity.comm)) throw e;
      }
    }
    // A process that died while it was read may have left pages unread (a gone process's pagemap reads as holes).
    const whole: typeof read = [];
    for (const d of read) {
      if (isAlive(d.pid)) whole.push(d);
      else if (!leaveOut(d.pid, d.process.comm)) throw exited(d.pid, 'ESRCH');
    }
    dumped = whole.map((d) => d.pid);
    opts.beforeThaw?.(dumped);
    frozen.thaw();
    frozenMs = performance.now() - frozenAt;
    ctx.records.release();
    // (the descriptors closed side by side while the file is finished)
    untracked = stopTracking(ctx);
    if (method !== 'none') outsideWriters = writersOutside(ctx, [...dumped, ...frozen.sharers.map((x) => x.pid)]);
    for (const d of whole) {
      processes.push(d.process);
      addCounts(ctx.counts, d.counts);
    }
    await Promise.all(whole.map((d) => d.settled));
    objects = await Promise.all([...ctx.objects.values()].map((o) => o.done));
  } catch (e) {
    frozen?.thaw();
    await stopTracking(ctx);
    await writer.abort();
    // Whatever reader noticed first, a vanished target is the cause.
    const dead = dumped.find((p) => !isAlive(p));
    throw dead === undefined ? e : exited(dead, 'ESRCH', e);
  }

  // (objects are the snapshot's, whichever process reached them: counted whole, and once)
  const p = noPages();
  add(p, ctx.counts.pages);
  let pagesShmem = 0;
  let precopiedShared = 0;
  for (const o of ctx.objects.values()) {
    add(p, o.pages);
    pagesShmem += o.pages.data;
    precopiedShared += o.precopied;
  }
  ctx.counts.precopied += precopiedShared;
  const stats: DumpStats = {
    pagesStored: writer.storedPages, pagesDeduplicated: writer.dedupedPages, pagesFromParent: writer.parentPages, pagesZero: p.zero, pagesHole: p.hole, pagesFile: p.file,
    pagesShmem, pagesMarker: p.guard + p.poison, pagesUnreadable: p.unreadable,
    bytesRaw: writer.storedPages * writer.pageSize, bytesCompressed: 0,
  };
  let fileBytes: number;
  try {
    fileBytes = await writer.finish((frames, hashes, compressed): WrittenManifest => {
      stats.bytesCompressed = compressed;
      return {
        format: writer.version, id: writer.id, created: writer.created, tool: 'pagesnap 0.1.0',
        host: { kernel: release(), hostname: hostname(), arch: arch(), pageSize: writer.pageSize },
        hash: { algorithm: 'xxh3-64', seed: writer.seed },
        freeze: { method, frozenMs, fuzzy: method === 'none',
          ...(ctx.precopied.size ? { precopy: { pages: ctx.counts.precopied, ms: precopyMs } } : {}), ...(gone.length ? { exited: gone } : {}),
          ...(frozen!.sharers.length ? { sharers: frozen!.sharers } : {}),
          ...(outsideWriters.length ? { outsideWriters: outsideWriters.map(({ object, pids }) => ({ object, pids })) } : {}) },
        compression: { algorithm: 'zstd', level: writer.level, framePages: writer.framePages },
        processes, objects, frames, hashes, stats,
        ...(parent ? { parent: parent.ref } : {}),
      };
    });
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    await untracked;
  }
  const wallMs = performance.now() - t0;
  return {
    path: writer.path, id: writer.id.toString('hex'), processes: processes.map((x) => x.pid), regions: processes.reduce((s, x) => s + x.regions.length, 0),
    objects: ctx.objects.size, ...stats, regionsDontdump: ctx.counts.dontdump, excludeDontdump: opts.excludeDontdump ?? false, pagesPrecopied: ctx.counts.precopied, pagesPrecopiedShared: precopiedShared, processesExited: gone, sharers: frozen!.sharers, outsideWriters, precopyMs, pagesHugeFrozen: [...ctx.precopied.values()].reduce((n, p) => n + p.tracker.hugeLeft, 0), precopySkipped: ctx.precopySkipped, pagesFromParent: writer.parentPages, parent: parent ? opts.parent! : null, fileBytes, freeze: method, freezeMs: frozen!.freezeMs, frozenMs, wallMs,
    throughputMBps: sink.counters.bytesRead / 1e6 / (wallMs / 1000),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

/**
 * The objects stored that processes outside the snapshot, not frozen, map writable: they may have written them as they
 * were read, so an object's pages need not all be of one instant. Looked for once the targets run again (it reads the
 * maps of every process on the system).
 */
function writersOutside(ctx: Context, frozen: number[]): NamedWriters[] {
  const stored = [...ctx.objects.values()];
  if (stored.length === 0) return [];
  const { mapping } = processesMapping(stored.map((o) => o.mapsKey), true);
  const inside = new Set([...frozen, process.pid]);
  return stored.flatMap((o) => {
    const pids = mapping.get(o.mapsKey)!.filter((p) => !inside.has(p));
    return pids.length ? [{ object: o.id, name: o.name, pids }] : [];
  });
}

/** The targets' resident and swapped bytes (smaps_rollup): what a dump expects to read, for its progress. */
function residentOf(targets: number[]): number {
  let sum = 0;
  for (const pid of targets) {
    try {
      const f = parseSmaps(readProcText(pid, 'smaps_rollup'))[0]?.fields ?? {};
      sum += (f.Rss ?? 0) + (f.Swap ?? 0);
    } catch (e) {
      // (an estimate: a process gone meanwhile adds nothing, and reading it says so if it is one to be dumped)
      if (isAlive(pid)) throw e;
    }
  }
  return sum;
}

/** A process's start time, or undefined once it is gone (with the pid, it says which process this is). */
const startTimeOf = (pid: number): number | undefined => unlessGone(() => readStat(pid).startTime);

/** What `read` gives, or undefined when the process it reads is gone. */
function unlessGone<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** Run `read` on a target; if it failed because the target went away, say that. */
function whileAlive<T>(pid: number, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (isErrno(e, 'ESRCH', 'ENOENT') || !isAlive(pid)) throw exited(pid, 'ESRCH', e);
    throw e;
  }
}

async function whileAliveAsync<T>(pid: number, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (isErrno(e, 'ESRCH') || !isAlive(pid)) throw exited(pid, 'ESRCH', e);
    throw e;
  }
}

/** Regions up to this many pages are read together with their neighbours, up to GROUP_PAGES at a time. */
const SMALL_PAGES = PREFETCH_PAGES;
const GROUP_PAGES = 256;

type WrittenProcess = WrittenManifest['processes'][number];

/**
 * Reads of small regions (or windows) made together once GROUP_PAGES of them are gathered: a process can have 60000
 * regions, and a read (a system call) each costs more than their pages. `read` is told of each once it is read.
 */
class ReadGroup<T extends RegionRead> {
  private items: T[] = [];
  private pages = 0;

  constructor(private readonly mem: ProcessMemory, private readonly ctx: Context, private readonly read: (item: T) => void = () => {}) {}

  async add(item: T, pages: number): Promise<void> {
    this.items.push(item);
    this.pages += pages;
    if (this.pages >= GROUP_PAGES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.items.length === 0) return;
    const items = this.items;
    this.items = [];
    this.pages = 0;
    await readProcessSegments(this.mem, items, this.ctx.sink, this.ctx.bufs);
    for (const x of items) this.read(x);
    this.ctx.progress();
  }
}

/**
 * Dump one process's regions, `batches` of them as smaps lists them (a process can have 60000). Returns once every
 * page is read, with what its regions add up to; `settled` once the region records are complete (their tables in
 * the file), for which the process need not stay frozen.
 */
async function dumpProcess(pid: number, identity: ProcessIdentity, batches: AsyncIterable<Region[]>, shared: Context): Promise<{ process: WrittenProcess; settled: Promise<void>; counts: Counts }> {
  // (its own counts: a member of a tree that exits meanwhile is left out, and so are they)
  const ctx: Context = { ...shared, counts: noCounts() };
  const pm = new Pagemap(pid, { method: ctx.opts.method });
  const mem = new ProcessMemory(pid);
  try {
    // (a region read in windows asks for each window: only whole regions are taken ahead or grouped)
    const small = Math.min(SMALL_PAGES, ctx.opts.windowPages ?? WINDOW_PAGES);
    // each region's record goes to the manifest encoded, in address order, once its tables are in the file
    const records = new EncodedRegions(ctx.records);
    const pending: Promise<void>[] = [];
    let count = 0;
    const record = (r: Region, rec: Recorder, object?: SnapshotRegion['object']) => {
      const index = count++;
      const done = recorded(pid, r, rec, object, ctx, (x) => records.put(index, x));
      if (done) pending.push(done);
    };
    // Small readable regions holding only their own pages are planned, then read together, and recorded once read.
    const group = new ReadGroup<RegionRead & { r: Region; rec: Recorder }>(mem, ctx, (g) => record(g.r, g.rec));
    const precopied = ctx.precopied.get(pid);
    for await (const batch of batches) {
      const regions = batch.map((r) => asFound(precopied, r));
      pm.prefetch(regions, small);
      const tracked = precopied ? regions.filter((r) => trackedIn(precopied, r)) : [];
      if (tracked.length) precopied!.tracker.prefetch(tracked[0]!.start, tracked[tracked.length - 1]!.end);
      for (const r of regions) {
        const shape = shapeOf(r);
        if (markedDontdump(r)) ctx.counts.dontdump++;
        const pages = Number((r.end - r.start) / PAGE);
        if (pages <= small && r.perms.read && !ownsObject(shape)) {
          const rec = new Recorder(ctx.writer);
          const segments = withCopies(ctx, pid, r, 0, pages, planWindow(r, shape, 0, pages, pm, ctx.opts));
          rec.plan(segments);
          await group.add({ r, start: r.start, segments, rec }, pages);
          continue;
        }
        await group.flush();
        const read = await dumpRegion(pid, r, shape, pm, mem, ctx);
        record(r, read.rec, read.object);
      }
    }
    await group.flush();
    const settled = Promise.all(pending).then(() => {});
    settled.catch(() => {}); // (held while other targets are read: a failure surfaces where it is awaited)
    const { ppid, comm, cmdline, uid, nsPids } = identity;
    return { process: { pid, ppid, comm, cmdline, uid, ...(nsPids ? { nsPids } : {}), regions: records }, settled, counts: ctx.counts };
  } finally {
    pm.close();
    mem.close();
  }
}

/** A region the process marked MADV_DONTDUMP (the kernel marks its own special mappings so too: not those). */
const KERNEL_MARKED = new Set(['vdso', 'vvar', 'vsyscall', 'special']);
const markedDontdump = (r: Region) => r.vmFlags.includes('dd') && !KERNEL_MARKED.has(r.kind);
const leftOut = (r: Region, opts: DumpOptions) => opts.excludeDontdump === true && markedDontdump(r);
const LEFT_OUT = 'left out: the process marked it MADV_DONTDUMP (dump --exclude-dontdump)';

const shapeOf = (r: Region): RegionShape => ({
  kind: r.kind, shared: r.perms.shared, vmFlags: r.vmFlags, readable: r.perms.read, shmemBacked: r.backing === 'shmem', fileGone: r.backing === 'file' && r.deleted,
});

/** A shmem mapping's content (or a deleted file's) is its object's. */
const ownsObject = (shape: RegionShape) => decide(shape, 'none').verdict === 'object';

/**
 * Decide the pages [at, at + n) of a region: migration entries are looked at again a few times, then read anyway
 * (the read waits for the migration to finish). `objectError`: the region's object could not be opened, so its
 * mapped pages are read from the process instead.
 */
function planWindow(r: FoundRegion, shape: RegionShape, at: number, n: number, pm: Pagemap, opts: DumpOptions, objectError?: string, object?: OpenObject): Segment[] {
  const win: PagemapRegion = { kind: r.kind, backing: r.backing, vmFlags: r.vmFlags, start: r.start + BigInt(at) * PAGE, end: r.start + BigInt(at + n) * PAGE, ownWpMarkers: r.ownWpMarkers };
  const scan = () => (r.kind === 'vsyscall' ? [] : pm.runs(win));
  const objectAt = object && objectEvidence(object, Number(r.offset / PAGE) + at);
  let populated = scan();
  let runs = planRegion(shape, win.start, n, populated, opts, objectAt);
  for (let i = 0; i < RETRIES && runs.some((x) => x.verdict === 'retry'); i++) {
    sleepSync(5);
    populated = scan();
    runs = planRegion(shape, win.start, n, populated, opts, objectAt);
  }
  const segments: Segment[] = runs.map((x) => ({ ...x, offset: x.offset + at, verdict: x.verdict === 'retry' ? 'data' : x.verdict }));
  // what holds data is named and never read; what holds none (holes, zero pages, markers) is recorded as it is
  if (leftOut(r, opts)) return segments.map((x) => (x.verdict === 'data' || x.verdict === 'object' ? { ...x, verdict: 'unreadable', reason: LEFT_OUT } : x));
  return objectError === undefined ? segments : readMappedInstead(segments, populated, win.start, at, objectError);
}

/**
 * What the object behind a mapping holds, as planRegion takes it: for a mapping registered with userfaultfd (missing
 * mode) a hole in the object is filled by the process's fault handler on a touch (X3). `objectFirst`: the object
 * page at the window's start.
 */
function objectEvidence(o: OpenObject, objectFirst: number): ObjectEvidence {
  return (first, count) => objectSegments(o, objectFirst + first, objectFirst + first + count).map((x) => ({
    offset: x.offset - objectFirst, pages: x.pages, object: { data: x.verdict === 'data', cached: x.case === 'S5' },
  }));
}

const FUSE_FROZEN = 'its deleted file lies on a FUSE mount and a process being dumped serves FUSE: opening it could wait for that frozen process for ever (--freeze none reads it whole)';

/** Read a region in windows (its object too): what it recorded, for `recorded`. */
async function dumpRegion(pid: number, r: FoundRegion, shape: RegionShape, pm: Pagemap, mem: ProcessMemory, ctx: Context): Promise<{ rec: Recorder; object?: SnapshotRegion['object'] }> {
  const pages = Number((r.end - r.start) / PAGE);
  const window = ctx.opts.windowPages ?? WINDOW_PAGES;
  const access = !ownsObject(shape) || leftOut(r, ctx.opts) ? undefined : ctx.fuseFrozen && isFuse(r.fsType) ? { error: FUSE_FROZEN } : openObject(pid, r);
  const rec = new Recorder(ctx.writer);
  try {
    // (only a mapping registered with userfaultfd needs the object's say on its pte-less pages: see objectEvidence)
    const registered = access && !('error' in access) && r.vmFlags.includes('um') ? access : undefined;
    for (let at = 0; at < pages; at += window) {
      const n = Math.min(window, pages - at);
      const segments = withCopies(ctx, pid, r, at, n, planWindow(r, shape, at, n, pm, ctx.opts, access && 'error' in access ? access.error : undefined, registered));
      rec.plan(segments);
      await readProcessSegments(mem, [{ start: r.start, segments, rec }], ctx.sink, ctx.bufs, !r.perms.read);
      ctx.progress();
    }
    let object: SnapshotRegion['object'];
    if (access && !('error' in access)) object = { id: await storeObject(access, r, ctx), offset: r.offset };
    return { rec, object };
  } finally {
    if (access && !('error' in access)) closeObject(access);
  }
}

/**
 * Track a running target's writes, then read the data pages of the memory tracked (the live pass of a precopy);
 * `batches`: its regions as smaps lists them.
 * A target already still (stopped, or in a frozen cgroup) is left alone: it writes nothing, and is read frozen like
 * any other; so is one whose writes cannot be tracked, saying why.
 */
async function copyLive(pid: number, batches: AsyncIterable<Region[]>, ctx: Context): Promise<void> {
  if (isStopped(taskState(pid, pid)) || cgroupFrozen(pid)) return;
  // (a target whose writes cannot be tracked is read frozen, saying why; what was copied of it stays unreferenced)
  const cannot = (e: unknown) => {
    if (!isAlive(pid) || !(e instanceof PagesnapError || e instanceof NativeError)) throw e;
    forgetCopy(ctx, pid);
    ctx.precopySkipped.push({ pid, why: e.message });
  };
  const { startTime } = readStat(pid);
  let tracker: WriteTracker;
  try {
    tracker = WriteTracker.start(pid, { huge: ctx.opts.splitHuge === true, events: ctx.events });
  } catch (e) {
    return cannot(e);
  }
  const live = new LiveCopy();
  ctx.precopied.set(pid, { tracker, live, startTime });
  const pm = new Pagemap(pid, { method: ctx.opts.method });
  const mem = new ProcessMemory(pid);
  try {
    const window = ctx.opts.windowPages ?? WINDOW_PAGES;
    // regions as smaps lists them, a batch at a time (a process can have 60000); small ones read together
    const group = new ReadGroup<RegionRead>(mem, ctx);
    for await (const batch of batches) {
      ctx.liveRegions += batch.length;
      let tracked: Region[];
      try {
        tracked = tracker.track(batch);
      } catch (e) {
        return cannot(e);
      }
      for (const r of batch) if (sharedTrackable(r)) ctx.sharedFound.push({ pid, r });
      pm.prefetch(tracked);
      for (const r of tracked) {
        const size = Number((r.end - r.start) / PAGE);
        for (let at = 0; at < size && !live.full; at += window) {
          const n = Math.min(window, size - at);
          await group.add({ start: r.start, segments: dataWithin(r.start, planWindow(r, shapeOf(r), at, n, pm, ctx.opts), tracker.protectedRuns), rec: live.recorder(r.start) }, n);
        }
      }
      await group.flush();
    }
  } finally {
    pm.close();
    mem.close();
  }
}

/**
 * The live pass of the targets' shared anonymous memory and SysV segments, once their own is copied (see
 * shared-copy.ts): witnesses of forks chosen, every mapping of each object write-protected where the object holds
 * pages, the object checked to be mapped by processes tracked only, then read while they run. An object that cannot
 * be copied so is read frozen, saying why.
 */
async function copySharedLive(ctx: Context): Promise<void> {
  // each object's mappings in the targets tracked
  const objects = new Map<string, { pid: number; r: Region }[]>();
  for (const f of ctx.sharedFound) {
    if (!ctx.precopied.has(f.pid)) continue;
    const key = objectKey(f.r);
    const maps = objects.get(key);
    if (maps) maps.push(f);
    else objects.set(key, [f]);
  }
  for (const pid of new Set([...objects.values()].flat().map((f) => f.pid))) {
    // (one chosen before stays: a copy made again (copyAgainSpoiled) looks for forks since the first)
    if (ctx.witnesses.has(pid)) continue;
    const { tracker } = ctx.precopied.get(pid)!;
    const family = tracker.family;
    // (its forks are read as they happen: see adoptForked)
    if (family !== undefined) ctx.witnesses.set(pid, familySeen(ctx, family));
    else {
      const w = ForkWitness.choose(pid, tracker.protectedRuns);
      ctx.witnesses.set(pid, w instanceof ForkWitness ? w : w.why);
    }
  }
  const open: { copy: SharedCopy; o: OpenObject }[] = [];
  try {
    for (const [key, maps] of objects) {
      const copy = new SharedCopy(maps[0]!.pid, maps[0]!.r);
      ctx.shared.set(key, copy);
      const o = openObject(copy.pid, maps[0]!.r);
      if ('error' in o) copy.why = o.error;
      else {
        open.push({ copy, o });
        // (a page the object gains after this is protected in no mapping: it reads as written, so is read frozen)
        const data = objectData(o, 0, Math.ceil(o.size / Number(PAGE)));
        for (const { pid, r } of maps) if (!copy.why) protectMapping(ctx, copy, data, pid, r);
      }
    }
    await ctx.opts.afterProtectShared?.();
    // (protected everywhere first: a process that maps it and is not tracked may have written it until now, not after)
    await onlyTrackedMap(open.filter((x) => !x.copy.why).map(({ copy, o }) => ({ copy, fd: o.fd })), (pid) => forkedTracked(ctx, pid));
    const window = ctx.opts.windowPages ?? WINDOW_PAGES;
    const ps = ctx.writer.pageSize;
    for (const { copy, o } of open) {
      if (copy.why) continue;
      const pages = Math.ceil(o.size / ps);
      const rec = copy.live.recorder(0n);
      for (let at = 0; at < pages && !copy.live.full; at += window) {
        await readObjectSegments(o.fd, o.size, objectSegments(o, at, Math.min(pages, at + window), ps), ctx.sink, rec, ctx.bufs, ps);
        ctx.progress();
      }
    }
  } finally {
    for (const { o } of open) closeObject(o);
  }
}

/**
 * Copy again, before the freeze, the shared memory whose copy a process's exit spoiled: a member of the tree gone
 * since its mappings were protected, or a process one forked since, took with its page tables which pages it wrote
 * (SharedCopy.check, adoptForked). Gone, it writes no more: with every mapping protected anew and each object read
 * again, what it wrote is in the copy, and the forks found gone now are not looked for at the freeze. Every object is
 * copied again, not only those the process gone was seen to map: a fork may have mapped one its parent no longer did.
 * Up to COPIES_AGAIN times (processes exiting all along: read frozen, as before). Whether it copied any again.
 */
async function copyAgainSpoiled(ctx: Context): Promise<boolean> {
  let copied = false;
  for (let n = 0; n < COPIES_AGAIN && ctx.sharedFound.length > 0; n++) {
    const gone = [...ctx.precopied].filter(([pid, p]) => !isAlive(pid) || startTimeOf(pid) !== p.startTime).map(([pid]) => pid);
    for (const pid of gone) forgetCopy(ctx, pid);
    const forksGone = ctx.events?.census() ?? 0;
    ctx.sharedFound = ctx.sharedFound.filter((f) => ctx.precopied.has(f.pid));
    if (gone.length === 0 && forksGone === 0) break;
    ctx.shared.clear();
    await copySharedLive(ctx);
    copied = true;
  }
  return copied;
}

const COPIES_AGAIN = 2;

/**
 * Write-protect `pid`'s mapping `r` of an object where the object holds pages (`data`: its runs of them), for
 * `copy`; or say in `copy.why` why it cannot be.
 */
function protectMapping(ctx: Context, copy: SharedCopy, data: { first: number; pages: number }[], pid: number, r: Region): void {
  const witness = ctx.witnesses.get(pid)!;
  // (a SysV segment counts a fork's mappings: see SharedCopy.check)
  if (typeof witness === 'string' && copy.shmid === undefined) {
    copy.why = `whether process ${pid}, which maps it, forks cannot be seen: ${witness}`;
    return;
  }
  const first = Number(r.offset / PAGE);
  // (nothing to protect where it may never write; userfaultfd would refuse it)
  if (!r.vmFlags.includes('mw')) {
    copy.mappings.push({ pid, start: r.start, end: r.end, first, writes: false });
    return;
  }
  const last = first + Number((r.end - r.start) / PAGE);
  const runs = data
    .map((d) => [Math.max(first, d.first), Math.min(last, d.first + d.pages)] as const)
    .filter(([a, b]) => a < b)
    .map(([a, b]) => ({ start: r.start + BigInt(a - first) * PAGE, end: r.start + BigInt(b - first) * PAGE }));
  let why = `its mapping in process ${pid} cannot be write-protected`;
  try {
    if (ctx.precopied.get(pid)!.tracker.trackShared(r, runs)) {
      copy.mappings.push({ pid, start: r.start, end: r.end, first, writes: true });
      return;
    }
  } catch (e) {
    // (the process gone meanwhile, or its mapping changed: the memory is read frozen, or not at all)
    if (!(e instanceof NativeError || e instanceof PagesnapError)) throw e;
    why += ` (${e.message})`;
  }
  copy.why = why;
}

/** A window's planned segments, its data pages that a live pass copied and that were not written since taken from the copy. */
function withCopies(ctx: Context, pid: number, r: Region, at: number, n: number, segments: Segment[]): Segment[] {
  const p = ctx.precopied.get(pid);
  if (!p || !trackedIn(p, r)) return segments;
  const start = r.start + BigInt(at) * PAGE;
  const { segments: out, reused } = p.live.reuse(r.start, segments, p.tracker.unwritten(start, start + BigInt(n) * PAGE));
  ctx.counts.precopied += reused;
  return out;
}

/**
 * Whether `pid`, which maps a shared object and is no tracked target, was forked from one (or from such a fork) since it
 * was tracked: it kept a registration (only a fork told to pagesnap does), so its fork is counted, and the freeze
 * decides for it as for every fork (adoptForked: its mappings of the object join those looked at, and one it has not
 * registered, forked before its parent's was, shows every page it holds written). (One gone meanwhile is not: it maps
 * nothing now, which onlyTrackedMap looks at after this.)
 */
function forkedTracked(ctx: Context, pid: number): boolean {
  const stat = unlessGone(() => readStat(pid));
  const regions = unlessGone(() => readRegions(pid));
  if (!stat || !regions) return false;
  // (its parent may be such a fork too, not yet adopted: the nearest ancestor tracked is the one whose forks count)
  for (let up = stat.ppid, depth = 0; up > 1 && depth < 64; depth++) {
    const tracker = ctx.precopied.get(up)?.tracker;
    if (tracker) return toldFork(stat, regions, tracker);
    const s = unlessGone(() => readStat(up));
    if (!s) return false;
    up = s.ppid;
  }
  return false;
}

/**
 * Whether a process (`stat`, `regions`) descended from the one `tracker` tracks is a fork pagesnap was told of, so
 * counted in its family: started since tracking began and carrying a registration, which only a fork told keeps.
 * (Clock ticks are 10 ms: one forked just before its parent's memory was registered has none of it, and told no
 * event; nor has one that exec'd since, taking what it wrote before with its page tables; a registration of its own
 * is not one started before pagesnap's. None of them counts.)
 */
function toldFork(stat: ProcStat, regions: readonly Region[], tracker: WriteTracker): boolean {
  return tracker.family !== undefined && stat.startTime >= tracker.startedTicks && regions.some((r) => r.vmFlags.includes('uw'));
}

/**
 * Once frozen: the processes the tracked targets forked while they were tracked (a family's, in fork-events.ts). Each
 * found among those frozen carries its parent's registration: it is tracked as inherited (its regions recorded as it
 * has them, pagesnap's registration left out) and its mappings of the shared memory copied join that copy's. Where
 * fewer are found than forks were seen (one gone, or not dumped), why that family's shared memory is read frozen.
 */
function adoptForked(ctx: Context, dumped: readonly number[]): void {
  ctx.events!.settle();
  // oldest first: a parent is met before its children (one killed while frozen is left out later, as any member gone)
  const stats = dumped.filter((pid) => !ctx.precopied.has(pid)).flatMap((pid) => {
    const stat = unlessGone(() => readStat(pid));
    return stat ? [{ pid, stat }] : [];
  }).sort((a, b) => a.stat.startTime - b.stat.startTime);
  const found = new Map<number, number>();
  for (const { pid, stat } of stats) {
    const parent = ctx.precopied.get(stat.ppid)?.tracker;
    // (smaps read only for a child of a tracked process started since)
    if (parent?.family === undefined || stat.startTime < parent.startedTicks) continue;
    const regions = unlessGone(() => readRegions(pid));
    if (!regions || !toldFork(stat, regions, parent)) continue;
    found.set(parent.family, (found.get(parent.family) ?? 0) + 1);
    const tracker = WriteTracker.inherited(pid, parent);
    ctx.precopied.set(pid, { tracker, live: new LiveCopy(), startTime: stat.startTime });
    ctx.witnesses.set(pid, familySeen(ctx, parent.family));
    for (const copy of ctx.shared.values()) {
      for (const r of regions) if (objectKey(r) === copy.key) copy.mappings.push({ pid, start: r.start, end: r.end, first: Number(r.offset / PAGE), writes: true });
    }
  }
  // (a family is named for its target, tracked from the start, not for a fork adopted into it)
  for (const p of ctx.precopied.values()) {
    const f = p.tracker.family;
    if (f === undefined || p.tracker.inherited || ctx.familyWhy.has(f)) continue;
    const forks = ctx.events!.forksOf(f);
    // (those found gone before their family's shared memory was copied again: see copyAgainSpoiled)
    const gone = ctx.events!.goneOf(f);
    const seen = found.get(f) ?? 0;
    const who = `process ${p.tracker.pid} (or a process forked from it) forked ${forks} times meanwhile`;
    if (ctx.events!.droppedOf(f) > 0) ctx.familyWhy.set(f, `${who}, more than pagesnap follows at once (${ctx.events!.maxChildren}, a quarter of its limit on open files): what the others wrote is not seen`);
    else if (forks - gone !== seen) ctx.familyWhy.set(f, `${who}${gone ? ` (${gone} gone before it was copied again)` : ''}, and ${seen} of those processes are frozen with it: one gone, or not dumped, may have written it`);
  }
}

/** What says whether a process of `family` forked unseen: the count at the freeze (adoptForked). */
const familySeen = (ctx: Context, family: number): ForksSeen => ({ forked: () => ctx.familyWhy.get(family) ?? null });

/** Stop tracking `pid` and drop what was copied of it (the pages stored stay in the file, unreferenced). */
function forgetCopy(ctx: Context, pid: number): void {
  ctx.precopied.get(pid)?.tracker.stop();
  ctx.precopied.delete(pid);
}

/** End the targets' write tracking, and their children's: every userfaultfd closed side by side. */
async function stopTracking(ctx: Context): Promise<void> {
  // (the fork events' thread told first: a tracker's close waits for it to poll nothing)
  const children = ctx.events?.stop();
  await Promise.all([children, ...[...ctx.precopied.values()].map((p) => p.tracker.stopAside())]);
}

/**
 * A read region's record, given to `into` once its tables are in the file (at once for most: then nothing is
 * returned, else the promise of it); its pages are counted at once.
 */
function recorded(pid: number, r: Region, rec: Recorder, object: SnapshotRegion['object'], ctx: Context, into: (record: SnapshotRegion) => void): Promise<void> | undefined {
  // clean file pages are not stored: a restore maps the file again, and must be able to tell it changed since
  const file = r.backing === 'file' && !r.deleted && !object ? stampOf(pid, r, ctx) : undefined;
  const smaps = keptSmaps(r.fields);
  // (one literal, not a spread of the region's fields and tables: a spread costs a region ~1 KiB)
  const done = rec.finish(({ runs, refs }) => into({
    start: r.start, end: r.end, mode: r.mode, offset: r.offset, dev: r.dev, inode: r.inode, path: r.name, deleted: r.deleted,
    kind: r.kind, backing: r.backing, shmem: r.shmem, vmFlags: r.vmFlags, file, smaps, object, runs, refs,
  }));
  add(ctx.counts.pages, rec.pages);
  return done instanceof Promise ? done : undefined;
}

/** A mapped file's stamp, looked up once per file (a process can map one file in thousands of regions). */
function stampOf(pid: number, r: Region, ctx: Context): FileStamp | undefined {
  const key = `${r.dev}:${r.inode}`;
  if (!ctx.stamps.has(key)) ctx.stamps.set(key, stampMappedFile(pid, r));
  return ctx.stamps.get(key);
}

/** An object's content (shmem, a deleted file), stored once however many regions and processes map it. Returns its id. */
async function storeObject(o: OpenObject, r: Region, ctx: Context): Promise<number> {
  const seen = ctx.objects.get(o.key);
  if (seen) return seen.id;
  const ps = ctx.writer.pageSize;
  const pages = Math.ceil(o.size / ps);
  const window = ctx.opts.windowPages ?? WINDOW_PAGES;
  const rec = new Recorder(ctx.writer);
  // (taken from a precopy's copy where no mapping shows a page written since)
  const shared = ctx.shared.get(objectKey(r));
  let precopied = 0;
  for (let at = 0; at < pages; at += window) {
    let segs = objectSegments(o, at, Math.min(pages, at + window), ps);
    if (shared) {
      const taken = shared.reuse(segs, (m) => ctx.precopied.get(m.pid)!.tracker.unwrittenShared(m.start, m.end));
      segs = taken.segments;
      precopied += taken.reused;
    }
    rec.plan(segs);
    await readObjectSegments(o.fd, o.size, segs, ctx.sink, rec, ctx.bufs, ps);
    ctx.progress();
  }
  const id = ctx.objects.size;
  const obj: Omit<SnapshotObject, 'runs' | 'refs'> = { id, source: r.shmem ?? (r.backing === 'file' ? 'deleted-file' : 'hugetlbfs'), name: r.name ?? '', dev: o.dev, ino: o.ino, size: o.size };
  ctx.objects.set(o.key, { id, mapsKey: objectKey(r), name: obj.name, done: Promise.resolve(rec.finish((t) => ({ ...obj, ...t }))), pages: rec.pages, precopied });
  return id;
}

function add(into: VerdictPages, p: VerdictPages): void {
  for (const k of VERDICT_CODES) into[k] += p[k];
}

/**
 * For a mapping whose object cannot be opened: read the pages this process has mapped, and record the rest
 * as unreadable, with why. `at` is the window's first page within the region.
 */
function readMappedInstead(segments: Segment[], populated: PageRun[], winStart: bigint, at: number, why: string): Segment[] {
  const mapped: [number, number][] = populated
    .filter((x) => x.state === 'file')
    .map((x) => [at + Number((x.start - winStart) / PAGE), x.pages]);
  const out: Segment[] = [];
  for (const s of segments) {
    if (s.verdict !== 'object') {
      out.push(s);
      continue;
    }
    let pos = s.offset;
    const end = s.offset + s.pages;
    for (const [first, n] of mapped) {
      const a = Math.max(first, pos);
      const b = Math.min(first + n, end);
      if (b <= a) continue;
      if (a > pos) out.push({ offset: pos, pages: a - pos, verdict: 'unreadable', case: 'S2', reason: why });
      out.push({ offset: a, pages: b - a, verdict: 'data', case: 'S1' });
      pos = b;
    }
    if (end > pos) out.push({ offset: pos, pages: end - pos, verdict: 'unreadable', case: 'S2', reason: why });
  }
  return out;
}
