/**
 * `dump`: freeze the targets, decide every page through the model, read what holds data (process memory with
 * process_vm_readv, shmem objects with pread), store it compressed and deduplicated, thaw, write the manifest.
 * Targets are thawed as soon as their memory is read; the file only appears under its name once complete.
 */
import { release, hostname, arch } from 'node:os';
import { isErrno } from '../native/index.js';
import { Pagemap, readRegions, readIdentity, isAlive, exited, type Region, type PagemapMethod } from '../proc/index.js';
import { SnapshotWriter } from '../snapshot/writer.js';
import type { Manifest, SnapshotObject, SnapshotProcess, SnapshotRegion, DumpStats } from '../snapshot/manifest.js';
import { noPages, type VerdictPages } from '../snapshot/runs.js';
import type { DecideOptions } from '../model/verdict.js';
import { freeze, type FreezeMethod } from './freeze.js';
import { resolveTargets } from './targets.js';
import { planRegion } from './plan.js';
import { PageSink, ProcessMemory, Recorder, readProcessSegments, readObjectSegments, BATCH_BYTES, type Segment } from './pages.js';
import { openObject, objectSegments, closeObject, type OpenObject } from './objects.js';

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
  /** called as pages are read: bytes read so far, bytes planned */
  onProgress?: (read: number, planned: number) => void;
}

export interface DumpSummary {
  path: string;
  id: string;
  processes: number[];
  regions: number;
  objects: number;
  pagesStored: number;
  pagesDeduplicated: number;
  pagesZero: number;
  pagesHole: number;
  pagesShmem: number;
  pagesFile: number;
  pagesMarker: number;
  pagesUnreadable: number;
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

const SMAPS_KEPT = ['Rss', 'Pss', 'Shared_Clean', 'Shared_Dirty', 'Private_Clean', 'Private_Dirty', 'Anonymous', 'LazyFree', 'AnonHugePages', 'ShmemPmdMapped', 'Swap', 'SwapPss', 'Locked', 'KSM'];


export async function dump(pids: number[], opts: DumpOptions): Promise<DumpSummary> {
  const t0 = performance.now();
  const targets = resolveTargets(pids, opts.tree ?? false);
  const method = opts.freeze ?? 'ptrace';
  const writer = SnapshotWriter.create(opts.output, { force: opts.force, level: opts.level, framePages: opts.framePages, threads: opts.threads, dedupe: opts.dedupe, tableEntries: opts.tableEntries });
  const sink = new PageSink(writer);
  const buf = Buffer.alloc(BATCH_BYTES);
  const processes: SnapshotProcess[] = [];
  const pages = noPages();
  let shmemPages = 0;
  const tally = (p: VerdictPages) => {
    for (const k of Object.keys(pages) as (keyof VerdictPages)[]) pages[k] += p[k];
  };
  const objects = new Map<string, SnapshotObject>();
  let frozen: ReturnType<typeof freeze> | undefined;
  let frozenAt = 0;
  let frozenMs = 0;
  try {
    frozen = freeze(targets, method);
    frozenAt = performance.now();
    // Plan everything first, so progress knows the total and reading runs in one pass.
    const plans = targets.map((pid) => planProcess(pid, opts));
    const planned = plans.reduce((s, p) => s + p.dataPages, 0) * writer.pageSize;
    const progress = () => opts.onProgress?.(sink.counters.bytesRead, planned);
    for (const plan of plans) {
      const regions: SnapshotRegion[] = [];
      const mem = new ProcessMemory(plan.pid);
      for (const rp of plan.regions) {
        const rec = new Recorder(writer, rp.segments);
        try {
          await readProcessSegments(mem, rp.region.start, rp.segments, sink, rec, buf, !rp.region.perms.read);
        } catch (e) {
          mem.close();
          if (isErrno(e, 'ESRCH') || !isAlive(plan.pid)) throw exited(plan.pid, 'ESRCH', e);
          throw e;
        }
        progress();
        let object: SnapshotRegion['object'];
        if (rp.objectAccess) {
          const o = rp.objectAccess;
          if (!objects.has(o.key)) {
            const segs = objectSegments(o, writer.pageSize);
            const orec = new Recorder(writer, segs);
            await readObjectSegments(o.fd, segs, sink, orec, buf, writer.pageSize);
            const f = await orec.finish();
            tally(orec.pages);
            shmemPages += orec.pages.data;
            objects.set(o.key, {
              id: objects.size, source: rp.region.shmem ?? 'hugetlbfs', name: rp.region.name ?? '', dev: o.dev, ino: o.ino, size: o.size, runs: f.runs, refs: f.refs,
            });
            progress();
          }
          closeObject(o);
          object = { id: objects.get(o.key)!.id, offset: rp.region.offset };
        }
        const f = await rec.finish();
        tally(rec.pages);
        const r = rp.region;
        regions.push({
          start: r.start, end: r.end, mode: r.mode, offset: r.offset, dev: r.dev, inode: r.inode, path: r.name, deleted: r.deleted,
          kind: r.kind, backing: r.backing, shmem: r.shmem, vmFlags: r.vmFlags,
          smaps: Object.fromEntries(SMAPS_KEPT.filter((k) => k in r.fields).map((k) => [k, r.fields[k]!])), object, runs: f.runs, refs: f.refs,
        });
      }
      mem.close();
      const id = plan.identity;
      processes.push({ pid: id.pid, ppid: id.ppid, comm: id.comm, cmdline: id.cmdline, uid: id.uid, regions });
    }
    // A target that died while it was read may have left pages unread: no snapshot of it.
    const dead = targets.find((p) => !isAlive(p));
    if (dead !== undefined) throw exited(dead, 'ESRCH');
    frozen.thaw();
    frozenMs = performance.now() - frozenAt;
  } catch (e) {
    frozen?.thaw();
    await writer.abort();
    // Whatever reader noticed first, a vanished target is the cause.
    const dead = targets.find((p) => !isAlive(p));
    throw dead === undefined ? e : exited(dead, 'ESRCH', e);
  }

  const stats: DumpStats = {
    pagesStored: writer.storedPages, pagesDeduplicated: writer.dedupedPages, pagesZero: pages.zero, pagesHole: pages.hole, pagesFile: pages.file,
    pagesShmem: shmemPages, pagesMarker: pages.guard + pages.poison, pagesUnreadable: pages.unreadable,
    bytesRaw: writer.storedPages * writer.pageSize, bytesCompressed: 0,
  };
  let fileBytes: number;
  try {
    fileBytes = await writer.finish((frames, hashes, compressed): Manifest => {
      stats.bytesCompressed = compressed;
      return {
        format: 1, id: writer.id, created: writer.created, tool: 'pagesnap 0.1.0',
        host: { kernel: release(), hostname: hostname(), arch: arch(), pageSize: writer.pageSize },
        hash: { algorithm: 'xxh3-64', seed: writer.seed },
        freeze: { method, frozenMs, fuzzy: method === 'none' },
        compression: { algorithm: 'zstd', level: writer.level, framePages: writer.framePages },
        processes, objects: [...objects.values()], frames, hashes, stats,
      };
    });
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const wallMs = performance.now() - t0;
  return {
    path: writer.path, id: writer.id.toString('hex'), processes: processes.map((p) => p.pid), regions: processes.reduce((s, p) => s + p.regions.length, 0),
    objects: objects.size, ...stats, fileBytes, freeze: method, freezeMs: frozen!.freezeMs, frozenMs, wallMs,
    throughputMBps: sink.counters.bytesRead / 1e6 / (wallMs / 1000),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

interface RegionPlan {
  region: Region;
  segments: Segment[];
  objectAccess?: OpenObject;
}

interface ProcessPlan {
  pid: number;
  identity: ReturnType<typeof readIdentity>;
  regions: RegionPlan[];
  dataPages: number;
}

/** Migration entries are transient (case A10): look again a few times before reading them anyway. */
const RETRIES = 3;

function planProcess(pid: number, opts: DumpOptions): ProcessPlan {
  let identity: ReturnType<typeof readIdentity>;
  let regions: Region[];
  let pm: Pagemap;
  try {
    identity = readIdentity(pid);
    regions = readRegions(pid);
    pm = new Pagemap(pid, { method: opts.method });
  } catch (e) {
    if (!isAlive(pid)) throw exited(pid, 'ESRCH', e);
    throw e;
  }
  try {
    let dataPages = 0;
    const plans = regions.map((region): RegionPlan => {
      const shape = { kind: region.kind, shared: region.perms.shared };
      const pages = Number((region.end - region.start) / 4096n);
      const populated = region.kind === 'vsyscall' ? [] : pm.runs(region);
      let runs = planRegion(shape, region.start, pages, populated, opts);
      for (let i = 0; i < RETRIES && runs.some((r) => r.verdict === 'retry'); i++) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        runs = planRegion(shape, region.start, pages, pm.runs(region), opts);
      }
      // Still migrating: read it anyway (the read waits for the migration to finish).
      let segments: Segment[] = runs.map((r) => ({ ...r, verdict: r.verdict === 'retry' ? 'data' : r.verdict }));
      let objectAccess: RegionPlan['objectAccess'];
      if (runs.some((r) => r.verdict === 'object')) {
        const o = openObject(pid, region);
        if ('error' in o) {
          // Without the object only what this process has mapped can be read; the rest is said to be missing.
          segments = segments.map((s) => (s.verdict === 'object' ? { ...s, verdict: 'unreadable' } : s));
          segments = reReadPresent(segments, populated, region, o.error);
        } else objectAccess = o;
      }
      dataPages += segments.reduce((s, x) => s + (x.verdict === 'data' ? x.pages : 0), 0);
      return { region, segments, objectAccess };
    });
    return { pid, identity, regions: plans, dataPages };
  } finally {
    pm.close();
  }
}

/** For a shmem mapping whose object cannot be opened: read its present pages from the process, mark the rest. */
function reReadPresent(segments: Segment[], populated: ReturnType<Pagemap['runs']>, region: Region, why: string): Segment[] {
  const pages = Number((region.end - region.start) / 4096n);
  const state = new Uint8Array(pages);
  for (const r of populated) if (r.state === 'file') state.fill(1, Number((r.start - region.start) / 4096n), Number((r.start - region.start) / 4096n) + r.pages);
  const out: Segment[] = [];
  for (const s of segments) {
    if (s.verdict !== 'unreadable') {
      out.push(s);
      continue;
    }
    for (let i = s.offset; i < s.offset + s.pages; ) {
      let j = i;
      while (j < s.offset + s.pages && state[j] === state[i]) j++;
      out.push(state[i] ? { offset: i, pages: j - i, verdict: 'data', case: 'S1' } : { offset: i, pages: j - i, verdict: 'unreadable', case: 'S2', reason: why });
      i = j;
    }
  }
  return out;
}

