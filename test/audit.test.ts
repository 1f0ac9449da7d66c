// Acceptance for `audit`: on every scenario it reports exactly the data a pagemap-only dumper would lose, and what
// it would store for nothing, per region and case.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, cliJson } from './helpers/cli.js';
import { prepareHost, type Prepared } from './helpers/host.js';
import { useScenario } from './helpers/scenario.js';

type Expect = { lost?: [string, number]; zero?: number; file?: number; marker?: number };
/** Per fixture region: the lost pages and their case, and the needless zero / file / marker pages. Unlisted: none. */
const EXPECT: Record<string, Expect> = {
  zero: { zero: 16 }, mixed: { zero: 8 },
  'shmem-zapped': { lost: ['S2', 16] }, 'shmem-pwrite': { lost: ['S2', 16] }, 'shmem-child': { lost: ['S2', 16] },
  'shmem-swapped': { lost: ['S3', 16] }, 'seed-shmem': { lost: ['S3', 16] },
  'anon-guard': { marker: 4 }, 'shmem-guard': { marker: 4 }, 'wp-hole': { marker: 16 }, poisoned: { marker: 4 },
  'file-private': { file: 8 }, 'memfd-private': { file: 8 }, 'huge-zero': { zero: 512 },
};

const SCENARIOS = ['anon', 'thp', 'shmem', 'shmem-zapped', 'shmem-pwrite', 'shmem-fork', 'swap', 'guard', 'uffd-wp', 'poison', 'file-private', 'ksm', 'hugetlb', 'seed'] as const;

let prepared: Prepared;
beforeAll(() => { prepared = prepareHost(); });
afterAll(() => prepared.host.restore());

type RegionJson = { start: string; lost: { pages: number; cases: { case: string; pages: number }[] }; needless: { zero: number; file: number; marker: number }; smaps: { ok: boolean } };

describe.each(SCENARIOS)('audit of scenario %s', (name) => {
  const sc = useScenario(name, () => prepared);
  it('reports the expected losses and needless pages exactly, and smaps agrees', (ctx) => {
    sc.skipIf(ctx);
    const s = sc.fx.scenario(name);
    const procs = [{ pid: sc.fx.pid, regions: s.regions }, ...s.children];
    const rep = cliJson(['audit', ...procs.map((p) => String(p.pid)), '--all']);
    for (const p of procs) {
      const regions: RegionJson[] = rep.processes.find((x: { process: { pid: number } }) => x.process.pid === p.pid).regions;
      for (const fr of p.regions) {
        const r = regions.find((x) => x.start === `0x${fr.start.toString(16)}`)!;
        const want = EXPECT[fr.name] ?? {};
        expect({
          region: fr.name, lost: r.lost.pages, cases: r.lost.cases.map((c) => [c.case, c.pages]),
          zero: r.needless.zero, file: r.needless.file, marker: r.needless.marker, smaps: r.smaps.ok,
        }).toEqual({
          region: fr.name, lost: want.lost?.[1] ?? 0, cases: want.lost ? [want.lost] : [],
          zero: want.zero ?? 0, file: want.file ?? 0, marker: want.marker ?? 0, smaps: true,
        });
      }
    }
  });
});

describe('audit --fail-on-loss', () => {
  const sc = useScenario('shmem-zapped', () => prepared);
  it('exits 3 with one line when a pagemap-only dumper would lose data, 0 otherwise', (ctx) => {
    sc.skipIf(ctx);
    const r = cli(['audit', String(sc.fx.pid), '--fail-on-loss']);
    expect(r.code).toBe(3);
    expect(r.stderr.trim()).toMatch(/^pagesnap audit: a pagemap-only dumper would lose 16 pages of data — /);
    expect(r.stdout).toMatch(/would LOSE 16 pages \(64 KiB\) of data: S2 shmem in page cache, pte none: 16/);
    expect(cli(['audit', String(process.pid), '--fail-on-loss']).code).toBe(0);
  });
});

describe('audit --svg', () => {
  const sc = useScenario('shmem-zapped', () => prepared);
  it('draws one red cell per lost page and labels the region with its case', (ctx) => {
    sc.skipIf(ctx);
    const file = `${mkdtempSync(join(tmpdir(), 'pagesnap-svg-'))}/audit.svg`;
    const r = cli(['audit', String(sc.fx.pid), '--svg', file]);
    expect(r.code).toBe(0);
    const svg = readFileSync(file, 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    // legend swatch + one cell per lost page (a 16-page region is drawn one page per cell)
    expect(svg.match(/<rect [^>]*fill="#d62728"/g)!.length).toBe(1 + 16);
    expect(svg).toMatch(/memfd:pagesnap-zapped · LOST 16 \(S2\)/);
  });
});
