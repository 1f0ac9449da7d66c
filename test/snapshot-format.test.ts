// The file format: round trip, random access, integrity, atomic publication, and refusal of damaged files.
import { describe, it, expect, beforeAll, vi } from 'vitest';
import { statSync, readdirSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { SnapshotWriter } from '../src/snapshot/writer.js';
import { FrameDecoder } from '../src/snapshot/frame-decoder.js';
import { PagesnapError } from '../src/native/index.js';
import { decodeManifest, encodeManifest, EncodedRegions, RecordHold, type Manifest, type Run, type SnapshotRegion } from '../src/snapshot/manifest.js';
import { firstAbove, lastAtOrBelow } from '../src/snapshot/bisect.js';
import { RecordList } from '../src/snapshot/msgpack-reader.js';
import { writeSynthetic, BASE } from './helpers/synthetic.js';
import { scratchDir } from './helpers/scratch.js';

const dir = scratchDir('format');

describe('round trip', () => {
  let path: string;
  let pages: Buffer[];
  beforeAll(async () => {
    path = join(dir, 'a.psnap');
    ({ pages } = await writeSynthetic(path));
  });

  it('is created 0600 and leaves no temporary file', () => {
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('stores identical pages once and reads every byte back by address', () => {
    const r = SnapshotReader.open(path);
    expect(r.storedPages).toBe(6); // 7 data pages, one repeated
    const p = r.process();
    expect(r.read(p, BASE, 3 * 4096)).toEqual(Buffer.concat(pages.slice(0, 3)));
    expect(r.read(p, BASE + 3n * 4096n, 4 * 4096).every((b) => b === 0)).toBe(true); // zero + hole
    expect(r.read(p, BASE + 8n * 4096n + 100n, 4 * 4096 - 200)).toEqual(Buffer.concat(pages.slice(3)).subarray(100, 4 * 4096 - 100));
    r.close();
  });

  it('refuses bytes it does not hold, naming the page and why', () => {
    const r = SnapshotReader.open(path);
    expect(() => r.read(r.process(), BASE + 7n * 4096n, 1)).toThrow(/page 0x7f0000007000 is not in the snapshot: a clean page of the mapped file.*\[case F2\]/);
    expect(() => r.read(r.process(), BASE + 12n * 4096n, 1)).toThrow(/0x7f000000c000 is not mapped in process 42/);
    expect(() => r.process(7)).toThrow(/holds no process 7/);
    r.close();
  });

  it('verifies', () => {
    const r = SnapshotReader.open(path);
    expect(r.verify()).toBeNull();
    r.close();
  });

  it('never replaces an existing file unless forced', async () => {
    expect(() => SnapshotWriter.create(path)).toThrow(/already exists/);
    const before = readFileSync(path);
    await writeSynthetic(path, { force: true });
    expect(readFileSync(path).equals(before)).toBe(false); // a new id and seed
    expect(SnapshotReader.open(path).verify()).toBeNull();
  });

  it('a file that appears under the final name while the snapshot is written is kept, not replaced', async () => {
    const p2 = join(dir, 'appears.psnap');
    await expect(writeSynthetic(p2, {}, () => writeFileSync(p2, 'precious'))).rejects.toThrow(/appears\.psnap already exists/);
    expect(readFileSync(p2, 'utf8')).toBe('precious');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    rmSync(p2);
  });

  it('an aborted write leaves nothing behind', async () => {
    const p2 = join(dir, 'aborted.psnap');
    const w = SnapshotWriter.create(p2);
    await w.abort();
    expect(existsSync(p2)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('frame decoding', () => {
  it('keeps the frames it goes back to (pages stored once, placed many times) while it streams through others', async () => {
    const path = join(dir, 'frames.psnap');
    await writeSynthetic(path);
    const r = SnapshotReader.open(path);
    try {
      const { paths, frames } = r.frameSource();
      expect(frames.offset.length).toBe(3);
      const want = [0, 1, 2].map((i) => Buffer.from(r.frame(i)));
      // a cache of one frame, visited as a reader placing repeats does: back to frame 0 between every other frame
      const d = new FrameDecoder(paths, frames, r.pageSize, 1);
      let decodes = 0;
      const decodeInto = d.decodeInto.bind(d);
      d.decodeInto = (i, out) => {
        decodes++;
        decodeInto(i, out);
      };
      try {
        for (let k = 0; k < 40; k++) {
          for (const i of [0, 1 + (k % 2)]) expect(d.frame(i).equals(want[i]!)).toBe(true);
        }
      } finally {
        d.close();
      }
      // 0, 1, then 0 again (gone back to: kept from then on), 2, 1 again (kept too); 2 then stays in the one-frame
      // cache, as 0 and 1 come from the other (a cache of one frame alone decodes at every one of the 80 visits)
      expect(decodes).toBe(5);
    } finally {
      r.close();
    }
  });
});

describe('binary search', () => {
  it('finds the first key above x and the last at or below it, at the ends and between equal keys', () => {
    const keys = [2, 4, 4, 7];
    const at = (x: number) => [firstAbove((i) => keys[i]!, keys.length, x), lastAtOrBelow((i) => keys[i]!, keys.length, x)];
    expect([1, 2, 3, 4, 5, 7, 9].map(at)).toEqual([[0, 0], [1, 0], [1, 0], [3, 2], [3, 2], [4, 3], [4, 3]]);
    // (no keys at all)
    expect([firstAbove(() => 0, 0, 5), lastAtOrBelow(() => 0, 0, 5)]).toEqual([0, 0]);
  });
});

describe('manifest decoding', () => {
  let m: Manifest;
  let size: number;
  beforeAll(() => {
    const r = SnapshotReader.open(new URL('../snapshots/golden-v1.psnap', import.meta.url).pathname);
    [m, size] = [r.manifest, r.size];
    r.close();
  });
  /** A counter past 2^53 (a bigint, a number once decoded) leaves a region record to the checked decoding. */
  const checkedOnly = (r: SnapshotRegion) => (r.smaps = { ...r.smaps, Huge: 2n ** 60n as unknown as number });
  /** The golden manifest with its region given these VmFlags lists, one copy of the region each, decoded. */
  const withFlags = (lists: string[][], spoil?: (x: Manifest) => void) => {
    const x = structuredClone(m);
    const r = x.processes[0]!.regions[0]!;
    x.processes[0]!.regions = lists.map((vmFlags) => ({ ...r, vmFlags }));
    spoil?.(x);
    return decodeManifest(encodeManifest(x), 'x.psnap', size).processes[0]!.regions.map((y) => y.vmFlags);
  };

  it('reads the freeze\'s lists (exited, sharers, outsideWriters) back, and names a malformed one', () => {
    const freeze = {
      ...m.freeze, exited: [{ pid: 5 }, { pid: 6, comm: 'sh' }], sharers: [{ pid: 8, comm: 'counter', of: 42 }], outsideWriters: [{ object: 0, pids: [9, 10] }],
    };
    const decode = (f: object) => decodeManifest(encodeManifest({ ...m, freeze: f as Manifest['freeze'] }), 'x.psnap', size).freeze;
    expect(decode(freeze)).toEqual(freeze);
    expect(() => decode({ ...freeze, sharers: [{ pid: 8, of: 42 }] })).toThrow(/x\.psnap: .*freeze.*sharers\.comm/);
    expect(() => decode({ ...freeze, outsideWriters: [{ object: 0, pids: 'all' }] })).toThrow(/x\.psnap: .*freeze.*outsideWriters\.pids/);
  });

  it('gives equal string lists back as one list, and lists that differ as themselves', () => {
    const got = withFlags([['rd', 'wr'], ['rd', 'wr'], ['a b', 'c'], ['a', 'b c'], ['rd', 'wr', 'mr']]);
    expect(got[1]).toBe(got[0]);
    expect(got.slice(1)).toEqual([['rd', 'wr'], ['a b', 'c'], ['a', 'b c'], ['rd', 'wr', 'mr']]);
  });

  it('reads a region record straight from its bytes into what the checked decoding makes of it, for every kind of field', () => {
    const x = structuredClone(m);
    const r = x.processes[0]!.regions[0]!;
    const unreadable = (r.runs as Run[]).map((run): Run => (run.verdict === 'file' ? { ...run, verdict: 'unreadable', case: 'X1', reason: 'EIO' } : run));
    x.objects = [{ id: 7, source: 'memfd', name: '/memfd:cache (deleted)', dev: 1, ino: 2, size: 0, runs: [], refs: new Uint32Array(0) }];
    x.processes[0]!.regions = ([
      r,
      { ...r, path: '/usr/lib/x', deleted: true, kind: 'file-private', backing: 'file', offset: 8192n, inode: 77, file: { size: 5, mtimeNs: -3n } },
      { ...r, mode: 'rw-s', kind: 'shmem-shared', backing: 'shmem', shmem: 'memfd', object: { id: 7, offset: 4096n }, smaps: {} },
      { ...r, runs: unreadable, vmFlags: [] },
    ] as SnapshotRegion[]).map((y, i) => ({ ...y, start: r.start + BigInt(i) * 0x100000n, end: r.end + BigInt(i) * 0x100000n }));
    // (a record the direct reader gives up on is decoded whole: none may be, or the two ways were not compared)
    const decodedWhole = vi.spyOn(RecordList.prototype, 'at');
    const fast = decodeManifest(encodeManifest(x), 'x.psnap', size).processes[0]!.regions;
    expect(decodedWhole).not.toHaveBeenCalled();
    decodedWhole.mockRestore();
    x.processes[0]!.regions.forEach(checkedOnly);
    const checked = decodeManifest(encodeManifest(x), 'x.psnap', size).processes[0]!.regions;
    for (const y of checked) {
      expect(y.smaps.Huge).toBe(2 ** 60);
      delete y.smaps.Huge;
    }
    expect(fast).toEqual(checked);
    expect(fast.map((y) => Object.keys(y))).toEqual(checked.map((y) => Object.keys(y)));
    expect(fast[1]!.file).toEqual({ size: 5, mtimeNs: -3n });
    expect(fast[2]!.object).toEqual({ id: 7, offset: 4096n });
    expect(fast[3]!.runs).toContainEqual(expect.objectContaining({ verdict: 'unreadable', reason: 'EIO' }));
  });

  it('splices records encoded as they come, held while frozen, in address order whatever order they are put in', () => {
    const r = m.processes[0]!.regions[0]!;
    const regions = [0, 1, 2, 3, 4, 5].map((i) => ({ ...r, start: r.start + BigInt(i) * 4096n, end: r.start + BigInt(i + 1) * 4096n, path: `region ${i}` }));
    const hold = new RecordHold(3);
    const records = new EncodedRegions(hold);
    const waited: number[] = [];
    const put = (i: number) => {
      records.put(i, regions[i]!);
      waited.push(hold.waiting);
    };
    put(1); // ahead of region 0: waits for it
    hold.hold(3);
    put(0); // held: frozen
    put(3);
    put(2); // a fourth waiting is past the bound: the hold ends, and all four are encoded
    put(5); // not held: waits for 4
    expect(waited).toEqual([1, 2, 3, 0, 1]);
    hold.release();
    expect(hold.waiting).toBe(1);
    put(4);
    expect(hold.waiting).toBe(0);
    // more records expected than the bound: none held
    const many = new RecordHold(3);
    const none = new EncodedRegions(many);
    many.hold(4);
    none.put(0, regions[0]!);
    expect(many.waiting).toBe(0);
    const plain = { ...m, processes: [{ ...m.processes[0]!, regions }] };
    expect(encodeManifest({ ...plain, processes: [{ ...plain.processes[0]!, regions: records }] })).toEqual(encodeManifest(plain));
    const gap = new EncodedRegions();
    gap.put(1, regions[1]!);
    expect(() => gap.bytes()).toThrow('region 0 was never put');
  });

  it('names where a bad field is', () => {
    expect(() => withFlags([['rd'], ['rd']], (x) => ((x.processes[0]!.regions[1] as { inode: unknown }).inode = 'x'))).toThrow(
      'bad manifest: processes[0].regions[1].inode is not an integer',
    );
    expect(() => withFlags([['rd'], ['rd', 7 as unknown as string]])).toThrow('bad manifest: processes[0].regions[1].vmFlags is not a string');
    // each the same error whether the record is read straight from its bytes or decoded and checked
    const spoils: [(r: SnapshotRegion) => void, string][] = [
      [(r) => ((r.refs as Uint32Array)[1] = 99), 'bad manifest: processes[0].regions[0].refs[1] = 99 names no stored page'],
      [(r) => (r.refs = (r.refs as Uint32Array).subarray(1)), 'refs has 6 entries for 7 data pages'],
      [(r) => (r.refs = Uint32Array.of(...(r.refs as Uint32Array), 0)), 'refs has 8 entries for 7 data pages'],
      [(r) => (r.end = r.start), 'bad manifest: processes[0].regions[0] has a bad range'],
      [(r) => (r.start += 1n), 'has a bad range'],
      [(r) => ((r.runs as { verdict: string }[])[1]!.verdict = 'lost'), 'runs[1] has unknown verdict "lost"'],
      [(r) => ((r.runs as { offset: number }[])[2]!.offset = 0), 'runs[2] overlaps or leaves the range'],
      [(r) => (r.object = { id: 3, offset: 0n }), 'names object 3, which is not in the snapshot'],
      [(r) => ((r as { mode: unknown }).mode = null), 'regions[0].mode is not a string'],
      [(r) => ((r as { path: unknown }).path = undefined), 'regions[0].path is not a string'],
    ];
    for (const checked of [false, true]) {
      for (const [spoil, error] of spoils) {
        const spoilt = () => withFlags([['rd']], (x) => {
          const r = x.processes[0]!.regions[0]!;
          spoil(r);
          if (checked) checkedOnly(r);
        });
        expect(spoilt, `${checked ? 'checked' : 'direct'}: ${error}`).toThrow(error);
      }
    }
  });
});

describe('damaged copies of the golden file give one clear error', () => {
  let good: Buffer;
  const damaged = join(dir, 'damaged.psnap');
  beforeAll(() => {
    good = readFileSync(new URL('../snapshots/golden-v1.psnap', import.meta.url));
  });

  /** Open and verify a mutated copy; the outcome is a PagesnapError message, or 'ok'. */
  function outcome(bytes: Buffer): string {
    writeFileSync(damaged, bytes);
    let r: SnapshotReader | undefined;
    try {
      r = SnapshotReader.open(damaged);
      const bad = r.verify();
      if (bad) return `verify: ${bad.problem} at ${bad.offset}`;
      r.read(r.process(), BASE, 3 * 4096);
      return 'ok';
    } catch (e) {
      if (!(e instanceof PagesnapError)) throw new Error(`not a PagesnapError: ${(e as Error).stack}`);
      return (e as Error).message;
    } finally {
      r?.close();
    }
  }

  it('truncated anywhere', () => {
    for (const len of [0, 10, 63, 64, 100, good.length - 49, good.length - 48, good.length - 1]) {
      expect(outcome(good.subarray(0, len))).toMatch(/truncated|no footer|smaller than an empty snapshot|outside the file/);
    }
  });
  it('wrong magic, future version, bad page size', () => {
    const m = Buffer.from(good); m[0] ^= 0xff;
    expect(outcome(m)).toMatch(/wrong magic: not a pagesnap snapshot \(at byte 0\)/);
    const v = Buffer.from(good); v.writeUInt16LE(9, 8);
    expect(outcome(v)).toMatch(/format version 9 is newer than this pagesnap reads \(3\)/);
    const ps = Buffer.from(good); ps.writeUInt32LE(12345, 12);
    expect(outcome(ps)).toMatch(/implausible page size 12345/);
  });
  it('a directory, a FIFO or a device where a snapshot was expected: one error naming what it is (a FIFO does not block)', () => {
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    for (const [path, what, code] of [[dir, 'a directory', 'EISDIR'], [fifo, 'a FIFO', 'EINVAL'], ['/dev/null', 'a character device', 'EINVAL']] as const) {
      expect(() => SnapshotReader.open(path)).toThrow(`${path} is ${what}, not a snapshot file (${code})`);
    }
    rmSync(fifo);
  });
  it('a flipped byte in a frame is found by verify, with the frame\'s file offset', () => {
    const f = Buffer.from(good); f[64 + 30] ^= 0x40;
    expect(outcome(f)).toMatch(/^verify: .*frame 0 .* at 64$/);
  });
  it('a flipped byte in the manifest fails its checksum', () => {
    const footerAt = good.length - 48;
    const manifestAt = Number(good.readBigUInt64LE(footerAt));
    const f = Buffer.from(good); f[manifestAt + 20] ^= 1;
    expect(outcome(f)).toMatch(/manifest checksum mismatch/);
  });
  it('absurd declared sizes are refused before anything is allocated', () => {
    const footerAt = good.length - 48;
    for (const [field, value, re] of [
      [0, 2n ** 62n, /implausible footer value/], [8, 2n ** 40n, /outside the file/], [16, 2n ** 40n, /implausible manifest size/],
      [0, 0n, /outside the file/], [8, 0n, /outside the file/],
    ] as const) {
      const f = Buffer.from(good); f.writeBigUInt64LE(value, footerAt + field);
      expect(outcome(f)).toMatch(re);
    }
  });
  it('thousands of random mutations: only clear errors, no crash, no large allocation', () => {
    let seed = 12345;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    const rss0 = process.memoryUsage().rss;
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(good);
      const kind = rnd(4);
      if (kind === 0) for (let k = 0, n = 1 + rnd(4); k < n; k++) b[rnd(b.length)] ^= 1 << rnd(8);
      else if (kind === 1) b.writeBigUInt64LE(BigInt(rnd(2 ** 31)) * BigInt(1 + rnd(2 ** 20)), rnd(b.length - 8));
      else if (kind === 2) b.fill(rnd(256), rnd(b.length), rnd(b.length));
      const bytes = kind === 3 ? b.subarray(0, rnd(b.length)) : b;
      seen.add(outcome(bytes).replace(/\d+/g, 'N').slice(0, 60));
    }
    expect(process.memoryUsage().rss - rss0).toBeLessThan(256 << 20);
    expect(seen.size).toBeGreaterThan(5);
  });
});
