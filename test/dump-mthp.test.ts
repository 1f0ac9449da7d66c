// Multi-size THP (scenario mthp): with 64 KiB folios on, for anonymous memory and shmem, one page written brings in a
// whole folio (the rest of it zero, yet present), and reclaim swaps a folio out whole. A dump must still keep every
// byte written and store none of those zero pages, populate nothing, and a restore give every page back. (The rest of
// the suite runs without multi-size THP: its layouts are counted in base pages; see test/helpers/global-setup.ts.)
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { HostSettings } from '../src/host/settings.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { inspect } from '../src/analyze/inspect.js';
import { cliJson } from './helpers/cli.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';
import { countsByStart, expectUnpopulated, expectContent } from './helpers/content.js';
import { withHeldRestore, hostDifferences } from './helpers/restored.js';

const SIZE = '/sys/kernel/mm/transparent_hugepage/hugepages-64kB';

const dir = scratchDir('mthp');
let host: HostSettings | undefined;
let why: string | null = null;
let fx: Fixture | undefined;

beforeAll(async () => {
  if (!existsSync(`${SIZE}/enabled`)) {
    why = `this kernel has no 64 KiB multi-size THP (${SIZE})`;
    return;
  }
  try {
    host = new HostSettings();
  } catch (e) {
    why = `machine settings cannot be changed here: ${(e as Error).message}`;
    return;
  }
  why = host.ensureSwap();
  if (why) return;
  host.set(`${SIZE}/enabled`, 'always');
  host.set(`${SIZE}/shmem_enabled`, 'always');
  fx = await Fixture.start(['mthp']);
  why = fx.scenario('mthp').skip ?? null;
}, 120_000);
afterAll(async () => {
  await fx?.stop();
  host?.restore();
});

function skipIf(ctx: TestContext): Fixture {
  if (why) skipBecause(ctx, 'multi-size THP', why);
  return fx!;
}

describe('under multi-size THP (64 KiB folios, anonymous and shmem)', () => {
  it('a dump keeps every byte written, stores none of the zero pages a folio brought in, and populates nothing', (ctx) => {
    const f = skipIf(ctx);
    const regions = f.scenario('mthp').regions;
    const before = countsByStart(inspect(f.pid));
    const file = join(dir, 'mthp.psnap');
    cliJson(['dump', String(f.pid), '-o', file]);
    const after = countsByStart(inspect(f.pid));
    for (const [start, c] of before) expectUnpopulated(c, after.get(start) ?? null, `0x${start.toString(16)}`);
    const r = SnapshotReader.open(file);
    try {
      expect(r.verify()).toBeNull();
      for (const reg of regions) expectContent(r, f.pid, reg, false);
      // what each region (or the object it maps) stores, and what it records as zero pages
      const kept = regions.map((reg) => {
        const x = r.process(f.pid).regions.find((y) => y.start === reg.start)!;
        const held = x.object ? r.object(x.object.id) : x;
        const pages = { stored: held.refs.length, zero: 0 };
        for (const u of r.runsOf(held.runs, x.object ? r.object(x.object.id).size / 4096 : r.pagesOf(x))) if (u.verdict === 'zero') pages.zero += u.pages;
        return { region: reg.name, ...pages };
      });
      expect(kept).toEqual([
        { region: 'mthp-sparse', stored: 4, zero: 60 },
        { region: 'mthp-shmem', stored: 4, zero: 60 },
        { region: 'mthp-swapped', stored: 64, zero: 0 },
        { region: 'mthp-shmem-swapped', stored: 64, zero: 0 },
      ]);
    } finally {
      r.close();
    }
  });

  it('a restore places every page, and the host holds what the process held', (ctx) => {
    const f = skipIf(ctx);
    const file = join(dir, 'mthp-restore.psnap');
    cliJson(['dump', String(f.pid), '-o', file]);
    withHeldRestore(file, ['--verify', '--no-profile'], (r) => {
      expect(r.verify.mismatches, JSON.stringify(r.verify.first)).toBe(0);
      expect(r.lost).toEqual([]);
      expect(hostDifferences(file, f.pid, r.hostPid, join(dir, 'mthp-host.psnap'))).toEqual([]);
    });
  });
});
