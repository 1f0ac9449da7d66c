/**
 * `npm start`: the main job on a bundled workload. Starts the scenario fixture (anonymous data, zero pages, THP,
 * shmem of every kind, pages pagemap cannot see, guard and userfaultfd markers, private file pages), inspects and
 * audits it, dumps it, shows and verifies the snapshot, reads bytes back from it, restores it into a restore host
 * and verifies every page there, and removes everything it made.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';

const RUN = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const pagesnap = (...args: string[]) => {
  console.log(`\n$ pagesnap ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [RUN, ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exitCode = r.status ?? 1;
};

const fx = await Fixture.start(['anon', 'thp', 'shmem', 'shmem-zapped', 'shmem-pwrite', 'guard', 'uffd-wp', 'poison', 'file-private']);
try {
  console.log(`Started the sample workload: pid ${fx.pid}`);
  for (const s of fx.scenarios) {
    console.log(s.skip ? `  ${s.name}: not built here (${s.skip})` : `  ${s.name}: ${s.regions.map((r) => `${r.name} @${r.start.toString(16)}`).join(', ')}`);
  }
  pagesnap('inspect', String(fx.pid));
  const mixed = fx.region('mixed');
  pagesnap('inspect', String(fx.pid), '--pages', `${mixed.start.toString(16)}+32K`);
  console.log(
    '\nThe shmem-zapped and shmem-pwrite regions hold 16 pages of data each, yet their pagemap is empty (case S2).',
    'audit shows what a dumper that trusts pagemap would lose:',
  );
  pagesnap('audit', String(fx.pid));
  console.log('\npagesnap dump reads such memory from the shmem object, not from pagemap:');
  const dir = mkdtempSync(join(tmpdir(), 'pagesnap-tour-'));
  try {
    const file = join(dir, 'sample.psnap');
    pagesnap('dump', String(fx.pid), '-o', file);
    pagesnap('show', file);
    pagesnap('verify', file);
    pagesnap('cat', file, '--addr', fx.region('shmem-zapped').start.toString(16), '--len', '64', '--hex');
    console.log('\npagesnap restore puts it back into a fresh address space through userfaultfd, and checks every page:');
    pagesnap('restore', file, '--verify', '--no-profile');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  await fx.stop();
}
