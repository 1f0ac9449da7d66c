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
