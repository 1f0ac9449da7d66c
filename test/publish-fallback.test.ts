// Giving a snapshot its name on filesystems this machine does not have. Here the file is written unnamed
// (O_TMPFILE) and linked in. Without O_TMPFILE (FAT, FUSE, network mounts) it is written under a hidden name and
// renamed: without renameat2(RENAME_NOREPLACE) too (FUSE without rename2, older network filesystems) the writer
// links and unlinks; without hard links either (FAT, many FUSE and bucket mounts) it checks, then renames. Each is
// forced here by making those calls fail as such a filesystem makes them fail; everything else is the real writer on
// the real disk.
import { describe, it, expect, vi } from 'vitest';
import { readFileSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { O_TMPFILE } from '../src/native/index.js';
import { writeSynthetic } from './helpers/synthetic.js';
import { scratchDir } from './helpers/scratch.js';

const fail = vi.hoisted(() => ({ tmpfile: false, rename2: false, link: false, calls: [] as string[] }));
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
    linkFd: (fd: number, to: string) => {
      fail.calls.push('linkat');
      return real.linkFd(fd, to);
    },
  };
});
vi.mock('node:fs', async (original) => {
  const real = await original<typeof import('node:fs')>();
  return {
    ...real,
    openSync: (path: string, flags: number, mode?: number) => {
      if (fail.tmpfile && typeof flags === 'number' && (flags & O_TMPFILE) === O_TMPFILE) throw errno('EOPNOTSUPP');
      return real.openSync(path, flags, mode);
    },
    linkSync: (from: string, to: string) => {
      fail.calls.push('link');
      if (fail.link) throw errno('EPERM');
      return real.linkSync(from, to);
    },
  };
});

const dir = scratchDir('publish');
const leftovers = () => readdirSync(dir).filter((f) => f.endsWith('.tmp'));

describe.each([
  { name: 'an unnamed file (this machine): linkat', tmpfile: false, rename2: false, link: false, calls: ['linkat'] },
  { name: 'without O_TMPFILE: renameat2 RENAME_NOREPLACE', tmpfile: true, rename2: false, link: false, calls: ['renameat2'] },
  { name: 'without RENAME_NOREPLACE either: link, then unlink', tmpfile: true, rename2: true, link: false, calls: ['renameat2', 'link'] },
  { name: 'without hard links either: check, then rename', tmpfile: true, rename2: true, link: true, calls: ['renameat2', 'link'] },
])('publishing $name', (c) => {
  it('gives the file its name, and leaves no temporary file', async () => {
    Object.assign(fail, { tmpfile: c.tmpfile, rename2: c.rename2, link: c.link, calls: [] });
    const path = join(dir, `${c.name}.psnap`);
    let whileWritten: string[] = [];
    await writeSynthetic(path, {}, () => { whileWritten = readdirSync(dir).filter((f) => f.includes(c.name)); });
    // unnamed, nothing shows in the directory until it is complete; else only a hidden temporary name
    expect(whileWritten).toEqual(c.tmpfile ? [expect.stringMatching(new RegExp(`^\\.${c.name}\\.psnap\\.\\d+\\.[0-9a-f]+\\.tmp$`))] : []);
    expect(fail.calls).toEqual(c.calls);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const r = SnapshotReader.open(path);
    expect(r.verify()).toBeNull();
    r.close();
    expect(leftovers()).toEqual([]);
  });

  it('keeps a file that appeared under the name meanwhile', async () => {
    Object.assign(fail, { tmpfile: c.tmpfile, rename2: c.rename2, link: c.link, calls: [] });
    const path = join(dir, `appeared ${c.name}.psnap`);
    await expect(writeSynthetic(path, {}, () => writeFileSync(path, 'precious'))).rejects.toThrow(/already exists/);
    expect(readFileSync(path, 'utf8')).toBe('precious');
    expect(leftovers()).toEqual([]);
  });

  it('replaces a file with force', async () => {
    Object.assign(fail, { tmpfile: c.tmpfile, rename2: c.rename2, link: c.link, calls: [] });
    const path = join(dir, `forced ${c.name}.psnap`);
    writeFileSync(path, 'old');
    await writeSynthetic(path, { force: true });
    const r = SnapshotReader.open(path);
    expect(r.verify()).toBeNull();
    r.close();
    expect(leftovers()).toEqual([]);
  });
});

describe('on a filesystem without unnamed files, a file being written has a hidden name', () => {
  /** A writer forced onto that path (test/helpers/pending-child.ts), ended by `sig` once it has written. */
  async function ended(sig: NodeJS.Signals): Promise<{ before: string[]; after: string[] }> {
    const path = join(dir, `pending-${sig}.psnap`);
    const p = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'helpers', 'pending-child.ts'), path], { stdio: ['ignore', 'pipe', 'inherit'] });
    await once(p.stdout!, 'data');
    const mine = () => readdirSync(dir).filter((f) => f.includes(`pending-${sig}`));
    const before = mine();
    p.kill(sig);
    await once(p, 'exit');
    return { before, after: mine() };
  }

  it.for(['SIGINT', 'SIGTERM'] as const)('removed when the writer is stopped by %s', async (sig) => {
    const { before, after } = await ended(sig);
    expect(before).toEqual([expect.stringMatching(new RegExp(`^\\.pending-${sig}\\.psnap\\.\\d+\\.[0-9a-f]+\\.tmp$`))]);
    expect(after).toEqual([]);
  });

  it('left when the writer is killed outright (what unnamed files are for), never under the final name', async () => {
    const { before, after } = await ended('SIGKILL');
    expect(after).toEqual(before);
    expect(after).toEqual([expect.stringMatching(/^\.pending-SIGKILL\.psnap\..*\.tmp$/)]);
  });
});
