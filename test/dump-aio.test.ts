// An aio context's completion ring (io_setup(2), as libaio, databases and QEMU use): the kernel allocates all its pages
// at io_setup and writes completions through a mapping of its own, so the process's pagemap shows none of them until
// the process reads the ring itself — and map_files cannot open it (ENXIO). A pagemap-only dumper loses the pending
// completions; pagesnap used to record them as "its deleted file cannot be opened", and a restore called them lost.
import { describe, it, expect, type TestContext } from 'vitest';
import { join } from 'node:path';
import type { FixtureRegion } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { inspect } from '../src/analyze/inspect.js';
import { cliJson } from './helpers/cli.js';
import { withHeldRestore } from './helpers/restored.js';
import { scratchDir } from './helpers/scratch.js';
import { useScenario, liveBytes } from './helpers/scenario.js';

/** Mirrors sc_aio in fixtures/scenario.c: completions left in the ring, each with its number as data, reading 64 bytes. */
const EVENTS = 3000;
const READ = 64;
const AIO_RING_MAGIC = 0xa10a10a1;

const dir = scratchDir('aio');
const sc = useScenario('aio');
/** The scenario's process and its ring; the test is skipped, saying why, where there is none. */
function setUp(ctx: TestContext) {
  sc.skipIf(ctx);
  return { fx: sc.fx, ring: sc.fx.region('aio-ring') };
}

/** The ring as struct aio_ring lays it out: a 32-byte header, then io_events of 32 bytes. */
function expectCompletions(b: Buffer) {
  expect({ magic: b.readUInt32LE(16), head: b.readUInt32LE(8), tail: b.readUInt32LE(12) }).toEqual({ magic: AIO_RING_MAGIC, head: 0, tail: EVENTS });
  for (let i = 0; i < EVENTS; i++) {
    const ev = 32 + i * 32;
    expect({ event: i, data: b.readBigUInt64LE(ev), res: b.readBigInt64LE(ev + 16) }).toEqual({ event: i, data: BigInt(i + 1), res: BigInt(READ) });
  }
}

const stateOf = (pid: number, r: FixtureRegion) => inspect(pid).regions.find((x) => x.start === r.start)!;

describe('an aio completion ring', () => {
  it('shows only what fault-around mapped, and audit counts the rest as data a pagemap-only dumper loses (X4)', (ctx) => {
    const { fx, ring } = setUp(ctx);
    const r = stateOf(fx.pid, ring);
    const present = r.counts!.present;
    expect({ kind: r.kind, present }).toEqual({ kind: 'aio-ring', present: ring.expect.file });
    // (the completions reach past the pages shown: 32 + 3000 × 32 bytes is 24 pages)
    const rep = cliJson(['audit', String(fx.pid), '--all']);
    const a = rep.processes[0].regions.find((x: { start: string }) => x.start === `0x${ring.start.toString(16)}`);
    expect(a.lost.cases).toEqual([{ case: 'X4', name: 'aio ring page', pages: ring.pages - present }]);
  });

  it('is dumped whole with its pending completions, read through the mapping', (ctx) => {
    const { fx, ring } = setUp(ctx);
    const file = join(dir, 'aio.psnap');
    const summary = cliJson(['dump', String(fx.pid), '-o', file]);
    expect(summary.pagesUnreadable).toBe(0);
    const snap = SnapshotReader.open(file);
    try {
      const proc = snap.process();
      const reg = proc.regions.find((x) => x.start === ring.start)!;
      expect(reg.kind).toBe('aio-ring');
      const bytes = snap.read(proc, ring.start, ring.pages * 4096);
      expectCompletions(bytes);
      expect(bytes.equals(liveBytes(fx.pid, ring))).toBe(true);
    } finally {
      snap.close();
    }
    // reading maps the ring's pages (they existed; nothing was allocated): this is the one region a dump populates
    expect(stateOf(fx.pid, ring).counts!.present).toBe(ring.pages);
  });

  it('comes back as plain memory holding the same bytes, with a note, and nothing lost', (ctx) => {
    const { fx, ring } = setUp(ctx);
    const file = join(dir, 'aio-restore.psnap');
    cliJson(['dump', String(fx.pid), '-o', file]);
    withHeldRestore(file, ['--verify'], (r) => {
      expect({ lost: r.lost, mismatches: r.verify.mismatches }).toEqual({ lost: [], mismatches: 0 });
      expect(r.notes).toContain(`0x${ring.start.toString(16)} was an aio completion ring (io_setup); its bytes are restored as private anonymous memory`);
      expectCompletions(liveBytes(r.hostPid, ring));
    });
  });
});
