// Acceptance: `pagesnap inspect --json` on every fixture scenario reports exactly the layout the fixture built,
// by PAGEMAP_SCAN and by the pread fallback alike.
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { kernelConfig, readRegions, Pagemap } from '../src/proc/index.js';
import { Fixture, type FixtureRegion } from '../fixtures/driver.js';
import { cliJson } from './helpers/cli.js';
import { inspect } from '../src/analyze/inspect.js';
import { expectedCounts } from './helpers/expect.js';
import { prepareHost, type Prepared } from './helpers/host.js';
import { useScenario, unavailable } from './helpers/scenario.js';
import { skipBecause } from './helpers/skip.js';

const SCENARIOS = [
  'anon', 'thp', 'shmem', 'shmem-zapped', 'shmem-pwrite', 'shmem-fork', 'shared-anon-fork', 'sysv-fork', 'swap', 'guard', 'uffd-wp', 'uffd-shmem', 'poison',
  'file-private', 'file-deleted', 'file-shared', 'secret', 'droppable', 'sealed', 'dontdump', 'apart', 'ksm', 'hugetlb', 'sparse', 'fuse-self', 'aio', 'uring',
] as const;


let prepared: Prepared;
beforeAll(() => { prepared = prepareHost(); });
afterAll(() => prepared.host.restore());

type Report = { regions: { start: string; end: string; counts: Record<string, number> | null }[]; method: string; framesVisible: boolean };

function regionCounts(rep: Report, r: FixtureRegion) {
  const hex = (a: bigint) => `0x${a.toString(16)}`;
  const found = rep.regions.find((x) => x.start === hex(r.start) && x.end === hex(r.end));
  if (!found) throw new Error(`inspect shows no region ${hex(r.start)}-${hex(r.end)} (${r.name})`);
  return found.counts;
}

describe.each(SCENARIOS)('inspect on scenario %s', (name) => {
  const sc = useScenario(name, () => prepared);

  for (const method of ['scan', 'pread'] as const) {
    it(`counts every region exactly (${method})`, (ctx) => {
      sc.skipIf(ctx);
      const s = sc.fx.scenario(name);
      const procs = [{ pid: sc.fx.pid, regions: s.regions }, ...s.children];
      for (const p of procs) {
        const rep = cliJson<Report>(['inspect', String(p.pid), '--method', method]);
        expect(rep.method).toBe(method);
        for (const r of p.regions) expect({ region: r.name, counts: regionCounts(rep, r) }).toEqual({ region: r.name, counts: expectedCounts(r) });
      }
    });
  }

  it('both paths agree on every region of the process', (ctx) => {
    sc.skipIf(ctx);
    // In one process, back to back: the kernel's proactive reclaim (DAMON runs on these VMs) may swap an idle page
    // out at any moment, and two CLI runs leave it time to between them. Only what each method decodes from
    // pagemap is compared; rss and swap are smaps' own counters, read anew by each call.
    const pages = (method: 'scan' | 'pread') => inspect(sc.fx.pid, { method }).regions.map((r) => ({ start: r.start, end: r.end, counts: r.counts }));
    expect(pages('pread')).toEqual(pages('scan'));
  });

  it('scans taken ahead for many regions at once say what one scan per region says, in fewer calls', (ctx) => {
    sc.skipIf(ctx);
    const regions = readRegions(sc.fx.pid);
    const each = new Pagemap(sc.fx.pid, { method: 'scan' });
    const ahead = new Pagemap(sc.fx.pid, { method: 'scan' });
    try {
      const one = regions.map((r) => (r.kind === 'vsyscall' ? [] : each.runs(r)));
      ahead.prefetch(regions);
      const calls = ahead.stats.scanCalls;
      expect(regions.map((r) => (r.kind === 'vsyscall' ? [] : ahead.runs(r)))).toEqual(one);
      expect(calls).toBeLessThan(each.stats.scanCalls);
      // a scan taken ahead is used once: asking again scans again (a retry must see the pages as they are now)
      const pair = regions.slice(0, 2);
      ahead.prefetch(pair);
      const taken = ahead.stats.scanCalls;
      ahead.runs(pair[0]!);
      expect(ahead.stats.scanCalls).toBe(taken);
      ahead.runs(pair[0]!);
      expect(ahead.stats.scanCalls).toBe(taken + 1);
    } finally {
      each.close();
      ahead.close();
    }
  });
});

/** Run `body` on a fixture of `name`; skip, with the reason printed, when the machine or the scenario cannot. */
async function withScenario(ctx: TestContext, name: (typeof SCENARIOS)[number], body: (fx: Fixture) => void): Promise<void> {
  const why = unavailable(name, prepared);
  if (why) {
    skipBecause(ctx, name, why);
  }
  const fx = await Fixture.start([name]);
  try {
    const skip = fx.scenario(name).skip;
    if (skip) {
      skipBecause(ctx, name, skip);
    }
    body(fx);
  } finally {
    await fx.stop();
  }
}

describe('inspect --pages decodes each page', () => {
  type Page = { addr: string; state: string; huge: boolean; pfn: string | null; swapType: number | null; swapOffset: string | null; kpageflags: string[] | null; kpagecount: number | null; raw: string | null };
  const pagesOf = (pid: number, start: bigint, size: string) =>
    cliJson<{ pages: Page[] }>(['inspect', String(pid), '--pages', `${start.toString(16)}+${size}`]).pages;

  it('anon mixed: data, zero, hole in the pattern the fixture wrote', (ctx) =>
    withScenario(ctx, 'anon', (fx) => {
      const m = fx.region('mixed');
      const pages = pagesOf(fx.pid, m.start, `${m.pages * 4}K`);
      expect(pages.map((p) => p.state)).toEqual(Array.from({ length: m.pages }, (_, i) => ['data', 'zero', 'none', 'none'][i % 4]));
      expect(pages[1]!.kpageflags).toEqual(expect.arrayContaining(['ZERO_PAGE']));
      expect(pages[0]!.kpageflags).toEqual(expect.arrayContaining(['ANON', 'MMAP']));
      expect(pages[0]!.kpagecount).toBe(1);
    }));

  it('KSM: merged pages share one PFN with the KSM flag and a map count of 16', (ctx) =>
    withScenario(ctx, 'ksm', (fx) => {
      const pages = pagesOf(fx.pid, fx.region('ksm').start, '64K');
      expect(new Set(pages.map((p) => p.pfn)).size).toBe(1);
      for (const p of pages) {
        expect(p.kpageflags).toEqual(expect.arrayContaining(['KSM']));
        expect(p.kpagecount).toBe(16);
      }
    }));

  it('THP: PMD-mapped with consecutive PFNs and the THP flag; the huge zero page claims PM_FILE', (ctx) =>
    withScenario(ctx, 'thp', (fx) => {
      const pages = pagesOf(fx.pid, fx.region('thp').start, '2M');
      const pfn0 = BigInt(pages[0]!.pfn!);
      expect(pfn0 % 512n).toBe(0n);
      pages.forEach((p, i) => {
        expect(p.huge).toBe(true);
        expect(BigInt(p.pfn!)).toBe(pfn0 + BigInt(i));
        expect(p.kpageflags).toEqual(expect.arrayContaining(['THP']));
      });
      for (const p of pagesOf(fx.pid, fx.region('huge-zero').start, '8K')) {
        expect(p.state).toBe('zero');
        expect((BigInt(p.raw!) >> 61n) & 1n).toBe(1n);
      }
    }));

  it('swap: a real swap type (below the special types) with a slot offset', (ctx) =>
    withScenario(ctx, 'swap', (fx) => {
      for (const p of pagesOf(fx.pid, fx.region('anon-swapped').start, '64K')) {
        expect(p.state).toBe('swap');
        expect(p.swapType).toBeLessThan(kernelConfig().swapTypes.maxSwapfiles);
        expect(BigInt(p.swapOffset!)).toBeGreaterThan(0n);
        expect(p.pfn).toBeNull();
      }
    }));

  it('markers: guard, uffd-wp and poison carry the documented raw values', async (ctx) => {
    const raw = (fx: Fixture, name: string, page: number) => pagesOf(fx.pid, fx.region(name).start + BigInt(page) * 4096n, '4K')[0]!;
    await withScenario(ctx, 'guard', (fx) => expect(raw(fx, 'anon-guard', 4)).toMatchObject({ state: 'guard', raw: '0x440000000000009f' }));
    await withScenario(ctx, 'uffd-wp', (fx) => expect(raw(fx, 'wp-hole', 0)).toMatchObject({ state: 'uffd-wp-marker', raw: '0x420000000000003f' }));
    await withScenario(ctx, 'poison', (fx) => expect(raw(fx, 'poisoned', 8)).toMatchObject({ state: 'poison-marker', raw: '0x400000000000005f' }));
  });
});
