// A process that serves its own FUSE file system and maps a file from it (a FUSE daemon that maps its own files, or a
// process tree dumped together with its daemon). Frozen, it answers nothing: a dump that asked the file system
// anything after freezing (statfs for the region's kind, stat for the file's stamp, a lookup by name) waited for
// ever, deaf to SIGTERM and Ctrl-C. The fixture caches nothing in the kernel (timeouts 0), so any such question
// reaches the frozen server.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { cli } from './helpers/cli.js';
import { patternPage } from '../fixtures/pattern.js';
import { scratchDir } from './helpers/scratch.js';

const dir = scratchDir('fuse');
let fx: Fixture;
let skipWhy: string | undefined;

beforeAll(async () => {
  fx = await Fixture.start(['fuse-self']);
  skipWhy = fx.scenario('fuse-self').skip;
  if (skipWhy) console.log(`SKIP fuse-self: ${skipWhy}`);
});
afterAll(async () => {
  await fx?.stop();
});

describe('dump of a process that serves its own FUSE mount', () => {
  it.for(['ptrace', 'sigstop'])('--freeze %s: finishes, the file\'s kind and stamp taken from what the kernel knows', (freeze, ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    const file = join(dir, `${freeze}.psnap`);
    const r = cli(['dump', String(fx.pid), '--freeze', freeze, '-o', file]); // killed after 60 s
    expect(r.code, r.stderr || 'killed: the dump waited on the frozen file system').toBe(0);
    const snap = SnapshotReader.open(file);
    try {
      const mapped = snap.process().regions.filter((x) => x.path?.endsWith('/data'));
      // the fixture's attributes: 16 pages, mtime 1700000000 s
      const stamp = { size: 65536, mtimeNs: 1_700_000_000n * 1_000_000_000n };
      expect(mapped.map((x) => ({ kind: x.kind, file: x.file }))).toEqual([{ kind: 'file-shared', file: stamp }, { kind: 'file-private', file: stamp }]);
      // a deleted file there is not opened (that would wait for the frozen server): its mapped half is read through
      // the mapping, the rest said to be unreadable, and why
      const gone = snap.process().regions.find((x) => x.path?.endsWith('/gone'))!;
      expect(gone.object).toBeUndefined();
      const runs = [...snap.runsOf(gone.runs, snap.pagesOf(gone))].map((x) => [x.pages, x.verdict]);
      expect(runs).toEqual([[8, 'data'], [8, 'unreadable']]);
    } finally {
      snap.close();
    }
  });

  it('--freeze none: nothing waits on it, so the deleted file is read whole', (ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    const file = join(dir, 'none.psnap');
    const r = cli(['dump', String(fx.pid), '--freeze', 'none', '-o', file]);
    expect(r.code, r.stderr).toBe(0);
    const snap = SnapshotReader.open(file);
    try {
      const gone = snap.process().regions.find((x) => x.path?.endsWith('/gone'))!;
      expect(gone.object).toBeDefined();
      // page 12 was never mapped (nor read by anyone since): it comes from the file, as the server gives it
      const reg = fx.region('fuse-deleted');
      expect(snap.read(snap.process(), gone.start + 12n * 4096n, 4096).equals(patternPage(reg.seed, 12))).toBe(true);
    } finally {
      snap.close();
    }
  });
});
