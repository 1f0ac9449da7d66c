// Acceptance for `lab`: every inaccuracy is re-created on this kernel, shows the evidence kernel-semantics.md
// records, and pagesnap's dump keeps every byte of data (read back and compared) where a pagemap-only dumper loses it.
import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { once } from 'node:events';
import { cliJson, RUN_JS } from './helpers/cli.js';
import { isAlive } from '../src/proc/process.js';
import { descendants } from '../src/dump/targets.js';
import { skipBecause } from './helpers/skip.js';

type Result = { name: string; skip?: string; pagemap?: string; scan?: string; naiveLoses?: number; kept?: number; of?: number };

/** What this kernel's pagemap shows (raw bits, kpageflags when root), and the pages a naive dumper loses. */
const EXPECT: Record<string, { pagemap: RegExp; loses: number | 'nothing' }> = {
  'seeds: A writes shmem, swap-out, A forks B, A unmaps, dump both': { pagemap: /^16 nothing$/, loses: 16 },
  'shmem zapped by MADV_DONTNEED': { pagemap: /^16 nothing$/, loses: 16 },
  'shmem written only through pwrite': { pagemap: /^16 nothing$/, loses: 16 },
  'fork child of a shmem owner': { pagemap: /^16 nothing$/, loses: 16 },
  'shmem swapped out': { pagemap: /^16 nothing$/, loses: 16 },
  'anon swapped out': { pagemap: /^16 SWAP$/, loses: 0 },
  'guard markers, anon': { pagemap: /^12 PRESENT\|EXCL, 4 SWAP\|GUARD/, loses: 0 },
  'guard markers, shmem': { pagemap: /^12 PRESENT\|FILE\|EXCL, 4 SWAP\|GUARD/, loses: 0 },
  'uffd-wp markers over holes': { pagemap: /^16 SWAP\|UFFD_WP$/, loses: 0 },
  'uffd-wp markers over shmem data': { pagemap: /^16 SWAP\|UFFD_WP$/, loses: 0 },
  'poison markers (UFFDIO_POISON)': { pagemap: /^8 PRESENT\|EXCL, 4 SWAP, 4 nothing/, loses: 0 },
  'the huge zero page claims PM_FILE': { pagemap: /^512 PRESENT\|FILE \(kpageflags: 512 THP, 512 ZERO_PAGE\)$/, loses: 0 },
  'KSM-merged pages': { pagemap: /^16 PRESENT \(kpageflags: .*16 KSM/, loses: 0 },
  'MAP_PRIVATE memfd: clean vs copied': { pagemap: /^8 PRESENT\|FILE\|EXCL, 4 PRESENT\|EXCL, 4 nothing/, loses: 0 },
  'hugetlb, private and shared': { pagemap: /^512 PRESENT\|EXCL, 512 nothing .* \/ 512 PRESENT\|FILE\|EXCL/, loses: 0 },
  // fault-around mapped up to 16 pages about the header when io_submit read it; the rest shows nothing, and is lost
  'aio ring: completions written by the kernel': { pagemap: /^\d+ PRESENT\|FILE(\|EXCL)?, (\d+) nothing$/, loses: 'nothing' },
};

const machine = () => ({
  hugepages: readFileSync('/proc/sys/vm/nr_hugepages', 'utf8').trim(),
  ksm: readFileSync('/sys/kernel/mm/ksm/run', 'utf8').trim(),
  thp: readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').trim(),
  swaps: readFileSync('/proc/swaps', 'utf8').trim(),
});

describe('pagesnap lab', () => {
  let results: Result[];
  let before: ReturnType<typeof machine>;
  beforeAll(() => {
    before = machine();
    results = cliJson<{ results: Result[] }>(['lab', '--migration-seconds', '3']).results;
  }, 300_000);

  for (const [name, want] of Object.entries(EXPECT)) {
    it(name, (ctx) => {
      const r = results.find((x) => x.name === name)!;
      expect(r).toBeDefined();
      if (r.skip) {
        return skipBecause(ctx, `lab ${name}`, r.skip);
      }
      expect(r.pagemap).toMatch(want.pagemap);
      expect(r.naiveLoses).toBe(want.loses === 'nothing' ? Number(want.pagemap.exec(r.pagemap!)!.at(-1)) : want.loses);
      expect(r.kept).toBe(r.of);
    });
  }

  it('migration entries under compaction: counted or said to be not caught, and the dump keeps every page', () => {
    const r = results.find((x) => x.name === 'migration entries under compaction')!;
    expect(r.pagemap).toMatch(/^(\d+ migration entries caught|not caught) in \d+ reads over 3 s$/);
    expect(r.of).toBe(131072);
    expect(r.kept).toBe(r.of);
  });

  it('puts the machine back as it found it (swap, KSM, THP, hugetlb pages)', () => {
    expect(machine()).toEqual(before);
  });
});

/** The processes `pid` started (and theirs), with their command lines. */
const made = (pid: number) => descendants([pid]).filter((p) => p !== pid).map((p) => {
  try {
    return { pid: p, cmd: readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ') };
  } catch {
    return { pid: p, cmd: '' }; // gone meanwhile
  }
});

describe('pagesnap lab stopped midway', () => {
  it.for(['SIGINT', 'SIGKILL'] as const)('by %s: its fixtures, compaction loop and files go, and the machine is put back', { timeout: 30_000 }, async (sig) => {
    const before = machine();
    const labDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith('pagesnap-lab-'));
    const dirsBefore = labDirs();
    const lab = spawn(process.execPath, [RUN_JS, 'lab', '--only', 'migration', '--migration-seconds', '60'], { stdio: 'ignore' });
    let started: { pid: number; cmd: string }[] = [];
    try {
      for (let i = 0; i < 300 && !started.some((c) => c.cmd.includes('compact_memory')); i++) {
        await new Promise((r) => setTimeout(r, 50));
        started = made(lab.pid!);
      }
      expect(started.map((c) => c.cmd)).toEqual(expect.arrayContaining([expect.stringContaining('compact_memory'), expect.stringContaining('scenario')]));
      const exited = once(lab, 'exit');
      lab.kill(sig);
      expect((await exited)[1]).toBe(sig);
      const alive = () => started.filter((c) => isAlive(c.pid)).map((c) => c.cmd);
      const now = () => ({ alive: alive(), machine: machine(), dirs: labDirs() });
      const want = { alive: [], machine: before, dirs: dirsBefore };
      for (let i = 0; i < 100 && JSON.stringify(now()) !== JSON.stringify(want); i++) await new Promise((r) => setTimeout(r, 50));
      expect(now()).toEqual(want);
    } finally {
      lab.kill('SIGKILL');
    }
  });
});
