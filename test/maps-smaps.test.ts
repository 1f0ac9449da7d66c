// Parsers against samples recorded from real processes on this kernel (test/samples), plus malformed input; and
// the reading of a live process's smaps as a dump does it.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseMaps, parseMapsLine, parseMapsOf, parseSmaps, classifyRegion, MapsParseError, type MapsEntry } from '../src/proc/index.js';

const sample = (f: string) => readFileSync(new URL(`./samples/${f}`, import.meta.url), 'utf8');
const maps = parseMaps(sample('maps.txt'));
const byName = (n: string | null) => {
  const e = maps.find((m) => m.name === n);
  if (!e) throw new Error(`no entry named ${n}`);
  return e;
};
const kindOf = (e: MapsEntry, flags: string[] = []) => classifyRegion(e, flags);

describe('maps lines', () => {
  it('parses every line of the recorded sample', () => {
    expect(maps.length).toBe(sample('maps.txt').trim().split('\n').length);
  });
  it('keeps names with spaces and parentheses whole', () => {
    const e = byName('/tmp/pagesnap sample dir/my file (1).dat');
    expect(e).toMatchObject({ deleted: false, mode: 'rw-s', perms: { read: true, write: true, exec: false, shared: true }, dev: 'fe:00', offset: 0n });
    expect(e.end - e.start).toBe(0x2000n);
  });
  it('keeps leading spaces of a name (taken by column, not by splitting)', () => {
    expect(byName('  two leading spaces.so').inode).toBe(99);
  });
  it('strips " (deleted)" into a flag and unescapes \\012', () => {
    expect(byName('/tmp/gone.dat').deleted).toBe(true);
    expect(byName('/tmp/new\nline.dat').deleted).toBe(true);
  });
  it('unnamed anonymous mapping has a null name', () => {
    expect(maps.find((m) => m.start === 0x561a25282000n)!.name).toBeNull();
  });
  it('parses a 9-digit offset and vsyscall above the user address space', () => {
    expect(byName('/dev/dri/card0').offset).toBe(0x100000000n);
    expect(byName('[vsyscall]').start).toBe(0xffffffffff600000n);
  });
  it('picks the mappings of one object as a full parse does, not a line whose name or inode only contains it', () => {
    const text = sample('maps.txt');
    for (const e of maps) {
      const key = `${e.dev} ${e.inode}`;
      expect(parseMapsOf(text, key)).toEqual(maps.filter((x) => x.dev === e.dev && x.inode === e.inode));
    }
    const lines = [
      '7f0000000000-7f0000001000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)',
      '7f0000001000-7f0000002000 rw-s 00000000 00:01 12345                      /dev/zero (deleted)',
      '7f0000002000-7f0000003000 rw-p 00000000 fe:00 77                         /tmp/x 00:01 1234',
      '7f0000003000-7f0000004000 rw-s 00001000 00:01 1234                       /dev/zero (deleted)',
    ].join('\n');
    expect(parseMapsOf(lines, '00:01 1234').map((e) => e.start)).toEqual([0x7f0000000000n, 0x7f0000003000n]);
  });
  it('rejects malformed lines with the line number', () => {
    const bad = sample('maps-malformed.txt').split('\n').filter(Boolean);
    for (const [i, l] of bad.entries()) expect(() => parseMapsLine(l, i + 1)).toThrow(MapsParseError);
    expect(() => parseMaps(sample('maps-malformed.txt'))).toThrow(/maps line 1: not a maps line/);
    expect(() => parseMapsLine(bad[1]!, 2)).toThrow(/end is not above start/);
    expect(() => parseMapsLine(bad[4]!, 5)).toThrow(/garbage after inode/);
  });
});

describe('region kinds', () => {
  it('classifies each line form', () => {
    expect(kindOf(byName('[heap]'))).toEqual({ kind: 'heap', backing: 'anon' });
    expect(kindOf(byName('[stack]')).kind).toBe('stack');
    expect(kindOf(byName('[vdso]')).kind).toBe('vdso');
    expect(kindOf(byName('[vvar]')).kind).toBe('vvar');
    expect(kindOf(byName('[vvar_vclock]')).kind).toBe('vvar');
    expect(kindOf(byName('[vsyscall]')).kind).toBe('vsyscall');
    expect(kindOf(byName('/memfd:pagesnap-memfd'))).toEqual({ kind: 'shmem-shared', backing: 'shmem', shmem: 'memfd' });
    expect(kindOf(byName('/dev/zero'))).toEqual({ kind: 'shmem-shared', backing: 'shmem', shmem: 'shared-anon' });
    expect(kindOf(byName('/SYSV00000000'))).toEqual({ kind: 'shmem-shared', backing: 'shmem', shmem: 'sysv' });
    expect(kindOf(maps.find((m) => m.name?.startsWith('/dev/shm/'))!)).toEqual({ kind: 'shmem-shared', backing: 'shmem', shmem: 'tmpfs' });
    expect(kindOf(byName('/memfd:pagesnap-private'))).toEqual({ kind: 'file-private', backing: 'shmem', shmem: 'memfd' });
    expect(kindOf(byName('/tmp/gone.dat'))).toEqual({ kind: 'file-private', backing: 'file' });
    expect(kindOf(byName('/tmp/pagesnap sample dir/my file (1).dat'))).toEqual({ kind: 'file-shared', backing: 'file' });
    expect(kindOf(byName('/tmp/pagesnap sample dir/my file (1).dat'), []).kind).toBe('file-shared');
    expect(classifyRegion(byName('/tmp/pagesnap sample dir/my file (1).dat'), [], 'tmpfs')).toEqual({ kind: 'shmem-shared', backing: 'shmem', shmem: 'tmpfs' });
    expect(kindOf(byName('/anon_hugepage'), ['rd', 'wr', 'ht'])).toEqual({ kind: 'hugetlb', backing: 'hugetlbfs' });
    expect(kindOf(byName('/dev/hugepages/pool'), ['rd', 'wr', 'sh', 'ht']).kind).toBe('hugetlb');
    expect(kindOf(byName('anon_inode:[io_uring]'))).toEqual({ kind: 'kernel-object', backing: 'kernel' });
    expect(kindOf(byName('/dev/dri/card0'), ['rd', 'wr', 'sh', 'io', 'pf'])).toEqual({ kind: 'special', backing: 'device' });
    expect(kindOf(byName('[anon:jit code]')).kind).toBe('anon-private');
    expect(kindOf(byName('[anon_shmem:ring]')).kind).toBe('shmem-shared');
    // mappings the kernel makes: an aio context's ring (a deleted file of an internal mount: no fs type), [uprobes]
    expect(kindOf(byName('/[aio]'))).toEqual({ kind: 'aio-ring', backing: 'kernel' });
    expect(classifyRegion(byName('/[aio]'), [], 'tmpfs').kind).toBe('shmem-shared');
    expect(kindOf(byName('[uprobes]'), ['ex', 'me', 'io', 'dc', 'de'])).toEqual({ kind: 'special', backing: 'kernel' });
    expect(kindOf({ ...byName('[uprobes]'), name: '[sigpage]' })).toEqual({ kind: 'special', backing: 'kernel' });
    expect(kindOf(maps.find((m) => m.start === 0x561a25282000n)!)).toEqual({ kind: 'anon-private', backing: 'anon' });
    // a private mapping of /dev/zero is anonymous memory; a container's /dev is a tmpfs, and its nodes are devices
    const zeroPrivate = maps.find((m) => m.name === '/dev/zero' && !m.perms.shared)!;
    expect(kindOf(zeroPrivate)).toEqual({ kind: 'anon-private', backing: 'anon' });
    expect(classifyRegion(zeroPrivate, [], 'tmpfs')).toEqual({ kind: 'anon-private', backing: 'anon' });
    expect(classifyRegion(byName('/dev/dri/card0'), ['rd', 'wr', 'sh'], 'tmpfs')).toEqual({ kind: 'special', backing: 'device' });
  });
  it('PFNMAP/IO flags win over a name', () => {
    expect(kindOf(byName('/tmp/gone.dat'), ['rd', 'pf']).kind).toBe('special');
  });
});

describe('smaps', () => {
  const entries = parseSmaps(sample('smaps-fixture.txt'));
  it('has one entry per VMA with counters in bytes and VmFlags', () => {
    expect(entries.length).toBeGreaterThan(10);
    const memfd = entries.find((e) => e.name === '/memfd:pagesnap-memfd')!;
    expect(memfd.fields.Size).toBe(16 * 4096);
    expect(memfd.fields.Rss).toBe(8 * 4096);
    expect(memfd.vmFlags).toEqual(expect.arrayContaining(['rd', 'wr', 'sh']));
    const heap = entries.find((e) => e.name === '[heap]');
    if (heap) expect(heap.fields.Anonymous).toBeGreaterThan(0);
    for (const e of entries) {
      expect(e.fields.Size).toBe(Number(e.end - e.start));
      expect(e.vmFlags.length).toBeGreaterThan(0);
      expect(typeof e.fields.THPeligible).toBe('number');
    }
  });
  it('keeps unit-less fields as numbers', () => {
    expect(entries[0]!.fields.THPeligible === 0 || entries[0]!.fields.THPeligible === 1).toBe(true);
  });
  it('rejects a field before any mapping and a malformed field', () => {
    expect(() => parseSmaps('Rss: 4 kB\n')).toThrow(/smaps field before any mapping/);
    const head = '7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n';
    expect(() => parseSmaps(`${head}Rss: lots\n`)).toThrow(/malformed smaps field/);
    expect(parseSmaps(`${head}NewCounter:   12 kB\nVmFlags: rd wr mr mw me ac \n`)[0]).toMatchObject({ fields: { NewCounter: 12288 }, vmFlags: ['rd', 'wr', 'mr', 'mw', 'me', 'ac'] });
    expect(() => parseSmaps(`${head}Rss: 4 MB\n`)).toThrow(/malformed smaps field/);
    expect(() => parseSmaps(`${head}: 4 kB\n`)).toThrow(/malformed smaps field/);
    expect(parseSmaps(`${head}Rss:   4 kB  \nProtectionKey:  0\n`)[0]!.fields).toEqual({ Rss: 4096, ProtectionKey: 0 });
  });
  it('reads a live process\'s smaps as a line-by-line regex reading does', () => {
    const text = readFileSync('/proc/self/smaps', 'utf8');
    const want: Record<string, number>[] = [];
    for (const line of text.split('\n')) {
      if (/^[0-9a-f]+-/.test(line)) want.push({});
      const m = /^(\w+):\s+(\d+)( kB)?$/.exec(line);
      if (m) want[want.length - 1]![m[1]!] = Number(m[2]) * (m[3] ? 1024 : 1);
    }
    expect(parseSmaps(text).map((e) => e.fields)).toEqual(want);
  });
});

describe('smaps read ahead on another thread, as a dump reads it', () => {
  it('gives the regions a plain read gives, and closes the file however it is left', async () => {
    const { spawn } = await import('node:child_process');
    const { readdirSync } = await import('node:fs');
    const { regionBatches, readRegions } = await import('../src/proc/index.js');
    const p = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const pid = p.pid!;
      const batched = [];
      for await (const b of regionBatches(pid)) batched.push(...b);
      expect(batched.map((r) => [r.start, r.kind, r.vmFlags])).toEqual(readRegions(pid).map((r) => [r.start, r.kind, r.vmFlags]));
      const fds = () => readdirSync('/proc/self/fd').length;
      const before = fds();
      for await (const _ of regionBatches(pid)) break;
      expect(fds()).toBe(before);
    } finally {
      p.kill('SIGKILL');
    }
  });

  it('started for the next process while the caller works on this one: the same regions, each closed once it is left', async () => {
    const { spawn } = await import('node:child_process');
    const { readdirSync } = await import('node:fs');
    const { RegionsAhead, readRegions } = await import('../src/proc/index.js');
    const ps = [0, 1, 2].map(() => spawn('sleep', ['30'], { stdio: 'ignore' }));
    try {
      await new Promise((r) => setTimeout(r, 100));
      const pids = ps.map((p) => p.pid!);
      const fds = () => readdirSync('/proc/self/fd').length;
      const before = fds();
      const seen: number[] = [];
      for await (const [pid, regions] of RegionsAhead.each(pids, (p) => p)) {
        // (this one's smaps open, and the next one's being read already)
        expect(fds()).toBe(before + (pid === pids[2] ? 1 : 2));
        const got = [];
        for await (const b of regions) got.push(...b);
        expect(got.map((r) => [r.start, r.kind, r.vmFlags])).toEqual(readRegions(pid).map((r) => [r.start, r.kind, r.vmFlags]));
        seen.push(pid);
      }
      expect(seen).toEqual(pids);
      expect(fds()).toBe(before);
      // left in the middle, or never iterated: nothing stays open
      for await (const [pid] of RegionsAhead.each(pids, (p) => p)) if (pid === pids[0]) break;
      expect(fds()).toBe(before);
      await new RegionsAhead(pids[1]!).close();
      expect(fds()).toBe(before);
      // a process gone by the time its turn comes says so where its regions are read, not before
      ps[2]!.kill('SIGKILL');
      await new Promise((r) => ps[2]!.once('exit', r));
      const gone = new RegionsAhead(pids[2]!);
      await expect((async () => {
        for await (const _ of gone) {
          // (nothing: the process is gone)
        }
      })()).rejects.toThrow(new RegExp(`${pids[2]}`));
      expect(fds()).toBe(before);
    } finally {
      for (const p of ps) p.kill('SIGKILL');
    }
  });
});
