/**
 * `lab`: re-creates each known pagemap inaccuracy on this kernel, in fixture processes of its own, and reports
 * what pagemap and PAGEMAP_SCAN say, where the data really is, whether a pagemap-only dumper loses it, and whether
 * pagesnap's dump keeps it — proved by dumping and comparing every byte the fixture wrote.
 */
import { rmSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Fixture, type FixtureRegion } from '../../fixtures/driver.js';
import { expectedPage } from '../../fixtures/pattern.js';
import { Pagemap, KpageReader, kpfNames, readRegions, type Region } from '../proc/index.js';
import { PAGE_IS, PagesnapError, processVmReadv, ownedTempDir } from '../native/index.js';
import { HostSettings } from '../host/settings.js';
import { SnapshotReader } from '../snapshot/reader.js';
import { dump } from '../dump/dump.js';
import { audit } from './audit.js';

export interface LabResult {
  name: string;
  /** the cases this re-creates (kernel-semantics §2.1, or pagesnap's X cases) */
  cases: string[];
  /** why it could not be re-created here */
  skip?: string;
  pages?: number;
  /** what this process's pagemap shows, and what PAGEMAP_SCAN reports */
  pagemap?: string;
  scan?: string;
  /** where the data is, by the model's case */
  data?: string;
  naiveLoses?: number;
  /** pages holding data that pagesnap's dump kept byte for byte, of those the fixture wrote */
  kept?: number;
  of?: number;
  /** free text: what else was measured (migration entries caught) */
  note?: string;
}

export interface LabReport {
  kernel: string;
  results: LabResult[];
}

interface Entry {
  name: string;
  cases: string[];
  scenario: string;
  /** regions to examine, in the fixture process or its fork child */
  regions: string[];
  child?: boolean;
  needs?: 'swap' | 'ksm' | 'thp' | 'hugetlb';
}

export const LAB: readonly Entry[] = [
  { name: 'seeds: A writes shmem, swap-out, A forks B, A unmaps, dump both', cases: ['S3', 'S2'], scenario: 'seed', regions: ['seed-shmem'], child: true, needs: 'swap' },
  { name: 'shmem zapped by MADV_DONTNEED', cases: ['S2'], scenario: 'shmem-zapped', regions: ['shmem-zapped'] },
  { name: 'shmem written only through pwrite', cases: ['S2'], scenario: 'shmem-pwrite', regions: ['shmem-pwrite'] },
  { name: 'fork child of a shmem owner', cases: ['S2'], scenario: 'shmem-fork', regions: ['shmem-child'], child: true },
  { name: 'shmem swapped out', cases: ['S3'], scenario: 'swap', regions: ['shmem-swapped'], needs: 'swap' },
  { name: 'anon swapped out', cases: ['A4'], scenario: 'swap', regions: ['anon-swapped'], needs: 'swap' },
  { name: 'guard markers, anon', cases: ['A15'], scenario: 'guard', regions: ['anon-guard'] },
  { name: 'guard markers, shmem', cases: ['A16'], scenario: 'guard', regions: ['shmem-guard'] },
  { name: 'uffd-wp markers over holes', cases: ['A17'], scenario: 'uffd-wp', regions: ['wp-hole'] },
  { name: 'uffd-wp markers over shmem data', cases: ['A18'], scenario: 'uffd-wp', regions: ['wp-shmem'] },
  { name: 'poison markers (UFFDIO_POISON)', cases: ['A14'], scenario: 'poison', regions: ['poisoned'] },
  { name: 'the huge zero page claims PM_FILE', cases: ['A7'], scenario: 'thp', regions: ['huge-zero'], needs: 'thp' },
  { name: 'KSM-merged pages', cases: ['K1'], scenario: 'ksm', regions: ['ksm'], needs: 'ksm' },
  { name: 'MAP_PRIVATE memfd: clean vs copied', cases: ['F2', 'F3'], scenario: 'file-private', regions: ['memfd-private'] },
  { name: 'hugetlb, private and shared', cases: ['H1', 'H2'], scenario: 'hugetlb', regions: ['hugetlb-private', 'hugetlb-shared'], needs: 'hugetlb' },
  { name: 'aio ring: completions written by the kernel', cases: ['X4'], scenario: 'aio', regions: ['aio-ring'] },
];

const SCAN_NAMES: [number, string][] = [
  [PAGE_IS.PRESENT, 'PRESENT'], [PAGE_IS.SWAPPED, 'SWAPPED'], [PAGE_IS.FILE, 'FILE'], [PAGE_IS.PFNZERO, 'PFNZERO'], [PAGE_IS.HUGE, 'HUGE'], [PAGE_IS.GUARD, 'GUARD'],
];

function summarize(counts: Map<string, number>, total: number): string {
  const listed = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  const shown = listed.reduce((s, [, n]) => s + n, 0);
  const parts = listed.map(([k, n]) => `${n} ${k}`);
  if (total > shown) parts.push(`${total - shown} nothing`);
  return parts.join(', ');
}

const PM_BITS: [bigint, string][] = [[1n << 63n, 'PRESENT'], [1n << 62n, 'SWAP'], [1n << 61n, 'FILE'], [1n << 58n, 'GUARD'], [1n << 57n, 'UFFD_WP'], [1n << 56n, 'EXCL']];
const KPF_SHOWN = ['KSM', 'THP', 'ZERO_PAGE', 'HUGE', 'ANON'];

/** pagemap (its raw bits, and kpageflags of present pages when root) and PAGEMAP_SCAN of one region, in words. */
function pagemapViews(pid: number, region: Region): { pagemap: string; scan: string } {
  const pages = Number((region.end - region.start) / 4096n);
  const pread = new Pagemap(pid, { method: 'pread' });
  const bits = new Map<string, number>();
  const kpf = new Map<string, number>();
  const kp = new KpageReader();
  try {
    for (let at = region.start; at < region.end; at += 1n << 28n) {
      const end = at + (1n << 28n) < region.end ? at + (1n << 28n) : region.end;
      const details = pread.details(at, end, region);
      const info = kp.read(details.map((d) => d.pfn));
      details.forEach((d, i) => {
        if (d.raw === null || d.raw === 0n) return;
        const name = PM_BITS.filter(([b]) => d.raw! & b).map(([, n]) => n).join('|');
        bits.set(name, (bits.get(name) ?? 0) + 1);
        const flags = info[i] ? kpfNames(info[i]!.flags).filter((f) => KPF_SHOWN.includes(f)) : [];
        for (const f of flags) kpf.set(f, (kpf.get(f) ?? 0) + 1);
      });
    }
  } finally {
    pread.close();
    kp.close();
  }
  const kpfText = kpf.size ? ` (kpageflags: ${[...kpf.entries()].map(([f, n]) => `${n} ${f}`).join(', ')})` : '';
  const scan = new Map<string, number>();
  const pm = new Pagemap(pid, { method: 'scan' });
  try {
    const ret = SCAN_NAMES.reduce((m, [b]) => m | b, 0);
    for (const s of pm.scan(region.start, region.end, PAGE_IS.PRESENT | PAGE_IS.SWAPPED, ret)) {
      const name = SCAN_NAMES.filter(([b]) => s.categories & b).map(([, n]) => n).join('|');
      scan.set(name, (scan.get(name) ?? 0) + Number((s.end - s.start) / 4096n));
    }
  } catch (e) {
    if (!(e instanceof PagesnapError)) throw e;
  } finally {
    pm.close();
  }
  return { pagemap: summarize(bits, pages) + kpfText, scan: summarize(scan, pages).replace(/ nothing$/, ' not reported') };
}

/**
 * Pages of `reg` that hold data the fixture (or the kernel) wrote, and how many of them the snapshot returns byte for
 * byte. What the kernel wrote is what the process holds now.
 */
function keptPages(r: SnapshotReader, pid: number, reg: FixtureRegion): { kept: number; of: number } {
  const proc = r.process(pid);
  let kept = 0;
  let of = 0;
  for (let i = 0; i < reg.pages; i++) {
    const want = expectedPage(reg, i);
    if (want.kind !== 'bytes' && want.kind !== 'kernel') continue;
    const at = reg.start + BigInt(i) * 4096n;
    const bytes = want.kind === 'bytes' ? want.bytes : Buffer.alloc(4096);
    if (want.kind === 'kernel' && processVmReadv(pid, [bytes], [{ addr: at, len: 4096 }]) !== 4096) continue;
    of++;
    try {
      if (r.read(proc, at, 4096).equals(bytes)) kept++;
    } catch {
      /* not held: not kept */
    }
  }
  return { kept, of };
}

async function runEntry(e: Entry, unavailable: Record<string, string | null>, dir: string): Promise<LabResult> {
  const base: LabResult = { name: e.name, cases: e.cases };
  if (e.needs && unavailable[e.needs]) return { ...base, skip: unavailable[e.needs]! };
  const fx = await Fixture.start([e.scenario]);
  try {
    const sc = fx.scenario(e.scenario);
    if (sc.skip) return { ...base, skip: sc.skip };
    const proc = e.child ? sc.children[0]! : { pid: fx.pid, regions: sc.regions };
    const regs = e.regions.map((n) => proc.regions.find((r) => r.name === n)!);
    const live = readRegions(proc.pid);
    const views = regs.map((fr) => pagemapViews(proc.pid, live.find((r) => r.start === fr.start)!));
    const au = audit([proc.pid]).processes[0]!.regions.filter((r) => regs.some((fr) => fr.start === r.start));
    const file = join(dir, `${e.scenario}-${proc.pid}.psnap`);
    // A fork child is dumped with its parent, as a tree would be: shmem they share is stored once.
    await dump(e.child ? [fx.pid, proc.pid] : [proc.pid], { output: file });
    const reader = SnapshotReader.open(file);
    let kept = 0;
    let of = 0;
    try {
      for (const fr of regs) {
        const k = keptPages(reader, proc.pid, fr);
        kept += k.kept;
        of += k.of;
      }
    } finally {
      reader.close();
      rmSync(file, { force: true });
    }
    const cases = new Map<string, number>();
    for (const r of au) for (const run of r.runs) if (run.status === 'kept' || run.status === 'lost') cases.set(`${run.case}`, (cases.get(run.case) ?? 0) + run.pages);
    return {
      ...base, pages: regs.reduce((s, r) => s + r.pages, 0),
      pagemap: views.map((v) => v.pagemap).join(' / '), scan: views.map((v) => v.scan).join(' / '),
      data: cases.size ? [...cases.entries()].map(([c, n]) => `${n} pages ${c}`).join(', ') : 'no data',
      naiveLoses: au.reduce((s, r) => s + r.lost.pages, 0), kept, of,
    };
  } finally {
    await fx.stop();
  }
}

/**
 * Migration entries (case A10) exist only while compaction moves a page: compact memory in a loop while reading
 * the pagemap of a 512 MiB process over and over, count the migration entries seen, and dump meanwhile.
 */
async function migration(seconds: number, dir: string): Promise<LabResult> {
  const base: LabResult = { name: 'migration entries under compaction', cases: ['A10'] };
  const fx = await Fixture.start(['big'], { sizeMiB: 512 });
  // compacts while lab lives: the loop checks its parent each round, so it ends even when lab is killed
  const loop = spawn('sh', ['-c', 'while kill -0 $PPID 2>/dev/null; do echo 1 > /proc/sys/vm/compact_memory || exit 1; done'], { stdio: 'ignore' });
  try {
    const region = readRegions(fx.pid).find((r) => r.start === fx.region('big').start)!;
    const pm = new Pagemap(fx.pid, { method: 'pread' });
    let caught = 0;
    let reads = 0;
    const until = performance.now() + seconds * 1000;
    try {
      while (performance.now() < until) {
        for (const r of pm.runs(region)) if (r.state === 'migration') caught += r.pages;
        reads++;
        await new Promise((res) => setImmediate(res));
      }
    } finally {
      pm.close();
    }
    const file = join(dir, 'migration.psnap');
    await dump([fx.pid], { output: file });
    const reader = SnapshotReader.open(file);
    const proc = reader.process();
    let kept = 0;
    const pages = fx.region('big').pages;
    try {
      for (let i = 0; i < pages; i++) {
        const b = reader.read(proc, region.start + BigInt(i) * 4096n, 4096);
        if (b[0] === (i % 251) + 1 && b[4095] === (i % 251) + 1) kept++;
      }
    } finally {
      reader.close();
      rmSync(file, { force: true });
    }
    return {
      ...base, pages, pagemap: caught ? `${caught} migration entries caught in ${reads} reads over ${seconds} s` : `not caught in ${reads} reads over ${seconds} s`,
      scan: 'SWAPPED (+FILE) while migrating', data: 'RAM, moving', naiveLoses: 0, kept, of: pages,
      note: caught ? 'a pagemap-only dumper takes them for swap' : 'compaction moved nothing pagemap could see here',
    };
  } finally {
    loop.kill('SIGKILL');
    await fx.stop();
  }
}

export interface LabOptions {
  /** run only the entries whose name contains one of these */
  only?: string[];
  /** seconds to watch for migration entries (0: skip) */
  migrationSeconds?: number;
  onResult?: (r: LabResult) => void;
}

export async function lab(opts: LabOptions = {}): Promise<LabReport> {
  if (process.getuid?.() !== 0) {
    throw new PagesnapError('the lab needs root: it re-creates swap, KSM, hugetlb and compaction states', { code: 'EPERM', hint: 'run it with sudo' });
  }
  const host = new HostSettings();
  // its snapshots (of its own fixtures) go with it however lab ends
  const scratch = ownedTempDir('pagesnap-lab-');
  const dir = scratch.path;
  const results: LabResult[] = [];
  const pick = (name: string) => !opts.only?.length || opts.only.some((o) => name.toLowerCase().includes(o.toLowerCase()));
  try {
    const attempt = (f: () => string | null) => {
      try {
        return f();
      } catch (e) {
        return (e as Error).message;
      }
    };
    const unavailable = {
      swap: attempt(() => host.ensureSwap()), ksm: attempt(() => host.enableKsm()),
      thp: attempt(() => host.enableThp()), hugetlb: attempt(() => host.reserveHugepages(4)),
    };
    for (const e of LAB) {
      if (!pick(e.name)) continue;
      const r = await runEntry(e, unavailable, dir);
      results.push(r);
      opts.onResult?.(r);
    }
    const secs = opts.migrationSeconds ?? 5;
    if (secs > 0 && pick('migration entries under compaction')) {
      const r = await migration(secs, dir);
      results.push(r);
      opts.onResult?.(r);
    }
  } finally {
    scratch.remove();
    host.restore();
  }
  return { kernel: release(), results };
}
