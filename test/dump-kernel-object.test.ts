// An io_uring's rings and submission entries (as tokio-uring, liburing servers and QEMU map them): the memory of a
// kernel object, mapped through an anon_inode file, every page inserted at mmap. A snapshot used to list them as
// special and keep none of their bytes: the uncollected completions and the requests as written were gone.
import { describe, it, expect, type TestContext } from 'vitest';
import { join } from 'node:path';
import type { FixtureRegion } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { inspect } from '../src/analyze/inspect.js';
import { cliJson } from './helpers/cli.js';
import { withHeldRestore } from './helpers/restored.js';
import { scratchDir } from './helpers/scratch.js';
import { useScenario, liveBytes } from './helpers/scenario.js';

/** Mirrors sc_uring in fixtures/scenario.c: no-op requests, each with its number as user_data, all completed. */
const ENTRIES = 256;
const SQE = 64;
const CQE = 16;

const dir = scratchDir('kernel-object');
const sc = useScenario('uring');
/** The scenario's process and its two mappings; the test is skipped, saying why, where io_uring is not allowed. */
function setUp(ctx: TestContext) {
  sc.skipIf(ctx);
  return { fx: sc.fx, rings: sc.fx.region('uring-rings'), sqes: sc.fx.region('uring-sqes') };
}

/** The requests as written: IORING_OP_NOP (0), user_data i + 1. */
function expectRequests(b: Buffer) {
  for (let i = 0; i < ENTRIES; i++) expect({ i, opcode: b[i * SQE], data: b.readBigUInt64LE(i * SQE + 32) }).toEqual({ i, opcode: 0, data: BigInt(i + 1) });
}

/** The completions, uncollected in the CQ ring: user_data i + 1, result 0, in order from wherever the ring puts them. */
function expectCompletions(b: Buffer) {
  let at = -1;
  for (let o = 0; o + CQE <= b.length && at < 0; o += 8) if (b.readBigUInt64LE(o) === 1n && b.readBigUInt64LE(o + CQE) === 2n) at = o;
  expect(at).toBeGreaterThanOrEqual(0);
  for (let i = 0; i < ENTRIES; i++) expect({ i, data: b.readBigUInt64LE(at + i * CQE), res: b.readInt32LE(at + i * CQE + 8) }).toEqual({ i, data: BigInt(i + 1), res: 0 });
}

describe('an io_uring', () => {
  it('is memory of a kernel object, all of it mapped; audit finds nothing a pagemap-only dumper loses (X5)', (ctx) => {
    const { fx, rings, sqes } = setUp(ctx);
    for (const r of [rings, sqes]) {
      const x = inspect(fx.pid).regions.find((y) => y.start === r.start)!;
      expect({ kind: x.kind, present: x.counts!.present }).toEqual({ kind: 'kernel-object', present: r.pages });
    }
    const rep = cliJson(['audit', String(fx.pid), '--all']);
    for (const r of [rings, sqes]) {
      const a = rep.processes[0].regions.find((x: { start: string }) => x.start === `0x${r.start.toString(16)}`);
      expect({ kind: a.kind, data: a.dataPages, lost: a.lost.pages, cases: [...new Set(a.runs.map((x: { case: string }) => x.case))] }).toEqual({ kind: 'kernel-object', data: r.pages, lost: 0, cases: ['X5'] });
    }
  });

  it('is dumped with its requests and uncollected completions, read through the mapping', (ctx) => {
    const { fx, rings, sqes } = setUp(ctx);
    const file = join(dir, 'uring.psnap');
    expect(cliJson(['dump', String(fx.pid), '-o', file]).pagesUnreadable).toBe(0);
    const snap = SnapshotReader.open(file);
    try {
      const proc = snap.process();
      const bytes = (r: FixtureRegion) => snap.read(proc, r.start, r.pages * 4096);
      expect(proc.regions.find((x) => x.start === rings.start)!.kind).toBe('kernel-object');
      expectCompletions(bytes(rings));
      expectRequests(bytes(sqes));
      for (const r of [rings, sqes]) expect(bytes(r).equals(liveBytes(fx.pid, r))).toBe(true);
    } finally {
      snap.close();
    }
  });

  it('comes back as plain memory holding the same bytes, with a note, and nothing lost', (ctx) => {
    const { fx, rings, sqes } = setUp(ctx);
    const file = join(dir, 'uring-restore.psnap');
    cliJson(['dump', String(fx.pid), '-o', file]);
    withHeldRestore(file, ['--verify'], (r) => {
      expect({ lost: r.lost, mismatches: r.verify.mismatches }).toEqual({ lost: [], mismatches: 0 });
      for (const x of [rings, sqes]) {
        expect(r.notes).toContain(`0x${x.start.toString(16)} was the memory of a kernel object (anon_inode:[io_uring]); its bytes are restored as private anonymous memory`);
      }
      expectCompletions(liveBytes(r.hostPid, rings));
      expectRequests(liveBytes(r.hostPid, sqes));
    });
  });
});
