// A process that serves its own FUSE file system and maps a file from it (a FUSE daemon that maps its own files, or a
// process tree dumped together with its daemon). Frozen, it answers nothing: a dump that asked the file system
// anything after freezing (statfs for the region's kind, stat for the file's stamp, a lookup by name) waited for
// ever, deaf to SIGTERM and Ctrl-C. The fixture caches nothing in the kernel (timeouts 0), so any such question
// reaches the frozen server.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { cli } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'pagesnap-fuse-'));
let fx: Fixture;
let skipWhy: string | undefined;

beforeAll(async () => {
  fx = await Fixture.start(['fuse-self']);
  skipWhy = fx.scenario('fuse-self').skip;
  if (skipWhy) console.log(`SKIP fuse-self: ${skipWhy}`);
});
afterAll(async () => {
  await fx?.stop();
  rmSync(dir, { recursive: true, force: true });
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
    } finally {
      snap.close();
    }
  });
});
