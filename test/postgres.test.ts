// A real server, not a fixture: PostgreSQL under pgbench, its processes sharing their buffers (shared anonymous
// memory, in shmem or in hugetlb pages) and a SysV segment, and writing all the while. `dump --tree --precopy` reads most of that while they run;
// what it holds must be what a plain dump of the same frozen moment holds, page for page. The server runs in a
// cgroup of its own, frozen before the precopy dump lets it go: a frozen task stops before it takes a signal, where
// a SIGSTOP sent then would come after a signal already pending (postgres signals its backends all the time), whose
// frame on the stack would differ.
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { existsSync, mkdirSync, rmdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostgres, whyNoPostgres, type Postgres } from '../fixtures/postgres.js';
import { dump } from '../src/dump/dump.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { diffSnapshots } from '../src/analyze/diff.js';
import { cgroup2Mount } from '../src/dump/freeze.js';
import { HostSettings } from '../src/host/settings.js';
import { skipUnlessX64 } from './helpers/scenario.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

// (the postgres account enters it)
const dir = scratchDir('postgres', 0o755);
const mount = cgroup2Mount();
const missing = whyNoPostgres() ?? (mount === null ? 'no cgroup2 mount to hold the server in' : undefined);

// its buffers in shmem, and in hugetlb pages (huge_pages=on: MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB)
describe.each([{ huge: false }, { huge: true }])('dump --tree --precopy of PostgreSQL under pgbench (huge pages: $huge)', ({ huge }) => {
  const group = join(mount ?? '/', `pagesnap-postgres-${process.pid}-${huge ? 'huge' : 'shmem'}`);
  let pg: Postgres | undefined;
  let host: HostSettings | undefined;
  let skip = missing;

  beforeAll(async () => {
    if (skip) return;
    if (huge) {
      host = new HostSettings();
      // (96 MiB of buffers need some 150 MiB of shared memory in all)
      const why = host.reserveHugepages(96);
      if (why) return void (skip = `no hugetlb pages for its buffers: ${why}`);
    }
    mkdirSync(group);
    const home = join(dir, huge ? 'huge' : 'shmem');
    mkdirSync(home, { mode: 0o755 });
    pg = await startPostgres(home, { sharedBuffersMiB: 96, scale: 4, clients: 3, hugePages: huge, cgroup: group });
  }, 120_000);

  afterAll(async () => {
    if (existsSync(group)) writeFileSync(join(group, 'cgroup.freeze'), '0');
    await pg?.stop();
    if (existsSync(group)) rmdirSync(group);
    host?.restore();
  }, 60_000);

  it('holds what a plain dump of the same frozen moment holds, page for page', async (ctx: TestContext) => {
    if (skip) {
      skipBecause(ctx, 'PostgreSQL', skip);
    }
    skipUnlessX64(ctx, 'precopy');
    const postmaster = pg!.postmaster;
    const pre = join(dir, `${huge ? 'huge' : 'shmem'}-precopy.psnap`);
    const plain = join(dir, `${huge ? 'huge' : 'shmem'}-plain.psnap`);
    let tree: readonly number[] = [];
    const s = await dump([postmaster], {
      output: pre, tree: true, precopy: true,
      beforeThaw: (pids) => {
        tree = pids;
        writeFileSync(join(group, 'cgroup.freeze'), '1');
      },
    });
    try {
      while (!/^frozen 1$/m.test(readFileSync(join(group, 'cgroup.events'), 'utf8'))) await sleep(2);
      // (frozen targets are read as they are, and left frozen)
      await dump([postmaster], { output: plain, tree: true });
    } finally {
      writeFileSync(join(group, 'cgroup.freeze'), '0');
    }
    expect(tree.length).toBeGreaterThan(5); // postmaster, its helpers, a backend per client
    expect(s.precopySkipped).toEqual([]);
    // the buffers came from the copy, and with them most of the memory (in huge pages, a write has its whole 2 MiB
    // page read again: under pgbench, not most)
    expect(s.pagesPrecopiedShared).toBeGreaterThan(0);
    if (!huge) expect(s.pagesPrecopied).toBeGreaterThan(s.pagesStored / 2);

    const a = SnapshotReader.open(pre);
    const b = SnapshotReader.open(plain);
    try {
      expect(b.manifest.processes.map((p) => p.pid).sort()).toEqual([...tree].sort());
      // (its buffers where they were asked to be)
      const buffers = a.process(postmaster).regions.filter((r) => r.path === (huge ? '/anon_hugepage' : '/dev/zero') && r.deleted);
      expect(buffers.map((r) => r.kind)).toEqual([huge ? 'hugetlb' : 'shmem-shared']);
      for (const pid of tree) {
        const d = diffSnapshots(a, b, { pid });
        const { changed, added, removed, regionsChanged, regionsAdded, regionsRemoved } = d.totals;
        expect({ pid, changed, added, removed, regionsChanged, regionsAdded, regionsRemoved, transitions: d.transitions })
          .toEqual({ pid, changed: 0, added: 0, removed: 0, regionsChanged: 0, regionsAdded: 0, regionsRemoved: 0, transitions: {} });
      }
    } finally {
      a.close();
      b.close();
    }
  }, 120_000);
});
