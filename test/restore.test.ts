// Acceptance for `restore`: every fixture scenario is dumped, restored (eagerly and lazily, copying and moving)
// with --verify, and the restore host is dumped in turn: its memory must be the original's, region by region and
// page by page.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { statSync, existsSync, copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { processVmReadv } from '../src/native/index.js';
import { join } from 'node:path';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { restore } from '../src/restore/restore.js';
import { Fixture } from '../fixtures/driver.js';
import { expectedPage, pagesToCheck } from '../fixtures/pattern.js';
import { cli, cliJson } from './helpers/cli.js';
import { prepareHost, type Prepared } from './helpers/host.js';
import { useScenario } from './helpers/scenario.js';
import { compareRestored, withHeldRestore, hostDifferences, killHost } from './helpers/restored.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

const SCENARIOS = [
  'anon', 'thp', 'shmem', 'shmem-zapped', 'shmem-pwrite', 'shmem-fork', 'swap', 'guard', 'uffd-wp', 'uffd-shmem', 'poison',
  'file-private', 'file-deleted', 'file-shared', 'secret', 'droppable', 'sealed', 'dontdump', 'apart', 'ksm', 'hugetlb', 'hugetlb-shared', 'sparse', 'vast', 'seed',
] as const;
const MODES = [
  { lazy: false, mode: 'copy' }, { lazy: false, mode: 'move' }, { lazy: true, mode: 'copy' }, { lazy: true, mode: 'move' },
] as const;

const dir = scratchDir('restore');
let prepared: Prepared;
// the hugetlb scenario holds 3 huge pages and its restore needs as many again
beforeAll(() => { prepared = prepareHost({ hugepages: 16 }); });
afterAll(() => {
  prepared.host.restore();
});


describe.each(SCENARIOS)('restore of scenario %s', (name) => {
  const sc = useScenario(name, () => prepared);
  const original = () => {
    const file = join(dir, `${name}.psnap`);
    if (!existsSync(file)) cliJson(['dump', String(sc.fx.pid), '-o', file]);
    return file;
  };

  it.for(MODES)('lazy=$lazy mode=$mode: every placed page verifies, and the host holds what the process held', (m, ctx) => {
    sc.skipIf(ctx);
    const file = original();
    withHeldRestore(file, ['--verify', '--mode', m.mode, '--no-profile', ...(m.lazy ? ['--lazy'] : [])], (r) => {
      expect(r.verify.mismatches, JSON.stringify(r.verify.first)).toBe(0);
      expect(r.verify.pages).toBeGreaterThan(0);
      expect(r.damage).toEqual([]);
      // every page that held data is in the snapshot (a private memfd mapping's clean pages too, with its object;
      // a deleted file's pages with the file), except what no other process may read (memfd_secret)
      const unreadable = sc.fx.scenario(name).regions.flatMap((reg) =>
        (reg.content.unreadable ?? []).map(([f, n]) => ({ start: `0x${(reg.start + BigInt(f) * 4096n).toString(16)}`, len: n * 4096 })));
      expect(r.lost.map((l: { start: string; len: number }) => ({ start: l.start, len: l.len }))).toEqual(unreadable);
      // userfaultfd cannot fill a private mapping of /dev/zero: it comes back as anonymous memory, and is said to
      for (const reg of sc.fx.scenario(name).regions.filter((x) => x.name === 'zero-private')) {
        expect(r.notes).toContain(`0x${reg.start.toString(16)} was a private mapping of /dev/zero; it is restored as anonymous memory, without the name (userfaultfd cannot fill a mapping of /dev/zero)`);
      }
      expect(hostDifferences(file, sc.fx.pid, r.hostPid, join(dir, `${name}-${m.mode}-${m.lazy}.psnap`))).toEqual([]);
    });
  });
});

describe('1 GiB huge pages', () => {
  // userfaultfd places a huge page only whole, from all its bytes: streamed, each 1 GiB page was decoded into 1 GiB
  // of pagesnap's memory first (1.2 GB of RSS for one page)
  it('are written in directly, eagerly and lazily, within pagesnap\'s memory bound', async (ctx) => {
    const why = prepared.host.reserveHugepages(2, 1 << 20);
    if (why) {
      skipBecause(ctx, '1 GiB huge pages', why);
    }
    const fx = await Fixture.start(['hugetlb-1g']);
    try {
      const sc = fx.scenario('hugetlb-1g');
      if (sc.skip) {
        skipBecause(ctx, '1 GiB huge pages', sc.skip);
      }
      const file = join(dir, 'hugetlb-1g.psnap');
      cliJson(['dump', String(fx.pid), '-o', file]);
      for (const lazy of [false, true]) {
        withHeldRestore(file, ['--verify', '--no-profile', ...(lazy ? ['--lazy'] : [])], (r) => {
          expect({ mismatches: r.verify.mismatches, lost: r.lost }).toEqual({ mismatches: 0, lost: [] });
          // (what is streamed is the rest of the process: a few pages of stack and data)
          expect({ lazy: r.lazy, streamedHugePage: r.bytes.copied >= 2 ** 30 }).toEqual({ lazy, streamedHugePage: false });
          expect(r.bytes.written).toBeGreaterThanOrEqual(2 ** 30);
          expect(r.peakRssBytes).toBeLessThan(256 * 2 ** 20);
          const back = join(dir, `hugetlb-1g-${lazy}.psnap`);
          cliJson(['dump', String(r.hostPid), '-o', back, '--force']);
          const a = SnapshotReader.open(file);
          const b = SnapshotReader.open(back);
          try {
            expect(compareRestored(a, fx.pid, b, r.hostPid)).toEqual([]);
            expect(b.process(r.hostPid).regions.find((x) => x.start === sc.regions[0]!.start)?.smaps.KernelPageSize).toBe(2 ** 30);
          } finally {
            a.close();
            b.close();
          }
        });
      }
    } finally {
      await fx.stop();
    }
  }, 120_000);
});

describe('restore details', () => {
  let fx: Fixture;
  let file: string;
  beforeAll(async () => {
    fx = await Fixture.start(['anon', 'thp', 'file-private', 'poison']);
    file = join(dir, 'details.psnap');
    cliJson(['dump', String(fx.pid), '-o', file]);
  }, 60_000);
  afterAll(async () => {
    await fx.stop();
  });

  it('lazily: faults are served from the snapshot while the rest streams in, and the first touches become a profile', async () => {
    // (process_vm_readv cannot read PROT_NONE memory)
    const regions = fx.scenarios.flatMap((s) => s.regions).filter((r) => r.content.written && r.name !== 'prot-none');
    let seen = 0;
    let hostPid = 0;
    const r = await restore(file, {
      lazy: true, hold: true,
      onReady: (pid) => {
        hostPid = pid;
        // Read the pages the fixture wrote: the background fill waits until onReady returns, so these reads fault.
        // process_vm_readv waits for the fault to be served (a /proc/PID/mem read would fail with EIO instead).
        for (const reg of [...regions].reverse()) {
          for (const i of [...pagesToCheck(reg)].reverse()) {
            const want = expectedPage(reg, i);
            if (want.kind !== 'bytes') continue;
            const got = Buffer.alloc(4096);
            expect(processVmReadv(pid, [got], [{ addr: reg.start + BigInt(i) * 4096n, len: 4096 }])).toBe(4096);
            expect(got.equals(want.bytes), `${reg.name} page ${i}`).toBe(true);
            seen++;
          }
        }
      },
    });
    try {
      expect(seen).toBeGreaterThan(0);
      expect(r.faults.served).toBeGreaterThan(0);
      expect(r.timings.firstFaultMs).not.toBeNull();
      expect(r.profile?.recorded).toBe(r.faults.served);
      expect(statSync(`${file}.profile`).mode & 0o777).toBe(0o600);
    } finally {
      killHost(hostPid);
    }
    // The next restore fills the profiled pages first.
    const again = await restore(file, { lazy: true });
    expect(again.profile?.used).toBe(r.profile!.recorded);
  });

  it('a profile that can be neither read nor written (a directory in its place) is a note, not a failure', async () => {
    const copy = join(dir, 'no-profile.psnap');
    copyFileSync(file, copy);
    mkdirSync(`${copy}.profile`);
    const reg = fx.region('written');
    let hostPid = 0;
    const r = await restore(copy, {
      lazy: true, hold: true,
      onReady: (pid) => {
        hostPid = pid;
        expect(processVmReadv(pid, [Buffer.alloc(4096)], [{ addr: reg.start, len: 4096 }])).toBe(4096);
      },
    });
    try {
      expect(r.faults.served).toBeGreaterThan(0);
      expect(r.profile).toBeNull();
      expect(r.notes).toContainEqual(expect.stringMatching(/^the working-set profile was not written \(.*no-profile\.psnap\.profile: EISDIR\): the next restore starts without it$/));
      expect(readdirSync(dir).filter((f) => f.startsWith('no-profile') && f.endsWith('.tmp'))).toEqual([]);
    } finally {
      killHost(hostPid);
    }
  });

  it('a snapshot of several processes restores the one named with --pid, and asks which when none is', async () => {
    const tree = await Fixture.start(['shmem-fork']);
    try {
      const child = tree.scenario('shmem-fork').children[0]!;
      const file = join(dir, 'tree.psnap');
      cliJson(['dump', String(tree.pid), '--tree', '-o', file]);
      const bare = cli(['restore', file]);
      expect(bare.code).toBe(1);
      expect(bare.stderr).toMatch(new RegExp(`^pagesnap restore: .*tree\\.psnap holds 2 processes \\(.*${child.pid}.*\\): EINVAL — choose one with --pid`));
      const r = cliJson(['restore', file, '--pid', String(child.pid), '--verify']);
      expect(r.pid).toBe(child.pid);
      expect(r.verify.mismatches).toBe(0);
      expect(r.bytes.objects).toBeGreaterThan(0);
    } finally {
      await tree.stop();
    }
  });

  it('a missing snapshot is one clear error line', () => {
    const res = cli(['restore', join(dir, 'nope.psnap')]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^pagesnap restore: cannot open .*nope\.psnap: ENOENT/);
  });
});
