/**
 * `dump` against what users have today, in the same run on the same process:
 * - gcore (gdb): wall time and core size;
 * - the raw pipeline: process_vm_readv of the ranges pagemap shows populated, piped through `zstd -3 -T2`
 *   (throughput and output size);
 * on the mixed bench content (half random) and on a Node process's heap (fixtures/node-heap.cjs: thousands of
 * regions of compressible objects, as real programs have);
 * - --precopy against a plain dump (time frozen, wall time, peak RSS) on each, on shared memory, and on PostgreSQL under
 *   pgbench (when installed);
 * - a process that reserves 64 GiB and touches N MiB against one that just holds N MiB (time ratio ≈ 1 means the
 *   cost follows what is present);
 * - a shared object's pages one in three, read and stored, against as many in a row (the library, not the CLI).
 * pagesnap runs as its CLI (node startup included), like gcore.
 */
import { spawn, spawnSync } from 'node:child_process';
import { rmSync, statSync, mkdtempSync, chmodSync, writeSync, closeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Fixture } from '../fixtures/driver.js';
import { startNodeHeap } from '../fixtures/node-heap.js';
import { startPostgres, whyNoPostgres } from '../fixtures/postgres.js';
import { HostSettings } from '../src/host/settings.js';
import { Pagemap, readRegions } from '../src/proc/index.js';
import { processVmReadv, memfdCreate, MFD } from '../src/native/index.js';
import { readObjectSegments, PageSink, Recorder, BATCH_BYTES, type Segment } from '../src/dump/pages.js';
import { SnapshotWriter } from '../src/snapshot/writer.js';
import { median, type Row } from './lib.js';
import { CRIU, mid, range } from './reference.js';

const RUN = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pagesnap-bench-'));
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const MB = 1e6;

interface DumpRun { wallMs: number; dumpMs: number; frozenMs: number; freezeMs: number; fileBytes: number; peakRssBytes: number; bytesRead: number }

function pagesnapDump(pid: number, extra: string[] = []): DumpRun {
  const out = join(dir, 'bench.psnap');
  rmSync(out, { force: true });
  const t = performance.now();
  const r = spawnSync(process.execPath, [RUN, 'dump', String(pid), '-o', out, '--json', ...extra], { encoding: 'utf8' });
  const wallMs = performance.now() - t;
  if (r.status !== 0) throw new Error(`pagesnap dump failed: ${r.stderr}`);
  const s = JSON.parse(r.stdout);
  rmSync(out, { force: true });
  return { wallMs, dumpMs: s.wallMs, frozenMs: s.frozenMs, freezeMs: s.freezeMs, fileBytes: s.fileBytes, peakRssBytes: s.peakRssBytes, bytesRead: (s.pagesStored + s.pagesDeduplicated + s.pagesZero) * 4096 };
}

/** Each of `runs` made `reps` times, one of each in turn (so the machine's noise falls on all alike). */
function interleaved(reps: number, ...runs: (() => DumpRun)[]): DumpRun[][] {
  const out = runs.map((): DumpRun[] => []);
  for (let i = 0; i < reps; i++) runs.forEach((run, k) => out[k]!.push(run()));
  return out;
}

const medianOf = (runs: DumpRun[], k: 'wallMs' | 'frozenMs' | 'freezeMs') => median(runs.map((x) => x[k]));

/** gcore as users run it, and until its core is on disk (pagesnap's file is fsynced before it returns). */
function gcore(pid: number): { wallMs: number; durableMs: number; bytes: number } {
  const prefix = join(dir, 'core');
  const t = performance.now();
  const r = spawnSync('gcore', ['-o', prefix, String(pid)], { encoding: 'utf8' });
  const wallMs = performance.now() - t;
  if (r.status !== 0) throw new Error(`gcore failed: ${r.stderr}`);
  const file = `${prefix}.${pid}`;
  spawnSync('sync', [file]);
  const durableMs = performance.now() - t;
  const bytes = statSync(file).size;
  rmSync(file);
  return { wallMs, durableMs, bytes };
}

/** process_vm_readv of every populated anonymous range, 8 MiB per call, into `zstd -3 -T2`. */
async function rawPipeline(pid: number): Promise<{ wallMs: number; bytes: number; read: number }> {
  const out = join(dir, 'raw.zst');
  const t = performance.now();
  const pm = new Pagemap(pid);
  const ranges: { addr: bigint; len: number }[] = [];
  for (const r of readRegions(pid)) {
    if (r.backing !== 'anon') continue;
    for (const run of pm.runs(r)) if (run.state === 'data') ranges.push({ addr: run.start, len: run.pages * 4096 });
  }
  pm.close();
  const z = spawn('sh', ['-c', `zstd -3 -T2 -q -c > '${out}'`], { stdio: ['pipe', 'ignore', 'inherit'] });
  const done = new Promise((r) => z.once('exit', r));
  let read = 0;
  for (const r of ranges) {
    for (let o = 0; o < r.len; o += 8 << 20) {
      const len = Math.min(8 << 20, r.len - o);
      const buf = Buffer.allocUnsafe(len);
      read += processVmReadv(pid, [buf], [{ addr: r.addr + BigInt(o), len }]);
      if (!z.stdin!.write(buf)) await new Promise((res) => z.stdin!.once('drain', res));
    }
  }
  z.stdin!.end();
  await done;
  const wallMs = performance.now() - t;
  const bytes = statSync(out).size;
  rmSync(out);
  return { wallMs, bytes, read };
}

interface Samples { ps: DumpRun[]; gc: ReturnType<typeof gcore>[]; raw: { wallMs: number; bytes: number; read: number }[] }

/** pagesnap, gcore and the raw pipeline on one process, interleaved `reps` times. */
async function samples(pid: number, reps: number): Promise<Samples> {
  const out: Samples = { ps: [], gc: [], raw: [] };
  for (let i = 0; i < reps; i++) {
    out.ps.push(pagesnapDump(pid));
    if (have('gcore')) out.gc.push(gcore(pid));
    if (have('zstd')) out.raw.push(await rawPipeline(pid));
  }
  return out;
}

/** The rows of one target; `published`: also set it beside CRIU's published 1 GiB figures. */
function compare(label: string, { ps, gc, raw }: Samples, published: boolean): Row[] {
  const rows: Row[] = [];
  const p = { wall: median(ps.map((x) => x.wallMs)), dump: median(ps.map((x) => x.dumpMs)), frozen: median(ps.map((x) => x.frozenMs)), size: median(ps.map((x) => x.fileBytes)), rss: Math.max(...ps.map((x) => x.peakRssBytes)), read: ps[0]!.bytesRead };
  rows.push({ bench: 'dump', case: `${label}: peak RSS`, value: `${(p.rss / 2 ** 20).toFixed(0)} MiB`, baseline: '256 MiB bound', ratio: p.rss / 2 ** 28, goal: '≤ 1' });
  if (published) {
    rows.push({ bench: 'dump', case: `${label}: wall, for reference`, value: `${p.wall.toFixed(0)} ms`, baseline: range(CRIU.dump1GiB), ratio: p.wall / mid(CRIU.dump1GiB), goal: 'published' });
    rows.push({ bench: 'dump', case: `${label}: size, for reference`, value: `${(p.size / MB).toFixed(0)} MB`, baseline: `CRIU 4.2 image ${(CRIU.dump1GiB.bytes / MB).toFixed(0)} MB (uncompressed)`, ratio: p.size / CRIU.dump1GiB.bytes, goal: 'published' });
  }
  rows.push({ bench: 'dump', case: `${label}: freeze`, value: `${p.frozen.toFixed(0)} ms frozen`, baseline: `${p.dump.toFixed(0)} ms dump`, ratio: p.frozen / p.dump });
  if (gc.length) {
    const g = { wall: median(gc.map((x) => x.wallMs)), durable: median(gc.map((x) => x.durableMs)), size: median(gc.map((x) => x.bytes)) };
    rows.push({ bench: 'dump', case: `${label}: wall vs gcore`, value: `${p.wall.toFixed(0)} ms`, baseline: `gcore ${g.wall.toFixed(0)} ms`, ratio: p.wall / g.wall, goal: '≤ 1' });
    rows.push({ bench: 'dump', case: `${label}: wall vs gcore + sync of its core`, value: `${p.wall.toFixed(0)} ms`, baseline: `gcore+sync ${g.durable.toFixed(0)} ms`, ratio: p.wall / g.durable });
    rows.push({ bench: 'dump', case: `${label}: size vs gcore core`, value: `${(p.size / MB).toFixed(0)} MB`, baseline: `core ${(g.size / MB).toFixed(0)} MB`, ratio: p.size / g.size, goal: '≤ 0.5' });
  } else rows.push({ bench: 'dump', case: 'gcore baseline', value: 'skipped', baseline: 'gdb not installed', ratio: NaN });
  if (raw.length) {
    const w = { wall: median(raw.map((x) => x.wallMs)), size: median(raw.map((x) => x.bytes)), read: raw[0]!.read };
    // The pipeline's own time on both sides (the raw baseline runs in this process: no startup to count).
    const tp = p.read / p.dump;
    const tr = w.read / w.wall;
    rows.push({ bench: 'dump', case: `${label}: throughput vs raw read+zstd`, value: `${(tp / MB * 1000).toFixed(0)} MB/s`, baseline: `raw ${(tr / MB * 1000).toFixed(0)} MB/s`, ratio: tp / tr, goal: '≥ 0.7' });
    rows.push({ bench: 'dump', case: `${label}: size vs raw read+zstd`, value: `${(p.size / MB).toFixed(0)} MB`, baseline: `raw ${(w.size / MB).toFixed(0)} MB`, ratio: p.size / w.size, goal: '≤ 1.05' });
  } else rows.push({ bench: 'dump', case: 'raw baseline', value: 'skipped', baseline: 'zstd not installed', ratio: NaN });
  return rows;
}

/**
 * How long --precopy keeps a target frozen (and what it costs in all) against a plain dump of it, interleaved. The
 * targets here are idle while dumped: the frozen pass reads nothing again, which is the bound a busy process
 * approaches as it writes less of its memory during the copy.
 */
function precopyRows(label: string, pid: number, reps: number, extra: string[] = []): Row[] {
  const [plain, pre] = interleaved(reps, () => pagesnapDump(pid, extra), () => pagesnapDump(pid, ['--precopy', ...extra]));
  const rss = Math.max(...pre.map((x) => x.peakRssBytes));
  return [
    { bench: 'dump', case: `${label}: frozen with --precopy`, value: `${medianOf(pre, 'frozenMs').toFixed(0)} ms`, baseline: `plain ${medianOf(plain, 'frozenMs').toFixed(0)} ms`, ratio: medianOf(pre, 'frozenMs') / medianOf(plain, 'frozenMs') },
    { bench: 'dump', case: `${label}: wall with --precopy`, value: `${medianOf(pre, 'wallMs').toFixed(0)} ms`, baseline: `plain ${medianOf(plain, 'wallMs').toFixed(0)} ms`, ratio: medianOf(pre, 'wallMs') / medianOf(plain, 'wallMs') },
    // (the live pass's tracking and copies are held through the frozen pass)
    { bench: 'dump', case: `${label}: peak RSS with --precopy`, value: `${(rss / 2 ** 20).toFixed(0)} MiB`, baseline: '256 MiB bound', ratio: rss / 2 ** 28, goal: '≤ 1' },
  ];
}

/** The parts `npm run bench dump:PART,...` can pick; all by default. */
const PARTS = ['mixed', 'busy', 'heap', 'shared', 'postgres', 'regions', 'threads', 'sparse', 'pieces'];

export async function benchDump(parts = PARTS, reps = 3, sizeMiB = 1024): Promise<Row[]> {
  const unknown = parts.filter((p) => !PARTS.includes(p));
  if (unknown.length) throw new Error(`bench dump: no part ${unknown.join(', ')} (there are ${PARTS.join(', ')})`);
  try {
    return await measure(parts, reps, sizeMiB);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(parts: string[], reps: number, sizeMiB: number): Promise<Row[]> {
  const rows: Row[] = [];
  if (parts.includes('mixed')) await mixedContent(rows, reps, sizeMiB);
  if (parts.includes('busy')) await busyWriter(rows, reps, sizeMiB);
  if (parts.includes('heap')) await nodeHeap(rows, reps, sizeMiB);
  if (parts.includes('shared')) await sharedMemory(rows, reps, sizeMiB);
  if (parts.includes('postgres')) await postgresServer(rows, reps, sizeMiB);
  if (parts.includes('regions')) await manyRegions(rows, reps);
  if (parts.includes('threads')) await manyThreads(rows, reps);
  if (parts.includes('sparse')) await sparseReservation(rows, reps);
  if (parts.includes('pieces')) rows.push(await objectPiecesRow(reps));
  return rows;
}

async function mixedContent(rows: Row[], reps: number, sizeMiB: number): Promise<void> {
  const fx = await Fixture.start(['bench-mix'], { sizeMiB });
  try {
    rows.push(...compare(`${sizeMiB} MiB mixed`, await samples(fx.pid, reps), true));
    if (process.arch === 'x64') rows.push(...precopyRows(`${sizeMiB} MiB mixed`, fx.pid, reps));
  } finally {
    await fx.stop();
  }
}

/** A process that keeps writing (a random page every 200 µs) while it is dumped: what --precopy still freezes. */
async function busyWriter(rows: Row[], reps: number, sizeMiB: number): Promise<void> {
  const busy = await Fixture.start(['bench-busy'], { sizeMiB });
  try {
    if (process.arch === 'x64') rows.push(...precopyRows(`${sizeMiB} MiB written to at ~20 MB/s`, busy.pid, reps));
  } finally {
    await busy.stop();
  }
}

/** The mixed content is half random; a program's heap compresses far better and comes in thousands of regions. */
async function nodeHeap(rows: Row[], reps: number, sizeMiB: number): Promise<void> {
  const heap = await startNodeHeap(sizeMiB / 2);
  try {
    rows.push(...compare(`node heap of ${sizeMiB / 2} MiB`, await samples(heap.pid, reps), false));
    if (process.arch === 'x64') rows.push(...precopyRows(`node heap of ${sizeMiB / 2} MiB`, heap.pid, reps));
  } finally {
    await heap.stop();
  }
}

/**
 * Shared anonymous memory (a server's buffers, shared with the children it forks), a SysV segment (a database's),
 * and shared anonymous memory in huge pages (buffers with huge pages; tracked a huge page at a time): copied while
 * they run too.
 */
async function sharedMemory(rows: Row[], reps: number, sizeMiB: number): Promise<void> {
  const sharedKinds = [['bench-shared', 'shared anonymous', 0], ['bench-sysv', 'SysV segment', 0], ['bench-huge-shared', 'shared anonymous in huge pages', sizeMiB / 2]] as const;
  for (const [scenario, what, hugepages] of process.arch === 'x64' ? sharedKinds : []) {
    const host = new HostSettings();
    try {
      const why = hugepages ? host.reserveHugepages(hugepages) : null;
      if (why) {
        rows.push({ bench: 'dump', case: `${sizeMiB} MiB ${what}`, value: 'skipped', baseline: why, ratio: NaN });
        continue;
      }
      const shared = await Fixture.start([scenario], { shmemMiB: sizeMiB });
      try {
        rows.push(...precopyRows(`${sizeMiB} MiB ${what}`, shared.pid, reps));
      } finally {
        await shared.stop();
      }
    } finally {
      host.restore();
    }
  }
}

/**
 * A real server writing all the while: PostgreSQL under pgbench, its buffers shared anonymous memory; a backend
 * process per client, forks of one server (so their pages repeat one another's).
 */
async function postgresServer(rows: Row[], reps: number, sizeMiB: number): Promise<void> {
  const noPostgres = whyNoPostgres();
  if (noPostgres) rows.push({ bench: 'dump', case: 'PostgreSQL under pgbench', value: 'skipped', baseline: noPostgres, ratio: NaN });
  else if (process.arch === 'x64') {
    for (const clients of [4, 30]) {
      // (a directory the postgres account can enter)
      const home = mkdtempSync(join(tmpdir(), 'pagesnap-bench-pg-'));
      chmodSync(home, 0o755);
      try {
        const pg = await startPostgres(home, { sharedBuffersMiB: sizeMiB / 2, scale: 20, clients });
        try {
          rows.push(...precopyRows(`PostgreSQL, ${clients} pgbench clients, ${sizeMiB / 2} MiB of buffers`, pg.postmaster, reps, ['--tree']));
        } finally {
          await pg.stop();
        }
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    }
  }
}

/** Many regions: the per-region costs (smaps, pagemap, tables, reads), where gcore's are small. */
async function manyRegions(rows: Row[], reps: number): Promise<void> {
  const many = await Fixture.start(['bench-regions']);
  try {
    rows.push(...compare('60000 regions of one page', await samples(many.pid, reps), false));
    if (process.arch === 'x64') rows.push(...precopyRows('60000 regions of one page', many.pid, reps));
  } finally {
    await many.stop();
  }
}

/** Many threads: each is frozen and thawed on its own (ptrace), against the same memory in a process of one. */
async function manyThreads(rows: Row[], reps: number): Promise<void> {
  const n = 64;
  const one = await Fixture.start(['bench-mix'], { sizeMiB: n });
  const many = await Fixture.start(['bench-threads'], { sizeMiB: n });
  try {
    const [o, m] = interleaved(reps, () => pagesnapDump(one.pid), () => pagesnapDump(many.pid));
    rows.push({ bench: 'dump', case: `${n} MiB in a process of 2000 threads: wall (freezing ${medianOf(m, 'freezeMs').toFixed(0)} ms)`, value: `${medianOf(m, 'wallMs').toFixed(0)} ms`, baseline: `one thread ${medianOf(o, 'wallMs').toFixed(0)} ms`, ratio: medianOf(m, 'wallMs') / medianOf(o, 'wallMs') });
  } finally {
    await one.stop();
    await many.stop();
  }
}

/** Sparse: 64 GiB reserved with N MiB written, against a dense N MiB process. */
async function sparseReservation(rows: Row[], reps: number): Promise<void> {
  const n = 100;
  const dense = await Fixture.start(['bench-mix'], { sizeMiB: n });
  const sparse = await Fixture.start(['sparse-mix'], { sizeMiB: n });
  try {
    const [d, s] = interleaved(reps, () => pagesnapDump(dense.pid), () => pagesnapDump(sparse.pid)).map((runs) => medianOf(runs, 'wallMs'));
    rows.push({ bench: 'dump', case: `64 GiB reserved, ${n} MiB touched`, value: `${s!.toFixed(0)} ms`, baseline: `${n} MiB dense ${d!.toFixed(0)} ms`, ratio: s! / d!, goal: '≈ 1' });
    // (only the pages it has are write-protected: protecting the reservation whole made page tables for all of it)
    if (process.arch === 'x64') rows.push(...precopyRows(`64 GiB reserved, ${n} MiB touched`, sparse.pid, reps));
  } finally {
    await dense.stop();
    await sparse.stop();
  }
}

/**
 * A shared object's pages written here and there since a precopy (what its frozen pass reads: PostgreSQL's buffers
 * came as ~8000 pieces), read and stored, against as many pages in a row.
 */
async function objectPiecesRow(reps: number): Promise<Row> {
  const pages = 65536;
  const fd = memfdCreate('pagesnap-bench-object', MFD.CLOEXEC);
  try {
    // (an eighth of each page random: about as compressible as a database's pages)
    const page = Buffer.alloc(4096);
    for (let p = 0; p < pages; p++) {
      randomFillSync(page, 0, 512);
      writeSync(fd, page, 0, page.length, p * 4096);
    }
    const scattered: Segment[] = [];
    for (let p = 0; p < pages; p += 3) scattered.push({ offset: p, pages: 1, verdict: 'data', case: 'S2' });
    const inRow: Segment[] = [{ offset: 0, pages: scattered.length, verdict: 'data', case: 'S2' }];
    const bufs = [Buffer.alloc(BATCH_BYTES), Buffer.alloc(BATCH_BYTES)] as const;
    const time = async (segments: Segment[]) => {
      const writer = SnapshotWriter.create(join(dir, 'pieces.psnap'), { force: true });
      try {
        const rec = new Recorder(writer);
        rec.plan(segments);
        const t = performance.now();
        await readObjectSegments(fd, pages * 4096, segments, new PageSink(writer), rec, bufs);
        await writer.drained();
        return performance.now() - t;
      } finally {
        await writer.abort();
      }
    };
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < reps + 1; i++) {
      const x = await time(scattered);
      const y = await time(inRow);
      if (i > 0) a.push(x), b.push(y);
    }
    return { bench: 'dump', case: `${scattered.length} object pages, one in three, read and stored`, value: `${median(a).toFixed(0)} ms`, baseline: `as many in a row ${median(b).toFixed(0)} ms`, ratio: median(a) / median(b), goal: '≈ 1' };
  } finally {
    closeSync(fd);
  }
}
