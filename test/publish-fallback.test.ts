// Giving a snapshot its name on filesystems this machine does not have: without renameat2(RENAME_NOREPLACE) (FUSE
// without rename2, older network filesystems) the writer links and unlinks; without hard links either (FAT, many
// FUSE and bucket mounts) it checks, then renames. Both are forced here by making those calls fail as such a
// filesystem makes them fail; everything else is the real writer on the real disk.
import { describe, it, expect, vi, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { writeSynthetic } from './helpers/synthetic.js';

const fail = vi.hoisted(() => ({ rename2: false, link: false, calls: [] as string[] }));
const errno = (code: string) => Object.assign(new Error(code), { code });

vi.mock('../src/native/index.js', async (original) => {
  const real = await original<typeof import('../src/native/index.js')>();
  return {
    ...real,
    renameNoReplace: (from: string, to: string) => {
      fail.calls.push('renameat2');
      if (fail.rename2) throw errno('EINVAL');
      return real.renameNoReplace(from, to);
    },
  };
});
vi.mock('node:fs', async (original) => {
  const real = await original<typeof import('node:fs')>();
  return {
    ...real,
    linkSync: (from: string, to: string) => {
      fail.calls.push('link');
      if (fail.link) throw errno('EPERM');
      return real.linkSync(from, to);
    },
  };
});

const dir = mkdtempSync(join(tmpdir(), 'pagesnap-publish-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const leftovers = () => readdirSync(dir).filter((f) => f.endsWith('.tmp'));

describe.each([
  { name: 'without RENAME_NOREPLACE: link, then unlink', rename2: true, link: false, calls: ['renameat2', 'link'] },
  { name: 'without hard links either: check, then rename', rename2: true, link: true, calls: ['renameat2', 'link'] },
  { name: 'with RENAME_NOREPLACE (this machine)', rename2: false, link: false, calls: ['renameat2'] },
])('publishing $name', (c) => {
  it('gives the file its name, and leaves no temporary file', async () => {
    Object.assign(fail, { rename2: c.rename2, link: c.link, calls: [] });
    const path = join(dir, `${c.calls.length}-${c.link}.psnap`);
    await writeSynthetic(path);
    expect(fail.calls).toEqual(c.calls);
    const r = SnapshotReader.open(path);
    expect(r.verify()).toBeNull();
    r.close();
    expect(leftovers()).toEqual([]);
  });

  it('keeps a file that appeared under the name meanwhile', async () => {
    Object.assign(fail, { rename2: c.rename2, link: c.link, calls: [] });
    const path = join(dir, `appeared-${c.calls.length}-${c.link}.psnap`);
    await expect(writeSynthetic(path, {}, () => writeFileSync(path, 'precious'))).rejects.toThrow(/already exists/);
    expect(readFileSync(path, 'utf8')).toBe('precious');
    expect(leftovers()).toEqual([]);
  });
});
