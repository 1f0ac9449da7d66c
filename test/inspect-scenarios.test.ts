// Acceptance: `pagesnap inspect --json` on every fixture scenario reports exactly the layout the fixture built,
// by PAGEMAP_SCAN and by the pread fallback alike.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, type FixtureRegion } from '../fixtures/driver.js';
import { cliJson } from './helpers/cli.js';
import { expectedCounts } from './helpers/expect.js';
import { prepareHost, type Prepared } from './helpers/host.js';

const SCENARIOS = [
  'anon', 'thp', 'shmem', 'shmem-zapped', 'shmem-pwrite', 'shmem-fork', 'swap', 'guard', 'uffd-wp', 'poison',
  'file-private', 'ksm', 'hugetlb', 'sparse',
] as const;

/** The machine feature a scenario needs, so a skip can say why. */
const NEEDS: Partial<Record<(typeof SCENARIOS)[number], keyof Prepared['unavailable']>> = { swap: 'swap', ksm: 'ksm', thp: 'thp', hugetlb: 'hugetlb' };

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
  let fx: Fixture | undefined;
  let skip: string | undefined;

  beforeAll(async () => {
    const need = NEEDS[name];
    skip = need ? (prepared.unavailable[need] ?? undefined) : undefined;
    if (skip) return;
    fx = await Fixture.start([name]);
    skip = fx.scenario(name).skip;
  }, 60_000);
  afterAll(async () => { await fx?.stop(); });

  for (const method of ['scan', 'pread'] as const) {
    it(`counts every region exactly (${method})`, (ctx) => {
      if (skip) {
        console.log(`SKIP ${name}: ${skip}`);
        ctx.skip(skip);
      }
      const s = fx!.scenario(name);
      const procs = [{ pid: fx!.pid, regions: s.regions }, ...s.children];
      for (const p of procs) {
        const rep = cliJson<Report>(['inspect', String(p.pid), '--method', method]);
        expect(rep.method).toBe(method);
        for (const r of p.regions) expect({ region: r.name, counts: regionCounts(rep, r) }).toEqual({ region: r.name, counts: expectedCounts(r) });
      }
    });
  }

  it('both paths agree on every region of the process', (ctx) => {
    if (skip) ctx.skip(skip);
    const scan = cliJson<Report>(['inspect', String(fx!.pid), '--method', 'scan']);
    const pread = cliJson<Report>(['inspect', String(fx!.pid), '--method', 'pread']);
    expect(pread.regions).toEqual(scan.regions);
  });
});

describe('inspect --pages decodes each page', () => {
  type Page = { addr: string; state: string; huge: boolean; pfn: string | null; swapType: number | null; swapOffset: string | null; kpageflags: string[] | null; kpagecount: number | null; raw: string | null };
  const pagesOf = (pid: number, start: bigint, size: string) =>
    cliJson<{ pages: Page[] }>(['inspect', String(pid), '--pages', `${start.toString(16)}+${size}`]).pages;

  it('anon mixed: data, zero, hole in the pattern the fixture wrote', async () => {
    const fx = await Fixture.start(['anon']);
    try {
      const m = fx.region('mixed');
      const pages = pagesOf(fx.pid, m.start, `${m.pages * 4}K`);
      expect(pages.map((p) => p.state)).toEqual(Array.from({ length: m.pages }, (_, i) => ['data', 'zero', 'none', 'none'][i % 4]));
      const zero = pages[1]!;
      expect(zero.kpageflags).toEqual(expect.arrayContaining(['ZERO_PAGE']));
      expect(pages[0]!.kpageflags).toEqual(expect.arrayContaining(['ANON', 'MMAP']));
      expect(pages[0]!.kpagecount).toBe(1);
    } finally {
      await fx.stop();
    }
  });

  it('KSM: merged pages share one PFN with the KSM flag and a map count of 16', async (ctx) => {
    if (prepared.unavailable.ksm) ctx.skip(prepared.unavailable.ksm);
    const fx = await Fixture.start(['ksm']);
    try {
      const s = fx.scenario('ksm');
      if (s.skip) {
        console.log(`SKIP ksm pages: ${s.skip}`);
        ctx.skip(s.skip);
      }
      const pages = pagesOf(fx.pid, fx.region('ksm').start, '64K');
      expect(new Set(pages.map((p) => p.pfn)).size).toBe(1);
      for (const p of pages) {
        expect(p.kpageflags).toEqual(expect.arrayContaining(['KSM']));
        expect(p.kpagecount).toBe(16);
      }
    } finally {
      await fx.stop();
    }
  });

  it('THP: PMD-mapped with consecutive PFNs and the THP flag', async (ctx) => {
    if (prepared.unavailable.thp) ctx.skip(prepared.unavailable.thp);
    const fx = await Fixture.start(['thp']);
    try {
      if (fx.scenario('thp').skip) ctx.skip(fx.scenario('thp').skip);
      const pages = pagesOf(fx.pid, fx.region('thp').start, '2M');
      const pfn0 = BigInt(pages[0]!.pfn!);
      expect(pfn0 % 512n).toBe(0n);
      pages.forEach((p, i) => {
        expect(p.huge).toBe(true);
        expect(BigInt(p.pfn!)).toBe(pfn0 + BigInt(i));
        expect(p.kpageflags).toEqual(expect.arrayContaining(['THP']));
      });
      // the huge zero page: raw entry claims PM_FILE (bit 61), decoded as zero
      const hz = pagesOf(fx.pid, fx.region('huge-zero').start, '8K');
      for (const p of hz) {
        expect(p.state).toBe('zero');
        expect((BigInt(p.raw!) >> 61n) & 1n).toBe(1n);
      }
    } finally {
      await fx.stop();
    }
  });

  it('swap: real swap type below the marker types, with a slot offset', async (ctx) => {
    if (prepared.unavailable.swap) ctx.skip(prepared.unavailable.swap);
    const fx = await Fixture.start(['swap']);
    try {
      if (fx.scenario('swap').skip) ctx.skip(fx.scenario('swap').skip);
      const pages = pagesOf(fx.pid, fx.region('anon-swapped').start, '64K');
      for (const p of pages) {
        expect(p.state).toBe('swap');
        expect(p.swapType).toBeLessThan(28);
        expect(BigInt(p.swapOffset!)).toBeGreaterThan(0n);
        expect(p.pfn).toBeNull();
      }
    } finally {
      await fx.stop();
    }
  });

  it('markers: guard, uffd-wp and poison carry the documented raw values', async () => {
    const fx = await Fixture.start(['guard', 'uffd-wp', 'poison']);
    try {
      const raw = (name: string, page: number) => pagesOf(fx.pid, fx.region(name).start + BigInt(page) * 4096n, '4K')[0]!;
      if (!fx.scenario('guard').skip) expect(raw('anon-guard', 4)).toMatchObject({ state: 'guard', raw: '0x440000000000009f' });
      if (!fx.scenario('uffd-wp').skip) expect(raw('wp-hole', 0)).toMatchObject({ state: 'uffd-wp-marker', raw: '0x420000000000003f' });
      if (!fx.scenario('poison').skip) expect(raw('poisoned', 8)).toMatchObject({ state: 'poison-marker', raw: '0x400000000000005f' });
      for (const s of fx.scenarios) if (s.skip) console.log(`SKIP ${s.name} markers: ${s.skip}`);
    } finally {
      await fx.stop();
    }
  });
});
