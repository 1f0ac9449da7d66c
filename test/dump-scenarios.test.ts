// Acceptance for `dump`: every fixture scenario is dumped through the CLI, and then every page reads back as the
// fixture wrote it (or is refused, where no snapshot can hold it); the dump populates nothing in the target.
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { statSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { expectedPage } from '../fixtures/pattern.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { dump } from '../src/dump/dump.js';
import { inspect } from '../src/analyze/inspect.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { once } from 'node:events';
import { processVmReadv, sleepSync } from '../src/native/index.js';
import { prepareHost, type Prepared } from './helpers/host.js';
import { useScenario, recordsOf, skipUnlessX64 } from './helpers/scenario.js';
import { countsByStart, expectUnpopulated, expectContent } from './helpers/content.js';
import { settledTaskStates, taskStates } from './helpers/tasks.js';
import { scratchDir } from './helpers/scratch.js';
import { descendants } from '../src/dump/targets.js';
import { describeSnapshot } from '../src/analyze/show.js';
import { isAlive, statusNumber } from '../src/proc/index.js';
import type { Verdict } from '../src/model/verdict.js';
import { skipBecause } from './helpers/skip.js';

const SCENARIOS = [
  'anon', 'thp', 'shmem', 'shmem-zapped', 'shmem-pwrite', 'shmem-fork', 'shared-anon-fork', 'sysv-fork', 'swap', 'guard', 'uffd-wp', 'uffd-shmem', 'poison',
  'file-private', 'file-deleted', 'file-shared', 'secret', 'droppable', 'sealed', 'dontdump', 'apart', 'ksm', 'hugetlb', 'hugetlb-shared', 'sparse', 'vast', 'seed', 'fuse-self',
] as const;

const dir = scratchDir('dump');
let prepared: Prepared;
beforeAll(() => { prepared = prepareHost({ hugepages: 8 }); });
afterAll(() => {
  prepared.host.restore();
});

describe.each(SCENARIOS)('dump of scenario %s', (name) => {
  const sc = useScenario(name, () => prepared);

  it('keeps every byte of data, stores nothing for zero and hole regions, and populates nothing', (ctx) => {
    sc.skipIf(ctx);
    const s = sc.fx.scenario(name);
    const procs = [{ pid: sc.fx.pid, regions: s.regions }, ...s.children];
    for (const p of procs) {
      const before = countsByStart(inspect(p.pid));
      const file = join(dir, `${name}-${p.pid}.psnap`);
      const summary = cliJson(['dump', String(p.pid), '-o', file]);
      expect(summary).toMatchObject({ processes: [p.pid], freeze: 'ptrace', pagesUnreadable: expect.any(Number) });
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const after = countsByStart(inspect(p.pid));
      for (const [start, c] of before) expectUnpopulated(c, after.get(start) ?? null, `0x${start.toString(16)}`);
      const r = SnapshotReader.open(file);
      try {
        expect(r.verify()).toBeNull();
        for (const reg of p.regions) {
          expectContent(r, p.pid, reg, false);
          const snapReg = r.process(p.pid).regions.find((x) => x.start === reg.start)!;
          if (Object.keys(reg.content).length === 0) expect({ region: reg.name, stored: snapReg.refs.length }).toEqual({ region: reg.name, stored: 0 });
        }
      } finally {
        r.close();
      }
    }
  });

  it('with --precopy records what a plain dump records: every run, the case that decided it, every byte', async (ctx) => {
    sc.skipIf(ctx);
    skipUnlessX64(ctx, `precopy of ${name}`);
    const s = sc.fx.scenario(name);
    const procs = [{ pid: sc.fx.pid, regions: s.regions }, ...s.children];
    const pids = procs.map((p) => p.pid);
    const records = (file: string) => recordsOf(file, procs.map((p) => ({ pid: p.pid, still: p.regions })));
    const plain = join(dir, `${name}-plain.psnap`);
    const pre = join(dir, `${name}-precopy.psnap`);
    // (reading a swapped page swaps it in: the two are compared on the memory as the first dump leaves it)
    if (procs.some((p) => p.regions.some((r) => r.expect.swap))) await dump(pids, { output: plain });
    await dump(pids, { output: plain, force: true });
    const summary = await dump(pids, { output: pre, precopy: true });
    expect(summary.precopySkipped).toEqual([]);
    expect(records(pre)).toEqual(records(plain));
  });

  it('with --include-file-pages also keeps clean file pages', (ctx) => {
    sc.skipIf(ctx);
    const s = sc.fx.scenario(name);
    if (!s.regions.some((r) => r.content.file)) return;
    const file = join(dir, `${name}-files.psnap`);
    cliJson(['dump', String(sc.fx.pid), '-o', file, '--include-file-pages']);
    const r = SnapshotReader.open(file);
    for (const reg of s.regions) expectContent(r, sc.fx.pid, reg, true);
    r.close();
  });
});

describe('the snapshot of a process tree', () => {
  it('stores a shmem object once for the owner and its fork child', async (ctx) => {
    const fx = await Fixture.start(['shmem-fork']);
    try {
      const child = fx.scenario('shmem-fork').children[0]!;
      const file = join(dir, 'tree.psnap');
      const s = cliJson(['dump', String(fx.pid), '--tree', '-o', file]);
      expect(s.processes.sort()).toEqual([fx.pid, child.pid].sort());
      const r = SnapshotReader.open(file);
      const show = cliJson(['show', file]);
      const forked = show.objects.filter((o: { name: string }) => o.name.includes('pagesnap-forked'));
      expect(forked).toHaveLength(1);
      expect(forked[0].mappedBy.sort()).toEqual([fx.pid, child.pid].sort());
      for (const reg of child.regions) expectContent(r, child.pid, reg, false);
      r.close();
    } finally {
      await fx.stop();
    }
    void ctx;
  });
});

describe('a tree of many processes', () => {
  it('is dumped whole, every thread let go after, and summed up on one line', async () => {
    // twenty children, one of them with threads of its own
    const script = `for i in $(seq 19); do sleep 60 & done; "${process.execPath}" -e 'for (let i = 0; i < 3; i++) new (require("worker_threads").Worker)("setInterval(() => {}, 1000)", { eval: true }); setInterval(() => {}, 1000); console.log("ready")' & wait`;
    const root = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await once(root.stdout!, 'data');
      const tree = descendants([root.pid!]);
      expect(tree).toHaveLength(21);
      const file = join(dir, 'many.psnap');
      const r = cli(['dump', String(root.pid), '--tree', '-o', file]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split('\n')[1]).toMatch(new RegExp(`^  21 processes \\(${root.pid}, (\\d+, ){7}…\\) · \\d+ regions · \\d+ objects$`));
      expect(cliJson(['show', file]).processes.map((p: { pid: number }) => p.pid).sort()).toEqual([...tree].sort());
      for (const pid of tree) expect((await settledTaskStates(pid)).every((s) => s === 'S'), `process ${pid}`).toBe(true);
    } finally {
      for (const pid of descendants([root.pid!])) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });
});

describe('a tree whose processes come and go (a shell running one short command after another)', () => {
  // Listed once and then frozen, such a tree nearly always had a child that was gone by the freeze: the dump failed.
  it.for([['ptrace'], ['sigstop'], ['ptrace', '--precopy']])('is dumped with the processes it has when frozen (%s)', async (how, ctx) => {
    if (how.includes('--precopy')) skipUnlessX64(ctx, 'precopy');
    const root = spawn('sh', ['-c', 'while :; do sleep 0.005; done'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 5; i++) {
        const file = join(dir, `churn-${how.join('')}-${i}.psnap`);
        const r = cli(['dump', String(root.pid), '--tree', '--freeze', how[0]!, ...how.slice(1), '--json', '-o', file]);
        expect(r.code, r.stderr).toBe(0);
        const s = JSON.parse(r.stdout) as { processes: number[] };
        expect(s.processes[0]).toBe(root.pid);
        // any other is a child it had then (a `sleep`), read whole
        const r2 = SnapshotReader.open(file);
        try {
          expect(r2.verify()).toBeNull();
          for (const p of r2.manifest.processes.slice(1)) expect({ ppid: p.ppid, comm: p.comm }).toEqual({ ppid: root.pid, comm: 'sleep' });
        } finally {
          r2.close();
        }
        // nothing is left stopped: the shell runs on, starting children
        expect(taskStates(root.pid!).filter((st) => st === 'T' || st === 't')).toEqual([]);
        const seen = new Set(descendants([root.pid!]));
        let fresh = false;
        for (let t = 0; t < 100 && !(fresh = descendants([root.pid!]).some((p) => !seen.has(p))); t++) await new Promise((res) => setTimeout(res, 10));
        expect(fresh, 'a new child within 1 s').toBe(true);
      }
    } finally {
      root.kill('SIGKILL');
    }
  });
});

describe('a member of a tree that exits while the dump reads it', () => {
  // A fuzzy dump of a busy tree (a build, a shell's pipeline) meets this often, a frozen one when a member is killed:
  // it failed the whole dump.
  it.for(['none', 'ptrace'] as const)('is left out, saying so, and the rest is dumped whole (--freeze %s)', async (freeze) => {
    const fx = await Fixture.start(['bench-mix', 'shmem-fork'], { sizeMiB: 16 });
    try {
      // the fork child shares the root's 16 MiB (copy-on-write), so it is read last and long
      const child = fx.scenario('shmem-fork').children[0]!.pid;
      const file = join(dir, `member-exits-${freeze}.psnap`);
      let killedAt = 0;
      // (small windows: progress is told often, so the kill lands part way through the child)
      const s = await dump([fx.pid], {
        output: file, tree: true, freeze, windowPages: 256,
        onProgress: (read, expected) => {
          if (killedAt > 0 || read < expected * 0.75) return;
          killedAt = read;
          process.kill(child, 'SIGKILL');
          for (let i = 0; i < 1000 && isAlive(child); i++) sleepSync(1);
        },
      });
      expect(killedAt).toBeGreaterThan(0);
      expect(isAlive(child)).toBe(false);
      // its end is its parent's to wait for, not held by pagesnap as its tracer
      expect(existsSync(`/proc/${child}`) ? statusNumber(child, 'TracerPid') : 0).toBe(0);
      expect({ processes: s.processes, exited: s.processesExited }).toEqual({ processes: [fx.pid], exited: [{ pid: child, comm: 'scenario' }] });
      const r = SnapshotReader.open(file);
      try {
        expect(r.verify()).toBeNull();
        expect(r.manifest.freeze.exited).toEqual([{ pid: child, comm: 'scenario' }]);
        expect(r.manifest.processes.map((p) => p.pid)).toEqual([fx.pid]);
        expectContent(r, fx.pid, fx.region('shmem-owner'), false);
        const mix = fx.region('bench-mix');
        const live = Buffer.alloc(Number(mix.end - mix.start));
        expect(processVmReadv(fx.pid, [live], [{ addr: mix.start, len: live.length }])).toBe(live.length);
        expect(r.read(r.process(fx.pid), mix.start, live.length).equals(live)).toBe(true);
        // the summary counts what the snapshot holds: the root's pages and the objects', none of the child's
        const shown = describeSnapshot(r);
        const sum = (k: Verdict) => shown.processes.reduce((n, p) => n + p.totals[k], 0) + shown.objects.reduce((n, o) => n + o.pages[k], 0);
        expect({ zero: s.pagesZero, hole: s.pagesHole, file: s.pagesFile }).toEqual({ zero: sum('zero'), hole: sum('hole'), file: sum('file') });
      } finally {
        r.close();
      }
      expect(cli(['show', file]).stdout).toContain(`left out, as they exited while the dump read them: ${child} (scenario)`);
      // the root runs on
      expect(await fx.send('ping')).toBe('pong');
    } finally {
      await fx.stop();
    }
  });
});

describe('a process whose main thread has exited while another runs on', () => {
  // /proc/PID shows a zombie with empty memory files; the memory shows through the live thread's /proc/PID/task/TID
  it.for(['ptrace', 'sigstop'])('is inspected, audited and dumped whole (--freeze %s), and left running', async (freeze) => {
    const p = spawn(join(import.meta.dirname, '..', 'fixtures', 'bin', 'leader-exit'), [], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [pid, addr] = (await new Promise<string>((resolve) => p.stdout!.once('data', (d) => resolve(String(d))))).trim().split(' ');
      for (let i = 0; i < 500 && taskStates(Number(pid))[0] !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10));
      expect(await settledTaskStates(Number(pid))).toEqual(['Z', 'S']);
      const start = BigInt(`0x${addr}`);
      const pages = cliJson(['inspect', pid!, '--pages', `${addr}+64K`]).pages as { state: string }[];
      expect(pages.map((x) => x.state)).toEqual(Array(16).fill('data'));
      expect(cliJson(['audit', pid!]).processes.map((x: { process: { pid: number } }) => x.process.pid)).toEqual([Number(pid)]);
      const file = join(dir, `leader-exit-${freeze}.psnap`);
      expect(cliJson(['dump', pid!, '--freeze', freeze, '-o', file]).processes).toEqual([Number(pid)]);
      const r = SnapshotReader.open(file);
      try {
        expect(r.verify()).toBeNull();
        const bytes = r.read(r.process(Number(pid)), start, 16 * 4096);
        for (let i = 0; i < 16; i++) expect(bytes.subarray(i * 4096, (i + 1) * 4096).every((b) => b === i + 1), `page ${i}`).toBe(true);
      } finally {
        r.close();
      }
      expect(await settledTaskStates(Number(pid))).toEqual(['Z', 'S']);
    } finally {
      p.kill('SIGKILL');
    }
  });
});

describe('a process of 60000 regions', () => {
  /** Dump `bench-regions` with `extra`: the summary, after checking the file region by region and page by page. */
  async function dumpedWhole(ctx: TestContext, extra: string[]) {
    const fx = await Fixture.start(['bench-regions']);
    try {
      const sc = fx.scenario('bench-regions');
      if (sc.skip) {
        skipBecause(ctx, '60000 regions', sc.skip);
      }
      const file = join(dir, 'regions.psnap');
      // (as users run it: under NODE_ENV=test, which vitest sets, oclif runs the TypeScript sources through tsx)
      const s = cliJson<{ regions: number; peakRssBytes: number; pagesPrecopied: number }>(['dump', String(fx.pid), '-o', file, '--force', ...extra], { env: { NODE_ENV: 'production' } });
      expect(s.regions).toBeGreaterThan(60000);
      // (pagesnap's bound, whatever the target: a precopy peaked above it until the tracked ranges stopped being BigInts)
      expect(s.peakRssBytes).toBeLessThan(256 * 2 ** 20);
      const reg = sc.regions[0]!;
      const r = SnapshotReader.open(file);
      try {
        expect(r.verify()).toBeNull();
        const regions = r.process(fx.pid).regions;
        for (let i = 1; i < regions.length; i++) expect(regions[i]!.start >= regions[i - 1]!.end).toBe(true);
        // the written pages, one VMA each: compared with the process's memory, 256 at a time
        const proc = r.process(fx.pid);
        for (let p = 0; p < reg.pages; p += 256) {
          const at = reg.start + BigInt(p) * 4096n;
          const live = Buffer.alloc(Math.min(256, reg.pages - p) * 4096);
          expect(processVmReadv(fx.pid, [live], [{ addr: at, len: live.length }])).toBe(live.length);
          if (!r.read(proc, at, live.length).equals(live)) throw new Error(`pages ${p}.. differ from the process`);
        }
      } finally {
        r.close();
      }
      return s;
    } finally {
      await fx.stop();
    }
  }

  it('is dumped whole, in order, with every page as the process holds it, in less than 256 MiB', async (ctx) => {
    await dumpedWhole(ctx, []);
  }, 120_000);

  it('with --precopy, tracked and copied a batch of regions at a time: the same, every written page taken from the copy, in less than 256 MiB', async (ctx) => {
    skipUnlessX64(ctx, '60000 regions --precopy');
    const s = await dumpedWhole(ctx, ['--precopy']);
    expect(s.pagesPrecopied).toBeGreaterThanOrEqual(30000);
  }, 120_000);
});

describe('per-page tables in many blocks', () => {
  it('reads back every page when runs, refs and hashes span many small blocks and regions many windows', async () => {
    const fx = await Fixture.start(['anon', 'shmem', 'guard']);
    try {
      const file = join(dir, 'blocks.psnap');
      await dump([fx.pid], { output: file, tableEntries: 3, framePages: 2, windowPages: 5 });
      const r = SnapshotReader.open(file);
      try {
        expect(Array.isArray(r.manifest.hashes) && r.manifest.hashes.length).toBeGreaterThan(10);
        expect(r.verify()).toBeNull();
        for (const s of fx.scenarios) for (const reg of s.regions) expectContent(r, fx.pid, reg, false);
      } finally {
        r.close();
      }
    } finally {
      await fx.stop();
    }
  });
});

describe('a region past 2^32 pages', () => {
  it('has wide run blocks from where its offsets pass 32 bits, makes the file version 3, and reads back', async (ctx) => {
    const fx = await Fixture.start(['vast']);
    try {
      const skip = fx.scenario('vast').skip;
      if (skip) {
        skipBecause(ctx, 'vast', skip);
      }
      const file = join(dir, 'vast.psnap');
      await dump([fx.pid], { output: file, tableEntries: 3 });
      const r = SnapshotReader.open(file);
      try {
        expect([r.header.version, r.manifest.format]).toEqual([3, 3]);
        const reg = fx.region('vast');
        const runs = r.process().regions.find((x) => x.start === reg.start)!.runs;
        const wide = Array.isArray(runs) ? [] : runs.blocks.map((b) => b.wide === true);
        // narrow blocks first, then wide ones from the first run ending past page 2^32
        expect(wide).toEqual([...wide.filter((w) => !w), ...wide.filter((w) => w)]);
        expect(new Set(wide)).toEqual(new Set([false, true]));
        expect(r.verify()).toBeNull();
        expectContent(r, fx.pid, reg, false);
      } finally {
        r.close();
      }
    } finally {
      await fx.stop();
    }
  });
});

describe('cat', () => {
  it('prints the bytes, a hexdump, JSON, and refuses what is not held', async () => {
    const fx = await Fixture.start(['guard']);
    try {
      if (fx.scenario('guard').skip) return;
      const file = join(dir, 'cat.psnap');
      cliJson(['dump', String(fx.pid), '-o', file]);
      const reg = fx.region('anon-guard');
      const raw = cli(['cat', file, '--addr', reg.start.toString(16), '--len', '4K']);
      expect(raw.code).toBe(0);
      expect(Buffer.from(raw.stdout, 'latin1').length).toBeGreaterThan(0);
      const js = cliJson(['cat', file, '--addr', `0x${reg.start.toString(16)}`, '--len', '4096']);
      expect(Buffer.from(js.base64, 'base64').equals(expectedPage(reg, 0).kind === 'bytes' ? (expectedPage(reg, 0) as { bytes: Buffer }).bytes : Buffer.alloc(0))).toBe(true);
      const hex = cli(['cat', file, '--addr', reg.start.toString(16), '--len', '32', '--hex']);
      expect(hex.stdout.split('\n')[0]).toMatch(new RegExp(`^${reg.start.toString(16)}  [0-9a-f]{2} `));
      const guard = cli(['cat', file, '--addr', (reg.start + 4n * 4096n).toString(16), '--len', '1']);
      expect(guard.code).toBe(1);
      expect(guard.stderr.trim()).toMatch(/^pagesnap cat: page 0x[0-9a-f]+ is not in the snapshot: a guard page: it has no content \(access faults\) \[case A15\]: ENODATA$/);
      // a reader that has gone (`| head -c 1`): cat stops quietly, as cat(1) would
      const gone = spawn(process.execPath, [RUN_JS, 'cat', file, '--addr', reg.start.toString(16), '--len', '4K'], { stdio: ['ignore', 'pipe', 'pipe'] });
      gone.stdout!.destroy();
      let stderr = '';
      gone.stderr!.on('data', (d) => (stderr += d));
      const [code] = (await once(gone, 'exit')) as [number | null];
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    } finally {
      await fx.stop();
    }
  });
});
