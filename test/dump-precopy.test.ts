// `dump --precopy`: memory read while the process runs, its writes tracked through a userfaultfd injected into it
// (WP_ASYNC: this kernel has no soft-dirty), then frozen only for what it wrote meanwhile. The snapshot must hold
// the memory as it was when frozen, and the process must be left exactly as it was: no userfaultfd, no write
// protection, its descriptors and registers as they were, on every exit path.
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, type FixtureRegion } from '../fixtures/driver.js';
import { dump } from '../src/dump/dump.js';
import { LiveCopy, dataWithin } from '../src/dump/precopy.js';
import { SharedCopy, onlyTrackedMap } from '../src/dump/shared-copy.js';
import { PageRanges } from '../src/dump/page-ranges.js';
import { ZERO_PAGE } from '../src/dump/pages.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { readStat, isAlive } from '../src/proc/process.js';
import { readRegions } from '../src/proc/index.js';
import { sleepSync } from '../src/native/index.js';
import { renderDumpSummary } from '../src/render/snapshot.js';
import { HostSettings } from '../src/host/settings.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { liveBytes, recordsOf, skipUnlessX64 } from './helpers/scenario.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

const dir = scratchDir('precopy');
const hex = (a: bigint) => a.toString(16);
const PM_UFFD_WP = 1n << 57n;

/** What tracking could have left behind in `pid`: VmFlags with uffd bits, pages still write-protected, userfaultfds. */
function leftovers(pid: number, regions: FixtureRegion[]) {
  const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  let wp = 0;
  try {
    const e = Buffer.alloc(8);
    for (const r of regions) for (let i = 0; i < r.pages; i++) {
      readSync(fd, e, 0, 8, Number((r.start / 4096n + BigInt(i)) * 8n));
      if (e.readBigUInt64LE(0) & PM_UFFD_WP) wp++;
    }
  } finally {
    closeSync(fd);
  }
  const uffds = readdirSync(`/proc/${pid}/fd`).filter((f) => {
    try {
      return readFileSync(`/proc/${pid}/fdinfo/${f}`, 'utf8').includes('pending:'); // (a userfaultfd's fdinfo)
    } catch {
      return false;
    }
  });
  return { uffdVmFlags: (smaps.match(/^VmFlags:.*\bu[wmi]\b/gm) ?? []).length, writeProtected: wp, userfaultfds: uffds.length };
}

const CLEAN = { uffdVmFlags: 0, writeProtected: 0, userfaultfds: 0 };

describe('LiveCopy', () => {
  it('takes from the copy exactly the pages copied and clean, keeping stored numbers and zero pages apart', () => {
    const base = 0x7f0000000000n;
    // pages 0-2 stored in a row, 3-4 read zero, 5 a repeat of an earlier page, 6 and 8 stored, 7 and 9 not copied;
    // page 4 written since
    const live = new LiveCopy();
    const rec = live.recorder(base);
    for (const [o, r] of [[0, 10], [1, 11], [2, 12], [3, ZERO_PAGE], [4, ZERO_PAGE], [5, 7], [6, 13], [8, 14]] as const) {
      if (r === ZERO_PAGE) rec.zero(o, 'A3');
      else rec.data(o, 'A3', r);
    }
    const page = (n: number) => base + BigInt(n) * 4096n;
    const { segments, reused } = live.reuse(base, [{ offset: 0, pages: 10, verdict: 'data', case: 'A3' }], PageRanges.from([{ start: page(0), end: page(4) }, { start: page(5), end: page(10) }]));
    // (a piece taken from the copy names the stored page of its first page; the others follow it)
    expect(segments.map((x) => [x.offset, x.pages, x.reuse ?? 'read'])).toEqual([
      [0, 3, 10], [3, 1, ZERO_PAGE], [4, 1, 'read'], [5, 1, 7], [6, 1, 13], [7, 1, 'read'], [8, 1, 14], [9, 1, 'read'],
    ]);
    expect(reused).toBe(7);
  });

  it('splits several segments against clean runs that straddle them, passing the others through', () => {
    const base = 0x7f0000000000n;
    const live = new LiveCopy();
    const rec = live.recorder(base);
    for (let o = 0; o < 10; o++) rec.data(o, 'A3', 100 + o);
    const page = (n: number) => base + BigInt(n) * 4096n;
    const segments = [
      { offset: 0, pages: 4, verdict: 'data' as const, case: 'A3' as const },
      { offset: 4, pages: 2, verdict: 'hole' as const, case: 'A1' as const },
      { offset: 6, pages: 4, verdict: 'data' as const, case: 'A3' as const },
    ];
    const clean = PageRanges.from([{ start: page(0), end: page(3) }, { start: page(5), end: page(8) }, { start: page(9), end: page(10) }]);
    const { segments: out, reused } = live.reuse(base, segments, clean);
    expect(out.map((x) => [x.offset, x.pages, x.verdict, x.reuse ?? 'read'])).toEqual([
      [0, 3, 'data', 100], [3, 1, 'data', 'read'], [4, 2, 'hole', 'read'], [6, 2, 'data', 106], [8, 1, 'data', 'read'], [9, 1, 'data', 109],
    ]);
    expect(reused).toBe(6);
  });
});

/** A process's page-table memory (VmPTE), in kB. */
const pageTables = (pid: number) => Number(/^VmPTE:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

describe('dataWithin', () => {
  it('keeps the pieces of data segments inside the runs given, and nothing else', () => {
    const base = 0x7f0000000000n;
    const page = (n: number) => base + BigInt(n) * 4096n;
    const segments = [
      { offset: 0, pages: 10, verdict: 'data' as const, case: 'A3' as const }, { offset: 10, pages: 2, verdict: 'hole' as const, case: 'A1' as const },
      { offset: 12, pages: 8, verdict: 'data' as const, case: 'A3' as const },
    ];
    const runs = PageRanges.from([{ start: page(-4), end: page(1) }, { start: page(2), end: page(4) }, { start: page(8), end: page(14) }, { start: page(30), end: page(40) }]);
    expect(dataWithin(base, segments, runs).map((x) => [x.offset, x.pages, x.verdict])).toEqual([[0, 1, 'data'], [2, 2, 'data'], [8, 2, 'data'], [12, 2, 'data']]);
  });
});

describe('PageRanges.insert', () => {
  it('keeps runs in address order whatever order they come in, each once (the shared mappings a precopy protects)', () => {
    const r = new PageRanges();
    for (const [a, b] of [[50, 60], [10, 20], [70, 80], [30, 40], [10, 20], [70, 80]] as const) r.insert(a, b);
    expect(Array.from({ length: r.length }, (_, i) => [r.start(i), r.end(i)])).toEqual([[10, 20], [30, 40], [50, 60], [70, 80]]);
    expect([25, 35, 45, 75, 85].map((p) => r.overlaps(p, p + 1))).toEqual([false, true, false, true, false]);
  });
});

describe('dump --precopy of a process that writes nothing', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await Fixture.start(['anon', 'sparse', 'apart']);
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  it('says what a plain dump says: every region as the process has it, every run decided by the same case; leaves them as they were', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const records = (file: string) => recordsOf(file, [{ pid: fx.pid, still: fx.scenarios.flatMap((x) => x.regions) }]);
    // (tiny table blocks: the copied runs' page numbers cross many of them)
    const plain = join(dir, 'still-plain.psnap');
    const pre = join(dir, 'still-precopy.psnap');
    await dump([fx.pid], { output: plain, tableEntries: 5 });
    const maps = readFileSync(`/proc/${fx.pid}/maps`, 'utf8');
    const s = await dump([fx.pid], { output: pre, precopy: true, tableEntries: 5 });
    expect(s.pagesPrecopied).toBeGreaterThanOrEqual(fx.region('written').pages);
    expect(records(pre)).toEqual(records(plain));
    // (registering splits nothing, and unregistering merges nothing: regions kept apart stay apart)
    expect(readFileSync(`/proc/${fx.pid}/maps`, 'utf8')).toBe(maps);
  });

  it('leaves sparse memory without page tables it did not have (write protection is only asked where pages are)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    // (a process of its own: page tables, once made, stay)
    const sx = await Fixture.start(['anon', 'sparse']);
    try {
      const sparse = sx.region('sparse');
      const before = pageTables(sx.pid);
      const file = join(dir, 'sparse.psnap');
      const s = await dump([sx.pid], { output: file, precopy: true });
      expect(s.pagesPrecopied).toBeGreaterThanOrEqual(16);
      // (64 GiB protected whole would have made 128 MiB of them)
      expect(pageTables(sx.pid)).toBe(before);
      expect(leftovers(sx.pid, ['written', 'mixed', 'hole'].map((x) => sx.region(x)))).toEqual(CLEAN);
      const snap = SnapshotReader.open(file);
      try {
        for (const [first, pages] of sparse.content.written!) {
          const start = sparse.start + BigInt(first) * 4096n;
          expect(snap.read(snap.process(), start, pages * 4096).equals(liveBytes(sx.pid, { ...sparse, start, pages }))).toBe(true);
        }
      } finally {
        snap.close();
      }
    } finally {
      await sx.stop();
    }
  });
});

/**
 * The fixture of `scenario`, started once the machine is `prepare`d for it (and put back after the tests): the
 * function returned gives it to a test, or skips the test saying why it cannot run here.
 */
function preparedFixture(what: string, scenario: string, prepare: (host: HostSettings) => string | null): (ctx: TestContext) => Fixture {
  let host: HostSettings;
  let fx: Fixture | undefined;
  let skip: string | undefined;
  beforeAll(async () => {
    host = new HostSettings();
    skip = prepare(host) ?? undefined;
    if (skip) return;
    fx = await Fixture.start([scenario]);
    skip = fx.scenario(scenario).skip;
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
    host.restore();
  });
  return (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    if (skip) {
      skipBecause(ctx, what, skip);
    }
    return fx!;
  };
}

describe('dump --precopy of huge pages', () => {
  const ready = preparedFixture('thp', 'thp', (host) => host.enableThp());

  /** A precopy of the THP region with one page written between the passes: the summary, and its huge pages before and after. */
  async function writingOnePage(ctx: TestContext, page: number, splitHuge: boolean) {
    const fx = ready(ctx);
    const thp = fx.region('thp');
    const huge = () => readRegions(fx.pid).find((r) => r.start === thp.start)!.fields.AnonHugePages!;
    const before = huge();
    const file = join(dir, `thp-${splitHuge}.psnap`);
    const s = await dump([fx.pid], {
      output: file, precopy: true, splitHuge,
      afterPrecopy: async () => {
        expect(await fx.send(`write ${hex(thp.start + BigInt(page) * 4096n)} 1 ${90 + page}`)).toBe('ok');
      },
    });
    const snap = SnapshotReader.open(file);
    try {
      expect(snap.read(snap.process(), thp.start, thp.pages * 4096).equals(liveBytes(fx.pid, thp))).toBe(true);
    } finally {
      snap.close();
    }
    return { s, thp, before, after: huge() };
  }

  it('leaves them whole, written to or not (a write to a protected one would split it): they are read frozen', async (ctx) => {
    const { s, thp, before, after } = await writingOnePage(ctx, 3, false);
    expect(before).toBe(thp.pages * 4096);
    expect(after).toBe(before);
    expect(s.pagesPrecopied).toBeLessThan(thp.pages);
    // (the huge zero page beside it holds nothing to copy: not counted)
    expect(s.pagesHugeFrozen).toBe(thp.pages);
    expect(renderDumpSummary(s)).toContain(`precopy: ${thp.pages} pages of huge pages read frozen (a write would split them; --split-huge tracks them)`);
  });

  it('--split-huge tracks them too: all but the page written come from the copy, and the huge page written is split', async (ctx) => {
    const { s, thp, before, after } = await writingOnePage(ctx, 5, true);
    expect(s.pagesPrecopied).toBeGreaterThanOrEqual(thp.pages - 1);
    expect(s.pagesHugeFrozen).toBe(0);
    expect(before - after).toBe(2 << 20);
  });
});

// Shared memory nothing writes but its mappings, copied while its processes run (see src/dump/shared-copy.ts): what
// tells a mapping made unseen differs, and so does what a test expects to be told.
// What the fork count at the freeze says of a process forking without pause: some of its children gone, or more
// children than pagesnap holds.
const CHURNED = (parent: number) => `process ${parent} \\(or a process forked from it\\) forked \\d+ times meanwhile( \\(\\d+ gone before it was copied again\\))?, and \\d+ of those processes are frozen with it`;
const OVERFLOWED = (parent: number, most: number) => `process ${parent} \\(or a process forked from it\\) forked \\d+ times meanwhile, more than pagesnap follows at once \\(${most}, a quarter of its limit on open files\\)`;
// A SysV segment whose children's mappings come and go says so first, as a mapping removed (or removed every second
// as it is watched), or counted and not among those frozen (a child let go); else its fork count says.
const SYSV_REMOVED = 'a mapping of its SysV segment was removed meanwhile: what was written through it is not seen';
const sysvChurned = (forkCount: string) => `(${SYSV_REMOVED}$|a mapping of it is removed every second$|it is mapped \\d+ times, \\d+ of them by processes tracked$|${forkCount})`;
const SHARED = [
  {
    what: 'shared anonymous memory', scenario: 'shared-anon-fork', owner: 'shared-owner',
    notDumped: (child: number) => `process ${child} maps it and is not tracked`,
    exited: (pid: number) => `process ${pid}, which maps it, has exited since it was protected`,
    forked: (parent: number) => `process ${parent} \\(or a process forked from it\\) forked 2 times meanwhile, and 1 of those processes are frozen with it`,
    // (the kernel cannot be asked to tell forks: its fork witness sees one)
    witnessed: (parent: number) => `process ${parent} forked`,
    // (those found gone before the freeze are copied again: see copyAgainSpoiled)
    churned: CHURNED,
    overflowed: OVERFLOWED,
  },
  {
    what: 'a SysV segment', scenario: 'sysv-fork', owner: 'sysv-owner',
    notDumped: () => 'it is mapped 2 times, 1 of them by processes tracked',
    // (the kernel stamps the segment as a mapping goes, a child's with it)
    exited: () => SYSV_REMOVED,
    forked: () => SYSV_REMOVED,
    witnessed: () => SYSV_REMOVED,
    churned: (parent: number) => sysvChurned(CHURNED(parent)),
    overflowed: (parent: number, most: number) => sysvChurned(OVERFLOWED(parent, most)),
  },
];

/** The region `r` of `pid` as the snapshot holds it, against the process's memory now. */
function sameObject(file: string, pid: number, r: FixtureRegion): void {
  const snap = SnapshotReader.open(file);
  try {
    expect(snap.read(snap.process(pid), r.start, r.pages * 4096).equals(liveBytes(pid, r))).toBe(true);
    expect(snap.verify()).toBeNull();
  } finally {
    snap.close();
  }
}

describe.each(SHARED)('dump --precopy of $what', (kind) => {
  // A parent and the child it forked share 16 pages: 8 written, 8 a hole.
  let fx: Fixture;
  let owner: FixtureRegion;
  let child: { pid: number; regions: FixtureRegion[] };
  beforeAll(async () => {
    fx = await Fixture.start([kind.scenario]);
    owner = fx.region(kind.owner);
    child = fx.scenario(kind.scenario).children[0]!;
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  const page = (n: number) => owner.start + BigInt(n) * 4096n;
  /** Write a page through `pid`'s mapping (its page tables: as if it wrote it itself). */
  const writesThrough = (pid: number, n: number, byte: number) => {
    const fd = openSync(`/proc/${pid}/mem`, 'r+');
    try {
      writeSync(fd, Buffer.alloc(4096, byte), 0, 4096, Number(page(n)));
    } finally {
      closeSync(fd);
    }
  };
  const childWrites = (n: number, byte: number) => writesThrough(child.pid, n, byte);
  const sameAsLive = (file: string) => sameObject(file, fx.pid, owner);

  it('is copied while both run: frozen, only what either wrote since is read, even a page written then zapped', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-tree.psnap`);
    const s = await dump([fx.pid], {
      output: file, tree: true, precopy: true,
      afterPrecopy: async () => {
        expect(await fx.send(`write ${hex(page(2))} 2 95`)).toBe('ok');
        // written, then its pte zapped: the page keeps what was written, and no pte says so
        expect(await fx.send(`write ${hex(page(4))} 1 96`)).toBe('ok');
        expect(await fx.send(`discard ${hex(page(4))} 1`)).toBe('ok');
        childWrites(6, 0x61);
        childWrites(12, 0x62);
      },
    });
    sameAsLive(file);
    expect(s.precopySkipped).toEqual([]);
    // the four pages written before and untouched since (0, 1, 5, 7) came from the copy; nothing else did
    expect(s.pagesPrecopiedShared).toBe(4);
    for (const pid of [fx.pid, child.pid]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
    expect(await fx.send('ping')).toBe('pong');
  });

  it('records its regions as a plain dump does (the write protection is pagesnap\'s, not the process\'s)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const still = [owner];
    const records = (file: string) => recordsOf(file, [{ pid: fx.pid, still }, { pid: child.pid, still: child.regions }]);
    const plain = join(dir, `${kind.scenario}-plain.psnap`);
    const pre = join(dir, `${kind.scenario}-pre.psnap`);
    await dump([fx.pid], { output: plain, tree: true });
    const s = await dump([fx.pid], { output: pre, tree: true, precopy: true });
    expect(s.pagesPrecopiedShared).toBeGreaterThan(0);
    // (the regions of the scenario: the rest of a fixture's memory may change between two dumps)
    const mine = (rs: ReturnType<typeof records>) => rs.map((p) => p.filter((r) => r.start === owner.start));
    expect(mine(records(pre))).toEqual(mine(records(plain)));
  });

  it('is read frozen when a process that maps it is not dumped (its writes are not tracked)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-parent-only.psnap`);
    const s = await dump([fx.pid], { output: file, precopy: true, afterPrecopy: async () => childWrites(1, 0x63) });
    sameAsLive(file);
    expect(s.pagesPrecopiedShared).toBe(0);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(new RegExp(`shared memory .*: ${kind.notDumped(child.pid)}$`))]);
  });

  /**
   * A precopy dump of the tree in which a process forked beforehand (a member tracked, mapping the memory) writes
   * page 7 of it and is killed, before pagesnap looks for processes gone (`afterPrecopy`) or after (`beforeFreeze`).
   */
  const dumpMapperExiting = async (name: string, when: 'afterPrecopy' | 'beforeFreeze', byte: number) => {
    const kept = Number((await fx.send(`forkkeep ${hex(page(5))} 1 93`)).split(' ')[1]);
    const file = join(dir, `${kind.scenario}-${name}.psnap`);
    const s = await dump([fx.pid], {
      output: file, tree: true, precopy: true,
      [when]: async () => {
        writesThrough(kept, 7, byte);
        process.kill(kept, 'SIGKILL');
        for (const until = Date.now() + 10_000; isAlive(kept) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 10));
      },
    });
    // (page 7 as the process gone wrote it: the copy made before it did would not have it)
    sameAsLive(file);
    for (const pid of [fx.pid, child.pid]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
    return { s, kept };
  };

  it('is copied again when a process that maps it, tracked, writes it and exits before the freeze (what it wrote went with its page tables)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const { s } = await dumpMapperExiting('mapper-exited', 'afterPrecopy', 0x64);
    expect(s.precopySkipped).toEqual([]);
    expect(s.pagesPrecopiedShared).toBeGreaterThan(0);
  });

  it('is read frozen when a process that maps it, tracked, exits after it was copied again, before the freeze', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const { s, kept } = await dumpMapperExiting('mapper-exited-late', 'beforeFreeze', 0x65);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(new RegExp(`shared memory .*: ${kind.exited(kept)}$`))]);
  });

  /**
   * A precopy dump of the tree in which the fixture runs `commands` (forks) between the live pass and the freeze
   * (before pagesnap looks for processes gone, or after): the summary, and the pids the forkkeep commands answered with.
   */
  const dumpForking = async (file: string, commands: string[], when: 'afterPrecopy' | 'beforeFreeze' = 'afterPrecopy') => {
    const kept: number[] = [];
    const s = await dump([fx.pid], {
      output: file, tree: true, precopy: true,
      [when]: async () => {
        for (const c of commands) {
          const answer = await fx.send(c);
          expect(answer).toMatch(/^ok( \d+)?$/);
          if (answer !== 'ok') kept.push(Number(answer.split(' ')[1]));
        }
      },
    });
    // (the pages the children wrote are as they wrote them, not as copied before)
    sameAsLive(file);
    return { s, kept };
  };
  /** Whether any region of `pid` in the snapshot `file` says it is registered for write protection. */
  const recordedUw = (file: string, pid: number) => {
    const snap = SnapshotReader.open(file);
    try {
      return snap.process(pid).regions.some((r) => r.vmFlags.includes('uw'));
    } finally {
      snap.close();
    }
  };

  it('is copied again when a process that maps it forks meanwhile and a child writes it and is gone before the freeze', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-forked-gone.psnap`);
    // (page 0 as the child gone wrote it: the copy made before it did would not have it)
    const { s, kept } = await dumpForking(file, [`forkwrite ${hex(page(0))} 1 98`, `forkkeep ${hex(page(3))} 1 94`]);
    expect(s.precopySkipped).toEqual([]);
    expect(s.pagesPrecopiedShared).toBeGreaterThan(0);
    for (const pid of [fx.pid, child.pid, ...kept]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
  });

  it('is read frozen when a process that maps it forks meanwhile and a child is gone by the freeze, after it was copied again (it may have written it, unseen)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-forked.psnap`);
    const { s, kept } = await dumpForking(file, [`forkwrite ${hex(page(0))} 1 98`, `forkkeep ${hex(page(3))} 1 94`], 'beforeFreeze');
    expect(s.pagesPrecopiedShared).toBe(0);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(new RegExp(`shared memory .*: ${kind.forked(fx.pid)}`))]);
    // the child still there is recorded as it has its memory all the same (the registration it inherited is pagesnap's)
    expect(recordedUw(file, kept[0]!)).toBe(false);
    for (const pid of [fx.pid, child.pid, ...kept]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
  });

  it('where the kernel does not tell forks, a fork is seen all the same (its witness pages), and it is read frozen', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    process.env.PAGESNAP_NO_FORK_EVENTS = '1';
    try {
      const { s } = await dumpForking(join(dir, `${kind.scenario}-witnessed.psnap`), [`forkwrite ${hex(page(1))} 1 97`]);
      expect(s.pagesPrecopiedShared).toBe(0);
      expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(new RegExp(`shared memory .*: ${kind.witnessed(fx.pid)}`))]);
    } finally {
      delete process.env.PAGESNAP_NO_FORK_EVENTS;
    }
  });

  it('is copied all the same when a child forked once it was protected maps it as pagesnap looks for who does, and is frozen with it', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-forked-early.psnap`);
    let kept = 0;
    const s = await dump([fx.pid], {
      output: file, tree: true, precopy: true,
      // (the child writes a page of it, then stays: its page tables tell pagesnap which)
      afterProtectShared: async () => {
        kept = Number((await fx.send(`forkkeep ${hex(page(6))} 1 92`)).split(' ')[1]);
      },
    });
    sameAsLive(file);
    expect(s.precopySkipped).toEqual([]);
    expect(s.pagesPrecopiedShared).toBeGreaterThan(0);
    for (const pid of [fx.pid, child.pid, kept]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
  });

  it('a process forking all through the copy (children gone at once): its own memory is copied all the same, the shared memory read frozen', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-churn.psnap`);
    // (each fork holds back the write protection of its parent's memory until pagesnap has read the fork's event)
    expect(await fx.send('churn on')).toBe('ok');
    let s;
    try {
      s = await dump([fx.pid], { output: file, tree: true, precopy: true });
    } finally {
      expect(await fx.send('churn off')).toMatch(/^ok [1-9]\d*$/);
    }
    sameAsLive(file);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(new RegExp(`shared memory .*: ${kind.churned(fx.pid)}`))]);
    expect(s.pagesPrecopied - s.pagesPrecopiedShared).toBeGreaterThan(0);
    for (const pid of [fx.pid, child.pid]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
  });

  it('a process forking more children than pagesnap may hold descriptors for: it lets the others go, and all are left as they were', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-overflow.psnap`);
    // this process's limit on open files lowered for the dump: a quarter of it is what it may hold of the children's
    const [soft, hard] = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))!.slice(1);
    const limit = readdirSync('/proc/self/fd').length + 100;
    const most = Math.floor(limit / 4);
    const setLimit = (n: string) => expect(spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${n}:${hard}`]).status).toBe(0);
    const forks = async () => Number((await fx.send('churned')).split(' ')[1]);
    expect(await fx.send('churn on')).toBe('ok');
    let s;
    try {
      setLimit(String(limit));
      s = await dump([fx.pid], {
        output: file, tree: true, precopy: true,
        afterPrecopy: async () => {
          // (each fork waits for its event to be read: past `most`, each child is let go as it is read)
          for (const from = await forks(), until = Date.now() + 20_000; (await forks()) - from < most + 10 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
        },
      });
    } finally {
      setLimit(soft!);
      expect(await fx.send('churn off')).toMatch(/^ok [1-9]\d*$/);
    }
    sameAsLive(file);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(new RegExp(`shared memory .*: ${kind.overflowed(fx.pid, most)}`))]);
    for (const pid of [fx.pid, child.pid]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
  });

  it('a child forked meanwhile that is still there, frozen with the rest: what it wrote is read frozen, the rest taken from the copy', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, `${kind.scenario}-kept.psnap`);
    // (page 2 holds data: the child's write must cost the copy exactly that page)
    expect(await fx.send(`write ${hex(page(2))} 1 95`)).toBe('ok');
    const before = await dump([fx.pid], { output: join(dir, `${kind.scenario}-kept-before.psnap`), tree: true, precopy: true });
    const { s, kept } = await dumpForking(file, [`forkkeep ${hex(page(2))} 1 96`]);
    expect(s.processes).toContain(kept[0]);
    expect(s.precopySkipped).toEqual([]);
    // all the pages a precopy without the fork takes from the copy, but the one the child wrote (the child's mapping is
    // among those looked at: a SysV segment counts it)
    expect(before.precopySkipped).toEqual([]);
    expect(before.pagesPrecopiedShared).toBeGreaterThan(1);
    expect(s.pagesPrecopiedShared).toBe(before.pagesPrecopiedShared - 1);
    expect(recordedUw(file, kept[0]!)).toBe(false);
    for (const pid of [fx.pid, child.pid, ...kept]) expect(leftovers(pid, [owner])).toEqual(CLEAN);
  });
});

describe('ForkEvents', () => {
  it('a thread that takes no command fails the wait for it in time (the targets are frozen meanwhile), and is not waited for again', () => {
    // (in a process of its own: a wait that never ended would block this one, where no test timeout can end it)
    const script = `import { ForkEvents } from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'dump', 'fork-events.ts'))};
      const events = ForkEvents.start(new URL(${JSON.stringify(new URL('./helpers/silent-worker.ts', import.meta.url).href)}), 300);
      let thrown = null;
      try { events.settle(); } catch (e) { thrown = { code: e.code, message: e.message }; }
      // (what a failed dump then does: untracks its targets and stops the thread, none of it waiting)
      events.unwatch(1 << 30);
      const census = events.census();
      await events.stop();
      console.log(JSON.stringify({ thrown, census }));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
    expect({ signal: r.signal, stderr: r.stderr }).toEqual({ signal: null, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual({
      thrown: { code: 'ETIMEDOUT', message: expect.stringMatching(/^the thread that reads the targets' fork events took no command in 0\.3 s/) },
      census: 0,
    });
  });
});

describe('onlyTrackedMap', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await Fixture.start(['shared-anon-fork']);
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  it('does not take a process that exits as it is looked at for one that maps the memory (a zombie maps nothing)', async () => {
    // (a process forking all the time leaves, now and then, a child that mapped the memory as every process's maps
    // were read and has exited, not yet reaped, as its own are: its maps read empty, as if it had no registration)
    const owner = fx.region('shared-owner');
    const child = fx.scenario('shared-anon-fork').children[0]!;
    const r = readRegions(fx.pid).find((x) => x.start === owner.start)!;
    const kept = Number((await fx.send(`forkkeep ${hex(owner.start)} 1 91`)).split(' ')[1]);
    const copy = new SharedCopy(fx.pid, r);
    for (const pid of [fx.pid, child.pid]) copy.mappings.push({ pid, start: r.start, end: r.end, first: 0, writes: true });
    const fd = openSync(`/proc/${fx.pid}/map_files/${hex(r.start)}-${hex(r.end)}`, 'r');
    const asked: number[] = [];
    try {
      await onlyTrackedMap([{ copy, fd }], (pid) => {
        asked.push(pid);
        process.kill(pid, 'SIGKILL');
        while (!readStat(pid).zombie) sleepSync(10);
        return false;
      });
    } finally {
      closeSync(fd);
    }
    expect(asked).toEqual([kept]);
    expect(copy.why).toBeUndefined();
  });
});

describe('dump --precopy of shared anonymous memory made by a daemon (its parent gone: init adopted it)', () => {
  // A daemon makes its shared memory within milliseconds of starting, too soon for start times to say it did not
  // inherit it from its parent, which is init once the one that started it has exited. Where init's maps cannot be
  // read (as this VM's), that it never held an address space as large as the object says it did not make it.
  const started: Fixture[] = [];
  afterAll(async () => {
    for (const fx of started) await fx.stop();
  });
  /** A daemon holding `mib` MiB of written shared anonymous memory, and its adopter, which pagesnap cannot read. */
  const daemon = async (ctx: TestContext, mib: (adopterPeakKiB: number) => number) => {
    skipUnlessX64(ctx, 'precopy');
    const adopter = 1;
    try {
      readFileSync(`/proc/${adopter}/maps`);
      skipBecause(ctx, "daemon's shared memory", "init's maps can be read here, so whether it maps the object is seen, not inferred");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EACCES') throw e;
    }
    const peak = Number(/^VmPeak:\s+(\d+)/m.exec(readFileSync(`/proc/${adopter}/status`, 'utf8'))![1]);
    const fx = await Fixture.start(['bench-shared'], { orphan: true, shmemMiB: mib(peak) });
    started.push(fx);
    if (readStat(fx.pid).ppid !== adopter) {
      skipBecause(ctx, "daemon's shared memory", `orphans are adopted by process ${readStat(fx.pid).ppid} (a subreaper), not by init`);
    }
    return { fx, region: fx.region('bench-shared'), adopter };
  };

  it('is copied while it runs when init never held that much memory', async (ctx) => {
    const { fx, region } = await daemon(ctx, (peak) => Math.ceil(peak / 1024) + 8);
    const file = join(dir, 'daemon-big.psnap');
    const s = await dump([fx.pid], { output: file, precopy: true, afterPrecopy: async () => expect(await fx.send(`write ${hex(region.start)} 3 91`)).toBe('ok') });
    sameObject(file, fx.pid, region);
    expect(s.precopySkipped).toEqual([]);
    expect(s.pagesPrecopiedShared).toBeGreaterThan(0);
  });

  it('is read frozen when init may have made it (it once held as much), saying so', async (ctx) => {
    const { fx, region, adopter } = await daemon(ctx, () => 1);
    const file = join(dir, 'daemon-small.psnap');
    const s = await dump([fx.pid], { output: file, precopy: true, afterPrecopy: async () => expect(await fx.send(`write ${hex(region.start)} 3 92`)).toBe('ok') });
    sameObject(file, fx.pid, region);
    expect(s.pagesPrecopiedShared).toBe(0);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(new RegExp(`shared memory .*: process ${adopter} may map it \\(its maps cannot be read\\)$`))]);
  });
});

describe('dump --precopy of hugetlb memory no process can open', () => {
  // Shared anonymous hugetlb memory and a SysV segment of huge pages, four 2 MiB pages each, two written: tracked a
  // huge page at a time. (hugetlbfs gives no birth time; its ctime, which no fault moves, says when it was made.)
  const HUGE = 512;
  const ready = preparedFixture('hugetlb precopy', 'hugetlb-shared', (host) => host.reserveHugepages(16));

  it.for(['huge-shared-anon', 'huge-sysv'])('%s: copied while it runs; a huge page written since, or written and zapped, is read frozen', async (name, ctx) => {
    const fx = ready(ctx);
    const r = fx.region(name);
    const page = (n: number) => hex(r.start + BigInt(n) * 4096n);
    const file = join(dir, `${name}.psnap`);
    const s = await dump([fx.pid], {
      output: file, precopy: true,
      afterPrecopy: async () => {
        // a page of the first huge page, two of the last (a hole until now), and the second written, then zapped
        expect(await fx.send(`write ${page(5)} 1 ${name.length}`)).toBe('ok');
        expect(await fx.send(`write ${page(3 * HUGE + 7)} 2 ${name.length + 1}`)).toBe('ok');
        expect(await fx.send(`write ${page(HUGE)} 1 ${name.length + 2}`)).toBe('ok');
        expect(await fx.send(`discard ${page(HUGE)} ${HUGE}`)).toBe('ok');
      },
    });
    sameObject(file, fx.pid, r);
    expect(s.precopySkipped).toEqual([]);
    // of this object only its third huge page (a hole: zero) came from the copy; all four of the other one did
    expect(s.pagesPrecopiedShared).toBe(HUGE + 4 * HUGE);
    expect(leftovers(fx.pid, [r])).toEqual(CLEAN);
    // recorded as a plain dump records it (pagesnap's write protection is not the process's)
    const plain = join(dir, `${name}-plain.psnap`);
    await dump([fx.pid], { output: plain });
    const mine = (f: string) => recordsOf(f, [{ pid: fx.pid, still: [r] }])[0]!.filter((x) => x.start === r.start);
    expect(mine(file)).toEqual(mine(plain));
  });
});

describe('dump --precopy of a SysV segment', () => {
  const started: Fixture[] = [];
  const start = async (opts: { newIpcNamespace?: boolean } = {}) => {
    const fx = await Fixture.start(['sysv-fork'], opts);
    started.push(fx);
    const owner = fx.region('sysv-owner');
    // (its id is the inode its mappings show)
    const line = readFileSync(`/proc/${fx.pid}/maps`, 'utf8').split('\n').find((l) => l.startsWith(`${hex(owner.start)}-`))!;
    return { fx, owner, shmid: Number(line.trim().split(/\s+/)[4]) };
  };
  afterAll(async () => {
    for (const fx of started) await fx.stop();
  });

  it('is read frozen when it is mapped anew meanwhile, even by a process tracked (the kernel stamps every mapping removed)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const { fx, owner, shmid } = await start();
    const file = join(dir, 'sysv-attached.psnap');
    const s = await dump([fx.pid], {
      output: file, tree: true, precopy: true,
      // (a mapping of its own, not write-protected, gone again by the freeze)
      afterPrecopy: async () => expect(await fx.send(`attachwrite ${shmid} 3 1 99`)).toBe('ok'),
    });
    sameObject(file, fx.pid, owner);
    expect(s.pagesPrecopiedShared).toBe(0);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(/shared memory .*: a mapping of its SysV segment was removed meanwhile: what was written through it is not seen$/)]);
  });

  it('is read frozen when a process not tracked maps it meanwhile and keeps it mapped (the kernel counts every mapping)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const { fx, owner, shmid } = await start();
    const stranger = await Fixture.start(['anon']);
    started.push(stranger);
    const file = join(dir, 'sysv-stranger.psnap');
    const s = await dump([fx.pid], { output: file, tree: true, precopy: true, afterPrecopy: async () => expect(await stranger.send(`attachro ${shmid}`)).toMatch(/^0x[0-9a-f]+$/) });
    sameObject(file, fx.pid, owner);
    expect(s.pagesPrecopiedShared).toBe(0);
    // (the parent's mapping and its child's, and the stranger's)
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(/shared memory .*: it is mapped 3 times, 2 of them by processes tracked$/)]);
  });

  it('is copied with a mapping that may never write (attached SHM_RDONLY: nothing to protect, userfaultfd refuses it)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const { fx, owner, shmid } = await start();
    expect(await fx.send(`attachro ${shmid}`)).toMatch(/^0x[0-9a-f]+$/);
    const file = join(dir, 'sysv-read-only.psnap');
    const s = await dump([fx.pid], { output: file, tree: true, precopy: true, afterPrecopy: async () => expect(await fx.send(`write ${hex(owner.start)} 1 94`)).toBe('ok') });
    sameObject(file, fx.pid, owner);
    expect(s.precopySkipped).toEqual([]);
    // the other seven pages written before came from the copy
    expect(s.pagesPrecopiedShared).toBe(7);
  });

  it('is not taken as it was from a stamp of the current second (a mapping made in the same second leaves it unchanged)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const { fx, owner, shmid } = await start();
    const file = join(dir, 'sysv-same-second.psnap');
    // mapped and unmapped at the start of a second, then dumped: all of it in that second, unless pagesnap waits
    await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 20));
    expect(await fx.send(`attachwrite ${shmid} 2 1 97`)).toBe('ok');
    const s = await dump([fx.pid], { output: file, tree: true, precopy: true, afterPrecopy: async () => expect(await fx.send(`attachwrite ${shmid} 3 1 99`)).toBe('ok') });
    sameObject(file, fx.pid, owner);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(/shared memory .*: a mapping of its SysV segment was removed meanwhile: what was written through it is not seen$/)]);
  });

  it('is read frozen, not a failed dump, when the process that maps it is gone by the time it is counted', async () => {
    const { fx, owner } = await start();
    const r = readRegions(fx.pid).find((x) => x.start === owner.start)!;
    const gone = spawnSync('true').pid!;
    const copy = new SharedCopy(gone, r);
    await copy.watchSegment();
    expect(copy.why).toBe(`process ${gone}, which maps it, is gone`);
  });

  it('is read frozen when its processes are in another IPC namespace than pagesnap (its mappings cannot be counted)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const { fx, owner } = await start({ newIpcNamespace: true });
    const file = join(dir, 'sysv-namespace.psnap');
    const s = await dump([fx.pid], { output: file, tree: true, precopy: true });
    sameObject(file, fx.pid, owner);
    expect(s.pagesPrecopiedShared).toBe(0);
    expect(s.precopySkipped.map((x) => x.why)).toEqual([expect.stringMatching(/shared memory .*: it is a SysV segment of another IPC namespace than pagesnap's/)]);
  });
});

describe('dump --precopy', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await Fixture.start(['anon', 'threads']);
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });

  it('holds the memory as it was when frozen, whatever was written, discarded or filled in meanwhile', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const [written, mixed, hole] = [fx.region('written'), fx.region('mixed'), fx.region('hole')];
    const fds = readdirSync(`/proc/${fx.pid}/fd`);
    const file = join(dir, 'changed.psnap');
    const s = await dump([fx.pid], {
      output: file, precopy: true,
      afterPrecopy: async () => {
        // rewritten, zeroed, discarded (then one written again, one left a hole), and a hole filled
        expect(leftovers(fx.pid, [written]).uffdVmFlags).toBeGreaterThan(0); // (tracking is on)
        expect(await fx.send(`write ${hex(written.start + 2n * 4096n)} 3 91`)).toBe('ok');
        expect(await fx.send(`zero ${hex(written.start + 6n * 4096n)} 1`)).toBe('ok');
        expect(await fx.send(`discard ${hex(written.start + 8n * 4096n)} 2`)).toBe('ok');
        expect(await fx.send(`write ${hex(written.start + 8n * 4096n)} 1 92`)).toBe('ok');
        expect(await fx.send(`write ${hex(hole.start + 5n * 4096n)} 2 93`)).toBe('ok');
      },
    });
    // everything the live pass copied of 'written' but the 7 pages touched came from the copy
    expect(s.pagesPrecopied).toBeGreaterThanOrEqual(written.pages - 7 + mixed.pages / 4);
    const snap = SnapshotReader.open(file);
    try {
      const proc = snap.process();
      for (const r of [written, mixed, hole]) {
        expect({ region: r.name, same: snap.read(proc, r.start, r.pages * 4096).equals(liveBytes(fx.pid, r)) }).toEqual({ region: r.name, same: true });
      }
      // the discarded page not written again is a hole, not its old copy
      const w = proc.regions.find((x) => x.start === written.start)!;
      const runs = [...snap.runsOf(w.runs, snap.pagesOf(w))].map((x) => [x.offset, x.pages, x.verdict]);
      expect(runs).toContainEqual([9, 1, 'hole']);
      expect(snap.verify()).toBeNull();
    } finally {
      snap.close();
    }
    expect(leftovers(fx.pid, [written, mixed, hole])).toEqual(CLEAN);
    expect(readdirSync(`/proc/${fx.pid}/fd`)).toEqual(fds);
    // its main thread was stopped in read(2) for the injected calls: it reads on
    expect(await fx.send('ping')).toBe('pong');
  });

  it('completes under a profiler that signals pagesnap every 100 µs (node --cpu-prof), the process left as it was', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    // (SIGPROF interrupted the fork-events thread's every poll, which then never returned: the dump hung frozen)
    const [written, mixed] = [fx.region('written'), fx.region('mixed')];
    const file = join(dir, 'profiled.psnap');
    // (not allowed in NODE_OPTIONS)
    const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', join(dir, 'profiles'), RUN_JS, 'dump', String(fx.pid), '-o', file, '--precopy'], {
      encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL',
    });
    expect({ code: r.status, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const snap = SnapshotReader.open(file);
    try {
      expect(snap.manifest.freeze.precopy?.pages).toBeGreaterThan(0);
      expect(snap.verify()).toBeNull();
    } finally {
      snap.close();
    }
    expect(leftovers(fx.pid, [written, mixed])).toEqual(CLEAN);
    expect(await fx.send('ping')).toBe('pong');
  });

  it('reports its progress while it copies, not only once frozen', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const calls: [number, number][] = [];
    let whileRunning = 0;
    await dump([fx.pid], {
      output: join(dir, 'progress.psnap'), precopy: true, onProgress: (read, expected) => calls.push([read, expected]),
      afterPrecopy: async () => {
        whileRunning = calls.length;
      },
    });
    expect(whileRunning).toBeGreaterThan(0);
    expect(calls.filter(([read, expected]) => !(expected >= read && read > 0))).toEqual([]);
  });

  it('a process of 200 threads, all of them running: the snapshot verifies, every thread runs on, nothing is left', (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const file = join(dir, 'threads.psnap');
    const s = cliJson(['dump', String(fx.pid), '--precopy', '-o', file]);
    expect(s.pagesPrecopied).toBeGreaterThan(0);
    expect(cli(['verify', file]).code).toBe(0);
    // the snapshot says how it was taken
    expect(cliJson(['show', file]).freeze.precopy).toEqual({ pages: s.pagesPrecopied, ms: s.precopyMs });
    expect(cli(['show', file]).stdout).toContain(`after a precopy (${s.pagesPrecopied} pages read in ${s.precopyMs.toFixed(0)} ms while running)`);
    expect(leftovers(fx.pid, [fx.region('written')])).toEqual(CLEAN);
    expect(['S', 'R']).toContain(readStat(fx.pid).state);
    const text = cli(['dump', String(fx.pid), '--precopy', '-o', join(dir, 'threads-text.psnap')]).stdout;
    expect(text).toMatch(/^ {2}precopy: \d+ pages read in \d+ ms while running and not written since; frozen, the rest$/m);
  });

  it('signals sent all through it are all delivered: none is taken in the middle of an injected call', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const SIGRTMIN = 34; // (glibc keeps 32 and 33 for itself) real-time signals queue one by one: a lost one shows
    const count = async () => Number(await fx.send('signals'));
    const before = await count();
    const child = spawn(process.execPath, [RUN_JS, 'dump', String(fx.pid), '--precopy', '-o', join(dir, 'signals.psnap')], { stdio: 'ignore' });
    let done = false;
    child.on('close', (code) => (done = code === 0 ? true : (() => { throw new Error(`dump exited ${code}`); })()));
    let sent = 0;
    while (!done) {
      for (let i = 0; i < 20; i++) {
        try {
          process.kill(fx.pid, SIGRTMIN);
          sent++;
        } catch {
          /* EAGAIN: the queue is full while the process is frozen; not sent */
        }
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    for (let i = 0; i < 200 && (await count()) - before < sent; i++) await new Promise((r) => setTimeout(r, 5));
    expect({ sent, delivered: (await count()) - before }).toEqual({ sent, delivered: sent });
    expect(leftovers(fx.pid, [fx.region('written')])).toEqual(CLEAN);
  });

  it('a process already stopped is read frozen as usual, and left stopped', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    process.kill(fx.pid, 'SIGSTOP');
    try {
      while (readStat(fx.pid).state !== 'T') await new Promise((r) => setTimeout(r, 5));
      const s = cliJson(['dump', String(fx.pid), '--precopy', '-o', join(dir, 'stopped.psnap')]);
      expect(s.pagesPrecopied).toBe(0);
      expect(readStat(fx.pid).state).toBe('T');
      expect(leftovers(fx.pid, [fx.region('written')])).toEqual(CLEAN);
    } finally {
      process.kill(fx.pid, 'SIGCONT');
    }
  });

  it('pagesnap killed outright while copying: the kernel takes the tracking back with the last descriptor', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const big = await Fixture.start(['big'], { sizeMiB: 512 });
    try {
      const fds = readdirSync(`/proc/${big.pid}/fd`);
      const child = spawn(process.execPath, [RUN_JS, 'dump', String(big.pid), '--precopy', '--level', '19', '-o', join(dir, 'killed.psnap')], { stdio: 'ignore' });
      // wait until tracking is on, then kill
      for (let i = 0; leftovers(big.pid, []).uffdVmFlags === 0; i++) {
        if (i > 2000) throw new Error('tracking never started');
        await new Promise((r) => setTimeout(r, 2));
      }
      child.kill('SIGKILL');
      await new Promise((r) => child.on('close', r));
      expect(leftovers(big.pid, [big.region('big')])).toEqual(CLEAN);
      expect(readdirSync(`/proc/${big.pid}/fd`)).toEqual(fds);
      expect(await big.send('ping')).toBe('pong');
    } finally {
      await big.stop();
    }
  }, 60_000);

  it('a process under a seccomp filter is read frozen, nothing run in it (its filter kills it for userfaultfd)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const sx = await Fixture.start(['anon'], { seccomp: true });
    try {
      expect(readFileSync(`/proc/${sx.pid}/status`, 'utf8')).toMatch(/^Seccomp:\s+2$/m);
      const s = cliJson(['dump', String(sx.pid), '--precopy', '-o', join(dir, 'seccomp.psnap')]);
      expect({ skipped: s.precopySkipped, precopied: s.pagesPrecopied }).toEqual({
        skipped: [{ pid: sx.pid, why: `process ${sx.pid} runs under a seccomp filter, which a system call run in it could make kill it` }], precopied: 0,
      });
      expect(await sx.send('ping')).toBe('pong');
    } finally {
      await sx.stop();
    }
  });

  it('a 32-bit process is read frozen, nothing run in it (its syscall would make an eventfd and return elsewhere)', async (ctx) => {
    skipUnlessX64(ctx, 'precopy');
    const bin = join(import.meta.dirname, '..', 'fixtures', 'bin', 'ia32');
    if (!existsSync(bin)) {
      console.log('SKIP 32-bit process: fixtures/bin/ia32 was not built (the C compiler cannot make 32-bit x86 programs)');
      ctx.skip();
    }
    const p = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const answer = () => new Promise<string>((resolve) => p.stdout!.once('data', (d) => resolve(String(d).trim())));
    try {
      const [pid, addr] = (await answer()).split(' ');
      const fds = readdirSync(`/proc/${pid}/fd`);
      const file = join(dir, 'ia32.psnap');
      const s = cliJson(['dump', pid!, '--precopy', '-o', file]);
      expect({ skipped: s.precopySkipped, precopied: s.pagesPrecopied }).toEqual({
        skipped: [{ pid: Number(pid), why: `thread ${pid} runs 32-bit code (code segment 0x23): system calls are run only in 64-bit code` }], precopied: 0,
      });
      expect(readdirSync(`/proc/${pid}/fd`)).toEqual(fds);
      const r = SnapshotReader.open(file);
      try {
        const bytes = r.read(r.process(Number(pid)), BigInt(`0x${addr}`), 64 * 4096);
        for (let i = 0; i < 64; i++) expect(bytes.subarray(i * 4096, (i + 1) * 4096).every((b) => b === i + 1), `page ${i}`).toBe(true);
      } finally {
        r.close();
      }
      // it runs on from the read it was waiting in, its memory as it was
      p.stdin!.write('?');
      expect(await answer()).toBe(String(4096 * (64 * 65) / 2));
    } finally {
      p.kill('SIGKILL');
    }
  });

  it('is refused with --freeze none, which freezes nothing to shorten; --split-huge without it is refused', () => {
    const r = cli(['dump', String(fx.pid), '--precopy', '--freeze', 'none', '-o', join(dir, 'none.psnap')]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 2, stderr: expect.stringContaining('--precopy: nothing is frozen with --freeze none') });
    const h = cli(['dump', String(fx.pid), '--split-huge', '-o', join(dir, 'split.psnap')]);
    expect({ code: h.code, stderr: h.stderr }).toEqual({ code: 2, stderr: expect.stringContaining('must be provided when using --split-huge: --precopy') });
  });
});
