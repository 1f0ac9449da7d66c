/**
 * `diff`: what changed between two snapshots, from their manifests and page hashes alone when they are of one chain
 * (no page is decompressed; snapshots of unrelated chains hash under different seeds, so one side is re-hashed).
 * Regions are matched by address (same range; same start, other size: resized), else by file and offset (moved);
 * within a pair, page k of one is compared with page k of the other: its content (a stored page's hash, or an
 * object page's, or nothing: zero, hole) and its state (verdict and case, so data → zero or RAM → swap shows).
 */
import type { SnapshotReader } from '../snapshot/reader.js';
import type { SnapshotObject, SnapshotProcess, SnapshotRegion } from '../snapshot/manifest.js';
import { PagesnapError, xxh3_64, type Addr } from '../native/index.js';
import { fileDifference } from '../proc/index.js';

/** A stretch of pages with one state: their hashes when they hold data, else whether they read as zero. */
interface Piece {
  offset: number;
  pages: number;
  /** verdict and case, e.g. `data A4` */
  state: string;
  hashes?: BigUint64Array;
}

export type PageStatus = 'changed' | 'added' | 'removed';

export interface ChangedRange {
  /** in B (in A for a range only A has) */
  start: Addr;
  pages: number;
  status: PageStatus;
}

export interface PageCountsDiff {
  changed: number;
  added: number;
  removed: number;
  unchanged: number;
}

export interface RegionDiff {
  /** what happened to the region itself; empty when it is where it was, as it was */
  status: ('added' | 'removed' | 'moved' | 'resized' | 'reprotected' | 'file-changed')[];
  a: { start: Addr; end: Addr; mode: string } | null;
  b: { start: Addr; end: Addr; mode: string } | null;
  kind: string;
  path: string | null;
  pages: PageCountsDiff;
  /** state changes of pages, `from → to`: pages */
  transitions: Record<string, number>;
  ranges: ChangedRange[];
  /** pages in the band (the larger side), and each page's class for a picture */
  span: number;
  runs: { offset: number; pages: number; cls: PageStatus | 'unchanged' | 'empty' }[];
}

export interface SideInfo {
  file: string;
  id: string;
  created: string;
  kernel: string;
  hostname: string;
  pid: number;
  comm: string;
}

export interface DiffReport {
  a: SideInfo;
  b: SideInfo;
  notes: string[];
  /** the regions with something to report (see `differs`), in address order; every region when asked for all */
  regions: RegionDiff[];
  objects: (RegionDiff & { name: string })[];
  /** `regions`: how many regions were compared (paired, added or removed) */
  totals: PageCountsDiff & { bytesChanged: number; regions: number; regionsChanged: number; regionsAdded: number; regionsRemoved: number };
  transitions: Record<string, number>;
}

/** Whether a region has something to report: it moved, appeared, went, or a page of it changed, or changed state. */
export const differs = (r: RegionDiff): boolean =>
  r.status.length > 0 || r.pages.changed + r.pages.added + r.pages.removed > 0 || Object.keys(r.transitions).length > 0;

/**
 * Hashes of stored pages [n, n+count) under `seed`: the recorded ones when the snapshot used that seed, else
 * computed from the pages themselves (snapshots of unrelated chains hash differently).
 */
function hashes(r: SnapshotReader, n: number, count: number, seed: number): BigUint64Array {
  if (r.manifest.hash.seed === seed) return r.hashRange(n, count);
  const out = new BigUint64Array(count);
  for (let i = 0; i < count; i++) out[i] = xxh3_64(r.page(n + i), seed);
  return out;
}

/** The pieces of a region or object, in order, object pages resolved through their object. */
function pieces(r: SnapshotReader, x: SnapshotRegion | SnapshotObject, seed: number): Piece[] {
  const out: Piece[] = [];
  for (const st of r.stretches(x)) {
    const state = `${st.run.verdict} ${st.run.case}`;
    if (st.src !== undefined) out.push({ offset: st.offset, pages: st.pages, state, hashes: hashes(r, st.src, st.pages, seed) });
    else if (st.run.verdict === 'object' && 'object' in x && x.object) {
      const base = Number(x.object.offset / BigInt(r.pageSize));
      for (const o of r.stretches(r.object(x.object.id))) {
        const a = Math.max(base + st.offset, o.offset);
        const b = Math.min(base + st.offset + st.pages, o.offset + o.pages);
        if (a >= b) continue;
        out.push({ offset: a - base, pages: b - a, state, hashes: o.src === undefined ? undefined : hashes(r, o.src + (a - o.offset), b - a, seed) });
      }
    } else out.push({ offset: st.offset, pages: st.pages, state });
  }
  return out;
}

/** Walks pieces by page offset; a page in none is a hole, past the end unmapped. */
class Cursor {
  private i = 0;
  constructor(private readonly ps: Piece[], readonly pages: number) {}
  /** the piece at page k (or a gap), and where it ends */
  at(k: number): { piece: Piece | null; state: string; end: number } {
    if (k >= this.pages) return { piece: null, state: 'unmapped', end: Infinity };
    while (this.i < this.ps.length && this.ps[this.i]!.offset + this.ps[this.i]!.pages <= k) this.i++;
    const p = this.ps[this.i];
    if (!p || p.offset > k) return { piece: null, state: 'hole', end: Math.min(p?.offset ?? this.pages, this.pages) };
    return { piece: p, state: p.state, end: p.offset + p.pages };
  }
}

interface Compared {
  pages: PageCountsDiff;
  transitions: Record<string, number>;
  ranges: ChangedRange[];
  runs: RegionDiff['runs'];
  span: number;
}

/** Page k of A against page k of B over both regions (or objects); addresses of B's pages are `bStart + k`. */
function compare(ra: SnapshotReader, xa: (SnapshotRegion | SnapshotObject) | null, rb: SnapshotReader, xb: (SnapshotRegion | SnapshotObject) | null, startOf: (k: number, status: PageStatus) => Addr): Compared {
  const pa = xa ? ra.pagesOf(xa) : 0;
  const pb = xb ? rb.pagesOf(xb) : 0;
  const seed = rb.manifest.hash.seed;
  const ca = new Cursor(xa ? pieces(ra, xa, seed) : [], pa);
  const cb = new Cursor(xb ? pieces(rb, xb, seed) : [], pb);
  const out: Compared = { pages: { changed: 0, added: 0, removed: 0, unchanged: 0 }, transitions: {}, ranges: [], runs: [], span: Math.max(pa, pb) };
  const mark = (k: number, n: number, cls: RegionDiff['runs'][number]['cls']) => {
    const last = out.runs[out.runs.length - 1];
    if (last && last.cls === cls && last.offset + last.pages === k) last.pages += n;
    else out.runs.push({ offset: k, pages: n, cls });
    if (cls === 'changed' || cls === 'added' || cls === 'removed') {
      const r = out.ranges[out.ranges.length - 1];
      const start = startOf(k, cls);
      if (r && r.status === cls && r.start + BigInt(r.pages * ra.pageSize) === start) r.pages += n;
      else out.ranges.push({ start, pages: n, status: cls });
    }
  };
  for (let k = 0; k < out.span; ) {
    const a = ca.at(k);
    const b = cb.at(k);
    const end = Math.min(a.end, b.end, out.span);
    const n = end - k;
    if (a.state !== b.state) out.transitions[`${a.state} → ${b.state}`] = (out.transitions[`${a.state} → ${b.state}`] ?? 0) + n;
    const ha = a.piece?.hashes;
    const hb = b.piece?.hashes;
    if (ha && hb) {
      const oa = k - a.piece!.offset;
      const ob = k - b.piece!.offset;
      for (let i = 0; i < n; ) {
        // a stretch of pages that are all the same, or all different, at a time
        const same = ha[oa + i] === hb[ob + i];
        let j = i + 1;
        while (j < n && (ha[oa + j] === hb[ob + j]) === same) j++;
        if (same) out.pages.unchanged += j - i;
        else out.pages.changed += j - i;
        mark(k + i, j - i, same ? 'unchanged' : 'changed');
        i = j;
      }
    } else if (ha) {
      out.pages.removed += n;
      mark(k, n, 'removed');
    } else if (hb) {
      out.pages.added += n;
      mark(k, n, 'added');
    } else mark(k, n, 'empty');
    k = end;
  }
  return out;
}

const described = (r: SnapshotRegion) => ({ start: r.start, end: r.end, mode: r.mode });

/**
 * Pair A's regions with B's: same range, same start (resized), else same file and offset (moved). Looked up by key
 * (a process can have 60000 regions: a search of B's for each of A's took minutes). `byShape`, for snapshots of two
 * processes (another run of a program places its anonymous memory elsewhere): regions still unpaired then pair in
 * address order by what they are (kind, size, protection, name), the k-th of a shape in A with the k-th in B, as a
 * program that allocates in the same order places them.
 */
function pairRegions(a: SnapshotRegion[], b: SnapshotRegion[], byShape: boolean): [SnapshotRegion | null, SnapshotRegion | null][] {
  const left = new Set(b);
  // B's regions by key, in address order, each list with a cursor past those already taken (by any key): thousands
  // of regions sharing a key (one file mapped many times, same-sized anonymous regions) are not searched again
  const by = (key: (r: SnapshotRegion) => string | null) => {
    const m = new Map<string, { items: SnapshotRegion[]; next: number }>();
    for (const r of b) {
      const k = key(r);
      if (k === null) continue;
      const q = m.get(k);
      if (q) q.items.push(r);
      else m.set(k, { items: [r], next: 0 });
    }
    return (r: SnapshotRegion): SnapshotRegion | null => {
      const k = key(r);
      const q = k === null ? undefined : m.get(k);
      if (!q) return null;
      while (q.next < q.items.length && !left.has(q.items[q.next]!)) q.next++;
      const x = q.items[q.next];
      if (!x) return null;
      left.delete(x);
      return x;
    };
  };
  const sameRange = by((r) => `${r.start}-${r.end}`);
  const sameStart = by((r) => `${r.start}`);
  const sameFile = by((r) => (r.path ? `${r.path}\0${r.offset}\0${r.kind}` : null));
  const pairs: [SnapshotRegion | null, SnapshotRegion | null][] = a.map((ra) => [ra, sameRange(ra) ?? sameStart(ra) ?? sameFile(ra)]);
  if (byShape) {
    const sameShape = by((r) => `${r.kind}\0${r.end - r.start}\0${r.mode}\0${r.path ?? ''}`);
    for (const p of pairs) p[1] ??= sameShape(p[0]!);
  }
  for (const rb of left) pairs.push([null, rb]);
  return pairs.sort((x, y) => Number((x[1]?.start ?? x[0]!.start) - (y[1]?.start ?? y[0]!.start)));
}

function pairProcesses(a: SnapshotReader, b: SnapshotReader, pid: number | undefined, notes: string[]): [SnapshotProcess, SnapshotProcess] {
  if (pid !== undefined) return [a.process(pid), b.process(pid)];
  const common = a.manifest.processes.filter((p) => b.manifest.processes.some((q) => q.pid === p.pid));
  if (common.length === 1 || (common.length > 1 && a.manifest.processes.length === 1)) return [a.process(common[0]!.pid), b.process(common[0]!.pid)];
  if (common.length > 1) {
    throw new PagesnapError(`both snapshots hold processes ${common.map((p) => p.pid).join(', ')}`, { code: 'EINVAL', hint: 'choose one with --pid' });
  }
  const pa = a.process();
  const pb = b.process();
  notes.push(`different processes: ${pa.pid} (${pa.comm}) and ${pb.pid} (${pb.comm}); regions are matched by address and file, then by what they are in address order (kind, size, protection, name)`);
  return [pa, pb];
}

/**
 * Whether the paired regions map a file that is not the same, or not as it was: their clean pages, which neither
 * snapshot holds, may differ where the page comparison sees none.
 */
function fileChanged(a: SnapshotRegion, b: SnapshotRegion): boolean {
  if (a.backing !== 'file' || b.backing !== 'file' || a.deleted || b.deleted) return false;
  return fileDifference(a, b) !== undefined;
}

function side(r: SnapshotReader, p: SnapshotProcess): SideInfo {
  const m = r.manifest;
  return { file: r.path, id: m.id.toString('hex'), created: new Date(m.created).toISOString(), kernel: m.host.kernel, hostname: m.host.hostname, pid: p.pid, comm: p.comm };
}

function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/**
 * Compare two snapshots. `all`: list every region, not only those with something to report (a process of 60000
 * regions that changed a few kept 60000 records).
 */
export function diffSnapshots(a: SnapshotReader, b: SnapshotReader, opts: { pid?: number; all?: boolean } = {}): DiffReport {
  if (a.pageSize !== b.pageSize) throw new PagesnapError(`${a.path} has ${a.pageSize}-byte pages and ${b.path} ${b.pageSize}-byte ones`, { code: 'EINVAL' });
  const notes: string[] = [];
  const [pa, pb] = pairProcesses(a, b, opts.pid, notes);
  const oneProcess = pa.pid === pb.pid;
  a.prefetchTables(pa);
  b.prefetchTables(pb);
  if (a.manifest.host.kernel !== b.manifest.host.kernel) notes.push(`different kernels: ${a.manifest.host.kernel} and ${b.manifest.host.kernel}`);
  if (a.manifest.host.hostname !== b.manifest.host.hostname) notes.push(`different machines: ${a.manifest.host.hostname} and ${b.manifest.host.hostname}`);
  if (a.manifest.hash.seed !== b.manifest.hash.seed) {
    notes.push(`the snapshots are not of one chain (their page hashes differ in seed): ${a.path}'s pages were read and hashed again to compare them (dump with --parent to compare by hashes alone)`);
  }
  const ps = BigInt(a.pageSize);
  const totals: DiffReport['totals'] = { changed: 0, added: 0, removed: 0, unchanged: 0, bytesChanged: 0, regions: 0, regionsChanged: 0, regionsAdded: 0, regionsRemoved: 0 };
  const transitions: Record<string, number> = {};
  const regions: RegionDiff[] = [];
  for (const [ra, rb] of pairRegions(pa.regions, pb.regions, !oneProcess)) {
    const status: RegionDiff['status'] = [];
    if (!ra) status.push('added');
    else if (!rb) status.push('removed');
    else {
      // (another process's regions lie elsewhere anyway: the note says so, the ranges show where)
      if (oneProcess && ra.start !== rb.start) status.push('moved');
      if (ra.end - ra.start !== rb.end - rb.start) status.push('resized');
      if (ra.mode !== rb.mode) status.push('reprotected');
      if (fileChanged(ra, rb)) status.push('file-changed');
    }
    const c = compare(a, ra, b, rb, (k, s) => (s === 'removed' || !rb ? ra!.start : rb.start) + BigInt(k) * ps);
    const x = ra ?? rb!;
    const r: RegionDiff = { status, a: ra && described(ra), b: rb && described(rb), kind: x.kind, path: x.path, ...c };
    totals.regions++;
    totals.changed += r.pages.changed;
    totals.added += r.pages.added;
    totals.removed += r.pages.removed;
    totals.unchanged += r.pages.unchanged;
    if (r.status.includes('added')) totals.regionsAdded++;
    else if (r.status.includes('removed')) totals.regionsRemoved++;
    else if (r.status.length || r.pages.changed + r.pages.added + r.pages.removed) totals.regionsChanged++;
    add(transitions, r.transitions);
    if (opts.all || differs(r)) regions.push(r);
  }
  totals.bytesChanged = (totals.changed + totals.added + totals.removed) * a.pageSize;
  // shmem objects by identity (device and inode), else by name and size
  const objects = a.manifest.objects.flatMap((oa) => {
    const ob = b.manifest.objects.find((o) => o.dev === oa.dev && o.ino === oa.ino) ?? b.manifest.objects.find((o) => o.name === oa.name && o.size === oa.size);
    if (!ob) return [];
    const c = compare(a, oa, b, ob, (k) => BigInt(k) * ps);
    return [{ status: [] as RegionDiff['status'], a: null, b: null, kind: oa.source, path: oa.name, name: oa.name, ...c }];
  });
  return { a: side(a, pa), b: side(b, pb), notes, regions, objects, totals, transitions };
}

/** The bytes of one page in both snapshots (only for `--hex`: this decompresses their frames). */
export function pageBytes(a: SnapshotReader, b: SnapshotReader, report: DiffReport, addr: Addr): { a: Buffer | string; b: Buffer | string } {
  const ps = BigInt(a.pageSize);
  const at = addr - (addr % ps);
  const read = (r: SnapshotReader, pid: number) => {
    try {
      return r.read(r.process(pid), at, a.pageSize);
    } catch (e) {
      return (e as Error).message;
    }
  };
  return { a: read(a, report.a.pid), b: read(b, report.b.pid) };
}
