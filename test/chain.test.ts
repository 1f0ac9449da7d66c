// Acceptance for diff and incremental snapshots: a fixture changes known pages between dumps; diff reports exactly
// those pages; the incremental dump stores only them, reads and restores through its parent (eager and lazy), is
// refused when its parent is missing or not the one it was dumped against, and flattens into a file of its own.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { copyFileSync, renameSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Fixture, type FixtureRegion } from '../fixtures/driver.js';
import { patternPage } from '../fixtures/pattern.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { readStat } from '../src/proc/process.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { dumpFixture } from './helpers/scenario.js';
import { compareRestored, withHeldRestore, hostDifferences } from './helpers/restored.js';
import { damageFrame } from './helpers/damage.js';
import { scratchDir } from './helpers/scratch.js';

const dir = scratchDir('chain');
let fx: Fixture;
const file = (n: string) => join(dir, n);
const hex = (a: bigint) => `0x${a.toString(16)}`;
let written: FixtureRegion;
let thp: FixtureRegion;
let memfd: FixtureRegion;

/** What the test changes between the first and second dump, by region: pages changed, added, removed. */
const CHANGES = { written: { changed: 3, added: 0, removed: 0 }, thp: { changed: 0, added: 0, removed: 2 }, memfd: { changed: 1, added: 0, removed: 0 }, hole: { changed: 0, added: 2, removed: 0 } };

beforeAll(async () => {
  fx = await Fixture.start(['anon', 'thp', 'shmem']);
  written = fx.region('written');
  thp = fx.region('thp');
  memfd = fx.region('memfd');
  cliJson(['dump', String(fx.pid), '-o', file('a.psnap')]);
  expect(await fx.send(`write ${written.start.toString(16)} 3 77`)).toBe('ok');
  expect(await fx.send(`zero ${(thp.start + 10n * 4096n).toString(16)} 2`)).toBe('ok');
  expect(await fx.send(`write ${memfd.start.toString(16)} 1 78`)).toBe('ok');
  expect(await fx.send(`write ${fx.region('hole').start.toString(16)} 2 79`)).toBe('ok');
  // Stopped for both dumps, so the two see the same memory (a running process may touch its own pages, e.g. errno,
  // in between); pagesnap leaves an already-stopped process stopped.
  process.kill(fx.pid, 'SIGSTOP');
  while (readStat(fx.pid).state !== 'T') await new Promise((r) => setTimeout(r, 1));
  try {
    cliJson(['dump', String(fx.pid), '-o', file('b.psnap'), '--parent', file('a.psnap')]);
    cliJson(['dump', String(fx.pid), '-o', file('full-b.psnap')]);
  } finally {
    process.kill(fx.pid, 'SIGCONT');
  }
}, 60_000);
afterAll(async () => {
  await fx.stop();
});

describe('diff', () => {
  it('reports exactly the pages the fixture changed, in the regions it changed, with their state changes', () => {
    const d = cliJson(['diff', file('a.psnap'), file('b.psnap')]);
    for (const [name, want] of Object.entries(CHANGES)) {
      const r = fx.region(name);
      const got = d.regions.find((x: { b: { start: string } | null }) => x.b?.start === hex(r.start));
      expect({ region: name, ...got.pages, unchanged: undefined }).toEqual({ region: name, ...want, unchanged: undefined });
      expect(got.status).toEqual([]);
    }
    // every other region of the scenarios is untouched: not listed, but for --all
    const all = cliJson(['diff', file('a.psnap'), file('b.psnap'), '--all']);
    expect(all.totals).toEqual(d.totals);
    expect(all.regions.length).toBe(d.totals.regions);
    expect(d.regions.length).toBeLessThan(d.totals.regions);
    for (const s of fx.scenarios) {
      for (const r of s.regions) {
        if (r.name in CHANGES) continue;
        const find = (rs: { b: { start: string } | null }[]) => rs.find((x) => x.b?.start === hex(r.start)) as { pages: { changed: number; added: number; removed: number } } | undefined;
        const got = find(all.regions)!;
        expect({ region: r.name, changed: got.pages.changed, added: got.pages.added, removed: got.pages.removed }).toEqual({ region: r.name, changed: 0, added: 0, removed: 0 });
        if (!('transitions' in got && Object.keys(got.transitions as object).length)) expect(find(d.regions), r.name).toBeUndefined();
      }
    }
    const at = (r: FixtureRegion) => d.regions.find((x: { b: { start: string } | null }) => x.b?.start === hex(r.start));
    expect(at(thp).transitions).toEqual({ 'data A8 → zero A8': 2 });
    expect(at(fx.region('hole')).transitions).toEqual({ 'hole A1 → data A3': 2 });
    expect(d.notes).toEqual([]);
  });

  it('reads no page data, unless --hex asks for one page byte by byte', () => {
    const text = cli(['diff', file('a.psnap'), file('b.psnap'), '--hex', written.start.toString(16)]);
    expect(text.code).toBe(0);
    const want = patternPage(77, 0);
    expect(text.stdout).toMatch(new RegExp(`^\\+ ${written.start.toString(16)}  ${want.subarray(0, 8).toString('hex').replace(/(..)/g, '$1 ').trim()}`, 'm'));
    const json = cliJson(['diff', file('a.psnap'), file('b.psnap'), '--hex', written.start.toString(16)]);
    expect(Buffer.from(json.page.b.bytes, 'hex').equals(want)).toBe(true);
  });

  it('compares unrelated snapshots too (by reading one side), and says so', () => {
    const d = cliJson(['diff', file('a.psnap'), file('full-b.psnap')]);
    expect(d.notes.join(' ')).toMatch(/not of one chain/);
    const r = d.regions.find((x: { b: { start: string } | null }) => x.b?.start === hex(written.start));
    expect(r.pages.changed).toBe(3);
  });

  it('compares two runs of a program: regions lying elsewhere pair by what they are, in address order', async () => {
    // (the same scenarios again: the same content, at other addresses)
    await dumpFixture(file('other-run.psnap'), ['anon', 'thp', 'shmem']);
    const d = cliJson(['diff', file('a.psnap'), file('other-run.psnap')]);
    expect(d.notes.join(' ')).toMatch(/different processes: .*then by what they are in address order/);
    // a region of one run is the same region of the other: listed only if its pages differ, and never as moved
    const all = cliJson(['diff', file('a.psnap'), file('other-run.psnap'), '--all']);
    for (const name of ['written', 'thp', 'hole', 'mixed', 'prot-none', 'memfd']) {
      const r = fx.region(name);
      const got = all.regions.find((x: { a: { start: string } | null }) => x.a?.start === hex(r.start));
      expect({ name, paired: got?.b !== null, status: got?.status, changed: got?.pages.changed, added: got?.pages.added, removed: got?.pages.removed })
        .toEqual({ name, paired: true, status: [], changed: 0, added: 0, removed: 0 });
    }
    expect(all.regions.filter((x: { status: string[] }) => x.status.length > 0).length).toBeLessThan(all.regions.length / 4);
  });

  it('draws the address space with the changes marked', () => {
    const svg = file('diff.svg');
    expect(cli(['diff', file('a.psnap'), file('b.psnap'), '--svg', svg]).code).toBe(0);
    const text = readFileSync(svg, 'utf8');
    expect(text).toMatch(/^<svg xmlns/);
    // three changed pages of the written region are red cells (plus the legend swatch, plus other changes)
    expect((text.match(/fill="#d62728"/g) ?? []).length).toBeGreaterThanOrEqual(1 + 3 + 1);
  });
});

describe('incremental snapshots', () => {
  it('store only the pages that changed, and read every page through the parent', () => {
    const a = SnapshotReader.open(file('a.psnap'));
    const b = SnapshotReader.open(file('b.psnap'));
    try {
      expect(b.parent?.path).toBe(file('a.psnap'));
      // the parent is read for its pages and hashes: its region records are left unread (they held 30 MiB of a
      // 60000-region chain's readers), which reading the same file on its own does not
      expect(b.parent!.manifest.processes.map((p) => p.regions.length)).toEqual([0]);
      expect(a.manifest.processes[0]!.regions.length).toBeGreaterThan(10);
      const d = cliJson(['diff', file('a.psnap'), file('b.psnap')]);
      // (fewer when a new page's content is already in the parent somewhere: the fixture's patterns repeat)
      expect(b.storedPages).toBeGreaterThan(0);
      expect(b.storedPages).toBeLessThanOrEqual(d.totals.changed + d.totals.added);
      const full = SnapshotReader.open(file('full-b.psnap'));
      try {
        // every region reads the same through the chain as in a full dump taken after it
        expect(compareRestored(full, fx.pid, b, fx.pid)).toEqual([]);
      } finally {
        full.close();
      }
      expect(b.read(b.process(), written.start, 4096).equals(patternPage(77, 0))).toBe(true);
      expect(b.read(b.process(), written.start + 4n * 4096n, 4096).equals(a.read(a.process(), written.start + 4n * 4096n, 4096))).toBe(true);
    } finally {
      a.close();
      b.close();
    }
    const show = cli(['show', file('b.psnap')]);
    expect(show.stdout).toMatch(/incremental: \d+ pages are read from its parent:\n {4}← .*a\.psnap/);
    expect(cli(['verify', file('b.psnap')]).stdout).toMatch(/^OK .*b\.psnap \(with its parent: .*a\.psnap\)/);
  });

  it.for([false, true])('restore (lazy=%s) through the chain gives the process as it was at the second dump', (lazy) => {
    withHeldRestore(file('b.psnap'), ['--verify', '--no-profile', ...(lazy ? ['--lazy'] : [])], (r) => {
      expect(r.verify.mismatches).toBe(0);
      expect(hostDifferences(file('b.psnap'), fx.pid, r.hostPid, file(`back-${lazy}.psnap`))).toEqual([]);
    });
  });

  it('chains: a third dump against the second', async () => {
    expect(await fx.send(`write ${written.start.toString(16)} 1 80`)).toBe('ok');
    cliJson(['dump', String(fx.pid), '-o', file('c.psnap'), '--parent', file('b.psnap')]);
    const c = SnapshotReader.open(file('c.psnap'));
    try {
      expect(c.chain().map((x) => x.path)).toEqual([file('a.psnap'), file('b.psnap'), file('c.psnap')]);
      expect(c.read(c.process(), written.start, 4096).equals(patternPage(80, 0))).toBe(true);
      expect(c.read(c.process(), written.start + 4096n, 4096).equals(patternPage(77, 1))).toBe(true);
    } finally {
      c.close();
    }
    const d = cliJson(['diff', file('b.psnap'), file('c.psnap')]);
    expect(d.regions.find((x: { b: { start: string } | null }) => x.b?.start === hex(written.start)).pages.changed).toBe(1);
  });

  it('flatten writes a file that needs no parent and holds the same pages', () => {
    const out = cliJson(['flatten', file('b.psnap'), '-o', file('flat.psnap')]);
    expect(out.chain).toEqual([file('a.psnap'), file('b.psnap')]);
    const f = SnapshotReader.open(file('flat.psnap'));
    const b = SnapshotReader.open(file('b.psnap'));
    try {
      expect(f.parent).toBeNull();
      expect(f.header.version).toBe(1);
      expect(compareRestored(b, fx.pid, f, fx.pid)).toEqual([]);
      expect(f.verify()).toBeNull();
    } finally {
      f.close();
      b.close();
    }
    const r = cliJson(['restore', file('flat.psnap'), '--verify', '--no-profile']);
    expect(r.verify.mismatches).toBe(0);
  });

  it('flatten -o - sends the same self-contained snapshot to standard output', () => {
    const r = spawnSync('bash', ['-c', `'${process.execPath}' '${RUN_JS}' flatten '${file('b.psnap')}' -o - | cat > '${file('flat-piped.psnap')}'`], { encoding: 'utf8' });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: expect.stringMatching(/^sent [\d.]+ KiB to standard output: \d+ pages gathered from 2 files/) });
    const f = SnapshotReader.open(file('flat-piped.psnap'));
    const b = SnapshotReader.open(file('b.psnap'));
    try {
      expect(f.parent).toBeNull();
      expect(compareRestored(b, fx.pid, f, fx.pid)).toEqual([]);
      expect(f.verify()).toBeNull();
    } finally {
      f.close();
      b.close();
    }
  });

  it('a missing parent is one clear error naming it', () => {
    const moved = file('a-moved.psnap');
    renameSync(file('a.psnap'), moved);
    try {
      const r = cli(['show', file('b.psnap')]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^pagesnap show: .*b\.psnap is incremental, and its parent a\.psnap is missing: ENOENT — put a\.psnap back beside it/);
    } finally {
      renameSync(moved, file('a.psnap'));
    }
  });

  it('a parent replaced by another snapshot is refused', () => {
    const keep = file('a-orig.psnap');
    copyFileSync(file('a.psnap'), keep);
    try {
      cliJson(['dump', String(fx.pid), '-o', file('a.psnap'), '--force']);
      for (const cmd of [['show'], ['cat', '--addr', written.start.toString(16), '--len', '16'], ['restore'], ['verify']]) {
        const r = cli([cmd[0]!, file('b.psnap'), ...cmd.slice(1)]);
        expect(r.code, cmd[0]).toBe(4);
        expect(r.stderr).toMatch(/b\.psnap is incremental, and its parent .*a\.psnap is not the snapshot it was dumped against/);
      }
    } finally {
      renameSync(keep, file('a.psnap'));
    }
  });

  it('verify checks the whole chain and names the damaged file', () => {
    const keep = file('a-orig2.psnap');
    copyFileSync(file('a.psnap'), keep);
    try {
      damageFrame(keep, file('a.psnap'), 0);
      const r = cli(['verify', file('b.psnap')]);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/^pagesnap verify: .*a\.psnap: frame 0 /);
    } finally {
      renameSync(keep, file('a.psnap'));
    }
  });
});
