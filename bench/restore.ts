/**
 * `restore` and `serve` against C baselines built and run in the same invocation (bench/c/):
 * - eager restore of 1 GiB of bench content: data throughput against a C UFFDIO_COPY fill of the same bytes in
 *   64 KiB runs, and against C zstd decompression of the same frames (goal ≥ 0.6 × the slower of the two);
 * - UFFDIO_MOVE through huge-page staging against the COPY path, on 1 GiB of transparent huge pages (goal ≥ 1.5×),
 *   beside the most MOVE could gain: a C program decoding the same frames straight into its staging page;
 * - fault latency: fixtures/uffd-client touching random pages of 256 MiB, served by `pagesnap serve` without
 *   prefetch, against the same client serving its own faults from memory (a C handler); for frames of 64 (the dump
 *   default), 8 and 1 pages (goal p50 ≤ 3×). Twice: handler and client pinned to one CPU (a wakeup is a context
 *   switch there, so the serving itself shows), and as the scheduler places them (a wakeup crosses CPUs: in a VM
 *   that costs tens of microseconds, and it is what a user gets);
 * - lazy restore of 1 GiB: time until every page is placed, beside the eager restore and CRIU's figures;
 * - 512 MiB in a memfd (written into the object before streaming) against the same bytes in private memory;
 * - 512 MiB whose pages repeat (stored once: placing a repeat needs the frame of its original) against none repeating,
 *   and 512 MiB of one page repeated (a page per ioctl, unless gathered) against bench content;
 * - a 1 GiB hugetlb page, eagerly and lazily (written in directly, both): time against decoding its frames alone,
 *   and peak RSS.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Fixture, type FixtureRegion } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { HostSettings } from '../src/host/settings.js';
import { median, type Row } from './lib.js';
import { CRIU, mid, range } from './reference.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUN = join(ROOT, 'bin', 'run.js');
const CLIENT = join(ROOT, 'fixtures', 'bin', 'uffd-client');
const dir = mkdtempSync(join(tmpdir(), 'pagesnap-bench-restore-'));
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const REPS = 3;

function build(name: string, extra: string[] = []): string | null {
  const out = join(dir, name);
  const r = spawnSync('cc', ['-O2', '-o', out, join(ROOT, 'bench', 'c', `${name}.c`), ...extra], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.log(`  (${name}: cannot build: ${r.stderr.trim().split('\n')[0]})`);
    return null;
  }
  return out;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

function pagesnap<T = any>(args: string[]): T {
  return JSON.parse(run(process.execPath, [RUN, ...args, '--json'])) as T;
}

/** Dump `scenario` (fixture of `mib`), with the dump's own flags; returns the file and the region's name. */
async function snapshotOf(scenario: string, mib: number, extra: string[] = [], name = scenario, shmemMiB?: number): Promise<{ file: string; region: FixtureRegion }> {
  const fx = await Fixture.start([scenario], { sizeMiB: mib, shmemMiB });
  try {
    const s = fx.scenario(scenario);
    if (s.skip) throw new Error(`${scenario}: ${s.skip}`);
    const file = join(dir, `${name}.psnap`);
    pagesnap(['dump', String(fx.pid), '-o', file, '--force', ...extra]);
    return { file, region: s.regions[0]! };
  } finally {
    await fx.stop();
  }
}

/** The snapshot's frame index for the C programs: u64 file offset, u32 size, u32 decoded size per frame. */
function frameIndex(r: SnapshotReader, decoded: (i: number) => number): string {
  const index = join(dir, 'frames.idx');
  const f = r.manifest.frames;
  const ix = Buffer.alloc(f.offset.length * 16);
  for (let i = 0; i < f.offset.length; i++) {
    ix.writeBigUInt64LE(BigInt(f.offset[i]!), i * 16);
    ix.writeUInt32LE(f.size[i]!, i * 16 + 8);
    ix.writeUInt32LE(decoded(i), i * 16 + 12);
  }
  const fi = openSync(index, 'w');
  writeSync(fi, ix);
  closeSync(fi);
  return index;
}

/** The snapshot's stored pages, decoded, in order (what the C fill copies), and its frame index for C zstd. */
function extract(file: string): { raw: string; index: string; bytes: number } {
  const r = SnapshotReader.open(file);
  const raw = join(dir, 'data.raw');
  const fr = openSync(raw, 'w');
  let bytes = 0;
  const index = frameIndex(r, (i) => {
    const b = r.frame(i);
    writeSync(fr, b);
    bytes += b.length;
    return b.length;
  });
  closeSync(fr);
  r.close();
  return { raw, index, bytes };
}

interface Restored { throughputMBs: number; peakRssBytes: number; timings: { setupMs: number; readyMs: number; fullMs: number }; bytes: { copied: number; moved: number } }

const restoreRun = (file: string, extra: string[]) => pagesnap<Restored>(['restore', file, '--no-profile', ...extra]);

async function eager(rows: Row[]): Promise<void> {
  const fill = build('uffd-fill');
  const decode = build('zstd-decode', ['-l:libzstd.so.1']);
  const { file } = await snapshotOf('bench-mix', 1024, [], 'mix');
  const { raw, index, bytes } = extract(file);
  const c: number[] = [];
  const z: number[] = [];
  const ours: number[] = [];
  const full: number[] = [];
  const lazy: number[] = [];
  let rss = 0;
  for (let i = 0; i < REPS; i++) {
    // best of 3 inside one run: the first pays for memory the hypervisor must back again
    if (fill) c.push(Number(run(fill, [raw, '64', '3'])));
    if (decode) z.push(Number(run(decode, [file, index, '3'])));
    // ours best of 3 too, as the C programs are
    const rs = [0, 1, 2].map(() => restoreRun(file, ['--mode', 'copy']));
    ours.push(Math.max(...rs.map((r) => r.throughputMBs / 1000)));
    full.push(Math.min(...rs.map((r) => r.timings.fullMs)));
    const l = restoreRun(file, ['--lazy']);
    lazy.push(l.timings.fullMs);
    rss = Math.max(rss, l.peakRssBytes, ...rs.map((r) => r.peakRssBytes));
  }
  const gb = median(ours);
  const base = Math.min(c.length ? median(c) : Infinity, z.length ? median(z) : Infinity);
  const which = c.length && z.length ? (median(c) < median(z) ? 'C COPY fill' : 'C zstd decode') : c.length ? 'C COPY fill' : 'C zstd decode';
  rows.push({
    bench: 'restore', case: `eager 1 GiB (${(bytes / 1e6).toFixed(0)} MB stored data)`, value: `${gb.toFixed(2)} GB/s`,
    baseline: `${which} ${base.toFixed(2)} GB/s (COPY ${c.length ? median(c).toFixed(2) : '-'}, zstd ${z.length ? median(z).toFixed(2) : '-'})`,
    ratio: gb / base, goal: '≥ 0.6',
  });
  rows.push({ bench: 'restore', case: 'eager and lazy 1 GiB: peak RSS', value: `${(rss / 2 ** 20).toFixed(0)} MiB`, baseline: '256 MiB bound', ratio: rss / 2 ** 28, goal: '≤ 1' });
  rows.push({
    bench: 'restore', case: 'eager 1 GiB: time until full, for reference', value: `${median(full).toFixed(0)} ms`,
    baseline: range(CRIU.restore1GiB), ratio: median(full) / mid(CRIU.restore1GiB), goal: 'published',
  });
  rows.push({
    bench: 'restore', case: 'lazy 1 GiB: time until full', value: `${median(lazy).toFixed(0)} ms`,
    baseline: `eager ${median(full).toFixed(0)} ms`, ratio: median(lazy) / median(full),
  });
  rows.push({
    bench: 'restore', case: 'lazy 1 GiB: time until full, for reference', value: `${median(lazy).toFixed(0)} ms`,
    baseline: range(CRIU.lazy1GiB), ratio: median(lazy) / mid(CRIU.lazy1GiB), goal: 'published',
  });
  rmSync(raw, { force: true });
  rmSync(file, { force: true });
}

async function move(rows: Row[]): Promise<void> {
  let snap: { file: string };
  try {
    snap = await snapshotOf('bench-thp', 1024, [], 'thp');
  } catch (e) {
    console.log(`  (move: ${(e as Error).message})`);
    return;
  }
  const warm = build('touch');
  const ceiling = build('move-ceiling', ['-l:libzstd.so.1']);
  const r = SnapshotReader.open(snap.file);
  const index = frameIndex(r, (i) => r.frame(i).length);
  r.close();
  for (const prewarm of [false, true]) {
    if (prewarm && !warm) continue;
    const ms = { copy: [] as number[], move: [] as number[], auto: [] as number[], cCopy: [] as number[], cMove: [] as number[] };
    const warmed = <T>(f: () => T): T => {
      if (prewarm) run(warm!, ['4']);
      return f();
    };
    for (let i = 0; i < REPS; i++) {
      for (const mode of ['copy', 'move', 'auto'] as const) ms[mode].push(warmed(() => restoreRun(snap.file, ['--mode', mode]).timings.fullMs));
      // only on backed memory: cold, the C program's own reading of the snapshot takes the memory freed last
      if (!ceiling || !prewarm) continue;
      ms.cCopy.push(warmed(() => Number(run(ceiling, [snap.file, index, 'copy']))));
      ms.cMove.push(warmed(() => Number(run(ceiling, [snap.file, index, 'move']))));
    }
    const when = prewarm ? ', after touching 4 GiB (memory the hypervisor backs)' : '';
    rows.push({
      bench: 'restore', case: `MOVE through huge-page staging, 1 GiB THP${when}`, value: `${median(ms.move).toFixed(0)} ms`,
      baseline: `COPY ${median(ms.copy).toFixed(0)} ms (auto ${median(ms.auto).toFixed(0)} ms)`, ratio: median(ms.copy) / median(ms.move), goal: '≥ 1.5',
    });
    if (ms.cMove.length) {
      rows.push({
        bench: 'restore', case: '  the most MOVE could gain: C decoding into its staging page, one process, same memory', value: `${median(ms.cMove).toFixed(0)} ms`,
        baseline: `decode + COPY ${median(ms.cCopy).toFixed(0)} ms`, ratio: median(ms.cCopy) / median(ms.cMove), goal: 'for reference',
      });
    }
  }
  rmSync(snap.file, { force: true });
}

/**
 * The same bytes restored into a memfd (a shmem object: written into it before streaming) and into private memory
 * (streamed through userfaultfd): eagerly, time until full; lazily, time until the process may run, which for the
 * memfd includes all its filling (its faults are not served).
 */
async function shared(rows: Row[]): Promise<void> {
  const mib = 512;
  const priv = await snapshotOf('bench-mix', mib, [], 'private');
  const obj = await snapshotOf('bench-shmem', 0, [], 'memfd', mib);
  const ms = { priv: [] as number[], obj: [] as number[], objReady: [] as number[] };
  for (let i = 0; i < REPS * 2; i++) {
    ms.priv.push(restoreRun(priv.file, ['--mode', 'copy']).timings.fullMs);
    ms.obj.push(restoreRun(obj.file, ['--mode', 'copy']).timings.fullMs);
    ms.objReady.push(restoreRun(obj.file, ['--lazy']).timings.readyMs);
  }
  rows.push({
    bench: 'restore', case: `eager ${mib} MiB in a memfd: time until full`, value: `${median(ms.obj).toFixed(0)} ms`,
    baseline: `as private memory ${median(ms.priv).toFixed(0)} ms`, ratio: median(ms.obj) / median(ms.priv),
  });
  rows.push({
    bench: 'restore', case: `lazy ${mib} MiB in a memfd: time until it runs`, value: `${median(ms.objReady).toFixed(0)} ms`,
    baseline: `eager private ${median(ms.priv).toFixed(0)} ms`, ratio: median(ms.objReady) / median(ms.priv),
  });
  rmSync(priv.file, { force: true });
  rmSync(obj.file, { force: true });
}

/**
 * Content whose pages repeat (bench-repeats: every eighth random page a copy of one of 256 pages near the start, as
 * in real heaps) against the same layout without repeats, time until full: a repeat is stored once, so each costs
 * the decoding of the frame holding its original, unless that frame is still at hand. And memory of one page
 * repeated (bench-pattern) against bench content: a segment of its own for every page, unless they are gathered.
 */
async function repeats(rows: Row[]): Promise<void> {
  const mib = 512;
  const plain = await snapshotOf('bench-mix', mib, [], 'plain');
  const rep = await snapshotOf('bench-repeats', mib, [], 'repeats');
  const pattern = await snapshotOf('bench-pattern', mib, [], 'pattern');
  const ms = { plain: [] as number[], rep: [] as number[], repLazy: [] as number[], plainLazy: [] as number[], pattern: [] as number[] };
  for (let i = 0; i < REPS * 2; i++) {
    ms.plain.push(restoreRun(plain.file, ['--mode', 'copy']).timings.fullMs);
    ms.rep.push(restoreRun(rep.file, ['--mode', 'copy']).timings.fullMs);
    ms.pattern.push(restoreRun(pattern.file, ['--mode', 'copy']).timings.fullMs);
    ms.plainLazy.push(restoreRun(plain.file, ['--lazy']).timings.fullMs);
    ms.repLazy.push(restoreRun(rep.file, ['--lazy']).timings.fullMs);
  }
  rows.push({
    bench: 'restore', case: `eager ${mib} MiB, an eighth of its random pages repeats: time until full`, value: `${median(ms.rep).toFixed(0)} ms`,
    baseline: `no repeats ${median(ms.plain).toFixed(0)} ms`, ratio: median(ms.rep) / median(ms.plain),
  });
  rows.push({
    bench: 'restore', case: `lazy ${mib} MiB, an eighth of its random pages repeats: time until full`, value: `${median(ms.repLazy).toFixed(0)} ms`,
    baseline: `no repeats ${median(ms.plainLazy).toFixed(0)} ms`, ratio: median(ms.repLazy) / median(ms.plainLazy),
  });
  rows.push({
    bench: 'restore', case: `eager ${mib} MiB of one page repeated (a junk-filled heap): time until full`, value: `${median(ms.pattern).toFixed(0)} ms`,
    baseline: `bench content ${median(ms.plain).toFixed(0)} ms`, ratio: median(ms.pattern) / median(ms.plain),
  });
  for (const s of [plain, rep, pattern]) rmSync(s.file, { force: true });
}

/**
 * Many small regions (bench-regions: 60000 VMAs of one page, a JVM's or an Elasticsearch's count) against the same
 * pages in one region (bench-mix of 234 MiB, the same content), eagerly, time until full: what a restore pays per
 * region (decoding its record, planning it, mapping it in the host, a unit of its own to fill).
 */
async function regions(rows: Row[]): Promise<void> {
  const many = await snapshotOf('bench-regions', 0, [], 'regions');
  const one = await snapshotOf('bench-mix', 234, [], 'one-region');
  const ms = { many: [] as number[], manySetup: [] as number[], one: [] as number[] };
  for (let i = 0; i < REPS; i++) {
    const r = restoreRun(many.file, ['--mode', 'copy']).timings;
    ms.many.push(r.fullMs);
    ms.manySetup.push(r.setupMs);
    ms.one.push(restoreRun(one.file, ['--mode', 'copy']).timings.fullMs);
  }
  rows.push({
    bench: 'restore', case: `eager 60000 regions of one page: time until full (setup ${median(ms.manySetup).toFixed(0)} ms)`, value: `${median(ms.many).toFixed(0)} ms`,
    baseline: `one region ${median(ms.one).toFixed(0)} ms`, ratio: median(ms.many) / median(ms.one),
  });
  for (const s of [many, one]) rmSync(s.file, { force: true });
}

/** `cmd args`, run on CPU 0 when `pin` (and taskset is there). */
const onCpu0 = (pin: boolean, cmd: string, args: string[]): [string, string[]] => (pin && have('taskset') ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]);

/** The client's p50 touch latency (µs); `pin`: on CPU 0 (with the server, when there is one). */
function touch(args: string[], pin: boolean): number {
  const out = run(...onCpu0(pin, CLIENT, [...args, '--touch', 'random']));
  return (JSON.parse(out) as { p50us: number }).p50us;
}

/** `serverArgs`: more flags for `pagesnap serve`. */
async function served(file: string, region: FixtureRegion, pin: boolean, serverArgs: string[] = []): Promise<number> {
  const socket = join(dir, 'bench.sock');
  rmSync(socket, { force: true });
  const server = spawn(...onCpu0(pin, process.execPath, [RUN, 'serve', file, '--socket', socket, '--threads', '0', '--once', ...serverArgs]), { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()));
  try {
    return touch(['--socket', socket, '--snapshot-address', `0x${region.start.toString(16)}`, '--length', String(region.pages * 4096), '--no-prefetch'], pin);
  } finally {
    await new Promise((resolve) => {
      server.once('exit', resolve);
      if (server.exitCode !== null) resolve(null);
    });
  }
}

async function faults(rows: Row[]): Promise<void> {
  const mib = 256;
  for (const frames of [64, 8, 1]) {
    const { file, region } = await snapshotOf('bench-mix', mib, ['--frame-pages', String(frames)], `faults-${frames}`);
    for (const pin of [true, false]) {
      const c: number[] = [];
      const cApart: number[] = [];
      const ours: number[] = [];
      const small: number[] = [];
      for (let i = 0; i < REPS; i++) {
        c.push(touch(['--local', '--length', String(mib << 20)], pin));
        if (frames === 64) cApart.push(touch(['--local-process', '--length', String(mib << 20)], pin));
        ours.push(await served(file, region, pin));
        if (frames === 64 && pin) small.push(await served(file, region, pin, ['--cache-mib', String(mib / 4)]));
      }
      const where = `${mib} MiB random, ${frames}-page frames, ${pin ? 'one CPU' : 'unpinned'}`;
      rows.push({
        bench: 'serve', case: `fault latency p50, ${where}`, value: `${median(ours).toFixed(1)} µs`,
        baseline: `C handler ${median(c).toFixed(1)} µs`, ratio: median(ours) / median(c), goal: '≤ 3',
      });
      // the like-for-like baseline: a page server is another process (its faults cost a switch of address space)
      if (cApart.length) {
        rows.push({
          bench: 'serve', case: `fault latency p50, ${where}, vs a C server process`, value: `${median(ours).toFixed(1)} µs`,
          baseline: `C server ${median(cApart).toFixed(1)} µs`, ratio: median(ours) / median(cApart),
        });
      }
      // the default cache holds every frame touched here; when a process touches 4× what the cache holds, most
      // faults decode their frame
      if (small.length) {
        rows.push({
          bench: 'serve', case: `fault latency p50, ${where}, ${mib / 4} MiB frame cache`, value: `${median(small).toFixed(1)} µs`,
          baseline: `C handler ${median(c).toFixed(1)} µs`, ratio: median(small) / median(c),
        });
      }
    }
    rmSync(file, { force: true });
  }
}

/**
 * A 1 GiB hugetlb page, restored eagerly and lazily: written into the host directly either way (streamed, it was
 * decoded whole into pagesnap's memory first: 1140 MiB of RSS and 2.1 s). Time until the process runs, against
 * decoding the page's frames alone (in this process), and pagesnap's peak RSS.
 */
async function huge(rows: Row[]): Promise<void> {
  const host = new HostSettings();
  try {
    const why = host.reserveHugepages(2, 1 << 20);
    let snap: { file: string; region: FixtureRegion };
    try {
      if (why) throw new Error(why);
      snap = await snapshotOf('hugetlb-1g', 0, [], 'huge');
    } catch (e) {
      console.log(`  (huge: ${(e as Error).message})`);
      return;
    }
    const decodeMs = median([0, 1, 2].map(() => decodeAlone(snap.file, snap.region)));
    for (const [how, extra] of [['eager', []], ['lazy', ['--lazy']]] as const) {
      const runs = [0, 1, 2].map(() => restoreRun(snap.file, [...extra]));
      const ready = median(runs.map((r) => r.timings.readyMs));
      const peak = Math.max(...runs.map((r) => r.peakRssBytes));
      rows.push({
        bench: 'restore', case: `${how} 1 GiB hugetlb page, written in: time until it runs`, value: `${ready.toFixed(0)} ms`,
        baseline: `decoding its frames ${decodeMs.toFixed(0)} ms`, ratio: ready / decodeMs,
      });
      rows.push({ bench: 'restore', case: `${how} 1 GiB hugetlb page: peak RSS`, value: `${(peak / 2 ** 20).toFixed(0)} MiB`, baseline: '256 MiB bound', ratio: peak / 2 ** 28, goal: '≤ 1' });
    }
    rmSync(snap.file, { force: true });
  } finally {
    host.restore();
  }
}

/** Milliseconds to read a region's bytes out of a snapshot, a MiB at a time (decompression, checks, copies). */
function decodeAlone(file: string, region: FixtureRegion): number {
  const r = SnapshotReader.open(file);
  try {
    const proc = r.process();
    const t = performance.now();
    for (let at = region.start; at < region.end; at += 1n << 20n) r.read(proc, at, Math.min(1 << 20, Number(region.end - at)));
    return performance.now() - t;
  } finally {
    r.close();
  }
}

/** `parts`: any of eager, shared, repeats, move, faults, huge (all by default). */
export async function benchRestore(parts = ['eager', 'shared', 'repeats', 'regions', 'move', 'faults', 'huge']): Promise<Row[]> {
  const rows: Row[] = [];
  try {
    if (parts.includes('eager')) await eager(rows);
    if (parts.includes('shared')) await shared(rows);
    if (parts.includes('repeats')) await repeats(rows);
    if (parts.includes('regions')) await regions(rows);
    if (parts.includes('move')) await move(rows);
    if (parts.includes('faults')) await faults(rows);
    if (parts.includes('huge')) await huge(rows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
