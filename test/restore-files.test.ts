// Restore and the files a process maps: clean file pages are not in a snapshot, so a restore maps the file again.
// The dump records each file's size and mtime; a restore says which files are no longer as they were, and how many
// pages come from them as they are now. A restore never writes into a file, even when the snapshot holds a shared
// mapping's pages (--include-file-pages). All of it on a disk directory and on a btrfs subvolume, where stat(2) names
// every file's device otherwise than /proc/PID/maps does (a restore took each file there for another one).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, statSync, renameSync, openSync, writeSync, closeSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { cli, cliJson } from './helpers/cli.js';
import { btrfsSubvolume } from './helpers/btrfs.js';
import { writeSynthetic } from './helpers/synthetic.js';
import { planContent, planRegions } from '../src/restore/plan.js';
import { scratchDir } from './helpers/scratch.js';

/** Where the mapped file lies: a fixture scenario's own choice (\$TMPDIR, /var/tmp, /tmp), or a btrfs subvolume. */
const places: { name: string; open(): { dir?: string; remove?(): void } | { skip: string } }[] = [
  { name: 'a disk directory', open: () => ({}) },
  { name: 'a btrfs subvolume', open: btrfsSubvolume },
];

describe.each(places)('restore and mapped files on $name', (place) => {
  const dir = scratchDir('restore-files');
  let fx: Fixture | undefined;
  let skipWhy: string | undefined;
  let removePlace: (() => void) | undefined;
  let path: string;
  let plain: string;
  let full: string;

  beforeAll(async () => {
    const where = place.open();
    if ('skip' in where) {
      skipWhy = where.skip;
      return console.log(`SKIP restore and mapped files on ${place.name}: ${skipWhy}`);
    }
    removePlace = where.remove;
    fx = await Fixture.start(['file-shared'], { tmpdir: where.dir });
    skipWhy = fx.scenario('file-shared').skip;
    if (skipWhy) return console.log(`SKIP file-shared: ${skipWhy}`);
    plain = join(dir, 'plain.psnap');
    full = join(dir, 'full.psnap');
    cliJson(['dump', String(fx.pid), '-o', plain]);
    cliJson(['dump', String(fx.pid), '-o', full, '--include-file-pages']);
    const r = SnapshotReader.open(plain);
    path = r.process().regions.find((x) => x.kind === 'file-shared')!.path!;
    r.close();
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
    removePlace?.();
  });

  /** Restore with --verify; the notes about `path`. */
  function restoreNotes(file: string): string[] {
    const r = cliJson(['restore', file, '--verify', '--no-profile']);
    expect(r.verify.mismatches, JSON.stringify(r.verify.first)).toBe(0);
    return (r.notes as string[]).filter((n) => n.startsWith(`${path} `));
  }

  it('a dump records the size and mtime of every mapped file that has a name', (ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    const r = SnapshotReader.open(plain);
    try {
      const files = r.process().regions.filter((x) => x.backing === 'file' && !x.deleted);
      expect(files.map((x) => x.path)).toContain(path);
      for (const x of files) {
        const st = statSync(x.path!, { bigint: true });
        expect({ path: x.path, file: x.file }).toEqual({ path: x.path, file: { size: Number(st.size), mtimeNs: st.mtimeNs } });
      }
      expect(r.process().regions.filter((x) => x.backing !== 'file' || x.deleted).every((x) => x.file === undefined)).toBe(true);
    } finally {
      r.close();
    }
  });

  it('an unchanged file: no note', (ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    expect(restoreNotes(plain)).toEqual([]);
    expect(restoreNotes(full)).toEqual([]);
  });

  it('a file written since the dump: the note says so and counts the pages that come from it; the file is left as it is', (ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from('NEW!'), 0, 4, 0);
    closeSync(fd);
    const now = readFileSync(path);
    // shared: its 16 pages; private: the 14 clean ones (2 were copied on write and are stored)
    expect(restoreNotes(plain)).toEqual([expect.stringMatching(/ was modified since the dump \(at .*; dumped as of .*\): 30 pages mapped from it come from the file as it is now$/)]);
    // the snapshot holds the shared mapping's 16 pages as they were: they are the file's, and stay as the file has them
    expect(restoreNotes(full)).toEqual([expect.stringMatching(/: 16 pages mapped from it come from the file as it is now$/)]);
    expect(readFileSync(path).equals(now)).toBe(true);
    // diff sees no page change (the file's pages are in neither snapshot), but names the file as changed
    const later = join(dir, 'later.psnap');
    cliJson(['dump', String(fx!.pid), '-o', later]);
    const d = cliJson(['diff', plain, later]);
    const changed = (d.regions as { path: string | null; status: string[] }[]).filter((x) => x.status.includes('file-changed'));
    expect(changed.map((x) => x.path)).toEqual([path, path]);
  });

  it('a file that grew, and a file replaced by another at its path', (ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    truncateSync(path, 17 * 4096);
    expect(restoreNotes(plain)).toEqual([`${path} changed since the dump (65536 bytes then, 69632 now): 30 pages mapped from it come from the file as it is now`]);
    const other = `${path}.new`;
    writeFileSync(other, Buffer.alloc(16 * 4096, 1));
    renameSync(other, path);
    expect(restoreNotes(plain)).toEqual([`${path} is another file than the one the process mapped (replaced since the dump): 30 pages mapped from it come from the file as it is now`]);
  });

  it('a file gone since the dump: its pages are listed as lost (both mappings there again as private memory, those pages poisoned)', (ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    rmSync(path);
    const r = cli(['restore', plain, '--json', '--no-profile']);
    expect(r.code, r.stderr).toBe(0);
    const lost = (JSON.parse(r.stdout).lost as { len: number; why: string }[]).filter((l) => l.why.includes(path));
    expect(lost.reduce((n, l) => n + l.len, 0)).toBe(30 * 4096);
  });

  it('a FIFO where the file was is not opened (nor would a device be): its pages are listed as lost, the rest restored', (ctx) => {
    if (skipWhy) ctx.skip(skipWhy);
    rmSync(path, { force: true });
    expect(spawnSync('mkfifo', [path]).status).toBe(0);
    try {
      const r = cli(['restore', plain, '--json', '--no-profile']);
      expect(r.code, r.stderr).toBe(0);
      const lost = (JSON.parse(r.stdout).lost as { len: number; why: string }[]).filter((l) => l.why === `${path} is not a regular file now`);
      expect(lost.reduce((n, l) => n + l.len, 0)).toBe(30 * 4096);
    } finally {
      rmSync(path);
    }
  });
});

describe('a private mapping of /dev/zero in an older snapshot', () => {
  it('is anonymous memory whose pages recorded as the file\'s are holes, not lost pages', async () => {
    // (pagesnap recorded such a region as a private file mapping, its untouched pages as clean file pages)
    const own = mkdtempSync(join(tmpdir(), 'pagesnap-devzero-'));
    const file = join(own, 'old.psnap');
    try {
      await writeSynthetic(file, {}, undefined, { kind: 'file-private', backing: 'file', path: '/dev/zero', dev: '00:06', inode: 4 });
      const r = SnapshotReader.open(file);
      try {
        const plan = planRegions(r, r.process());
        expect(plan.regions[0]!.place).toEqual({ how: 'anon', fileIsZero: true });
        expect(plan.notes).toEqual([`0x${plan.regions[0]!.region.start.toString(16)} was a private mapping of /dev/zero; it is restored as anonymous memory, without the name (userfaultfd cannot fill a mapping of /dev/zero)`]);
        const content = planContent(r, plan);
        expect({ lost: content.lost, poison: content.counts.poison }).toEqual({ lost: [], poison: 0 });
      } finally {
        r.close();
      }
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });
});
