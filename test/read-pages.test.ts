// Reading process memory in batches, two in flight: a batch that stops short at a page that cannot be read must
// find that page, record it as unreadable with why, and read on — in whichever half of whichever buffer it falls.
// And what a shmem object holds, as the dump reads it: data, allocated holes, holes.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { Fixture, type FixtureRegion } from '../fixtures/driver.js';
import { expectedPage } from '../fixtures/pattern.js';
import { writeSync, closeSync, fstatSync, ftruncateSync } from 'node:fs';
import { ProcessMemory, readProcessSegments, readObjectSegments, type PageSink, type Recorder, type Segment, type SinkPiece } from '../src/dump/pages.js';
import { objectSegments } from '../src/dump/objects.js';
import { memfdCreate, fallocate, MFD } from '../src/native/index.js';
import { requireCachestat, withSwapState, runsOf } from './helpers/kernel.js';

let fx: Fixture;
let guarded: FixtureRegion;
beforeAll(async () => {
  fx = await Fixture.start(['guard']);
  guarded = fx.region('anon-guard');
});
afterAll(() => fx.stop());

/** A sink that keeps what it is given, page by page (the real one hashes and stores). */
function collect() {
  const pages = new Map<number, Buffer>();
  const unreadable = new Map<number, string>();
  /** every page as it was recorded, read or not */
  const order: number[] = [];
  const sink = {
    async put(buf: Buffer, pieces: SinkPiece[]) {
      let o = 0;
      for (const { pages: n, seg, first } of pieces) {
        for (let i = 0; i < n; i++, o++) {
          pages.set(seg.offset + first + i, Buffer.from(buf.subarray(o * 4096, (o + 1) * 4096)));
          order.push(seg.offset + first + i);
        }
      }
    },
    unreadable(seg: Segment, page: number, reason: string) {
      unreadable.set(seg.offset + page, reason);
      order.push(seg.offset + page);
    },
  };
  return { pages, unreadable, order, sink: sink as unknown as PageSink };
}

describe('reading a region whose pages are not all readable', () => {
  // these batch sizes put the guard pages (4..7 of 16) in every place: at the start, inside or at the end of either
  // half of a batch, in one batch or across two
  it.each([1, 2, 3, 5, 6, 7, 10, 12, 16])('with batches of %i pages, by process_vm_readv and by /proc/PID/mem', async (batchPages) => {
    expect(guarded.content.absent).toEqual([[4, 4]]);
    for (const viaMem of [false, true]) {
      const mem = new ProcessMemory(fx.pid);
      const c = collect();
      const bufs = [Buffer.alloc(batchPages * 4096), Buffer.alloc(batchPages * 4096)] as const;
      const segments: Segment[] = [{ offset: 0, pages: guarded.pages, verdict: 'data', case: 'A3' }];
      try {
        await readProcessSegments(mem, [{ start: guarded.start, segments, rec: null as unknown as Recorder }], c.sink, [bufs[0], bufs[1]], viaMem);
      } finally {
        mem.close();
      }
      for (let i = 0; i < guarded.pages; i++) {
        const want = expectedPage(guarded, i);
        if (want.kind === 'bytes') expect(c.pages.get(i)?.equals(want.bytes), `page ${i} viaMem=${viaMem}`).toBe(true);
        else expect(c.unreadable.get(i), `page ${i} viaMem=${viaMem}`).toMatch(viaMem ? /^\/proc\/\d+\/mem: E[A-Z]+$/ : /^process_vm_readv: EFAULT, \/proc\/\d+\/mem: E[A-Z]+$/);
      }
      expect(c.pages.size + c.unreadable.size).toBe(guarded.pages);
    }
  });
});

describe('a shmem object', () => {
  it('is cut into data (SEEK_DATA), fallocated pages never written (S5, by cachestat) and holes (S6)', (ctx) => {
    requireCachestat(ctx);
    const PS = 4096;
    const fd = memfdCreate('pagesnap-falloc', MFD.CLOEXEC);
    try {
      // pages: 0-1 hole, 2-3 data, 4-6 fallocated, 7 data, 8-9 hole, 10 fallocated, 11 hole
      const page = Buffer.alloc(PS, 7);
      for (const p of [2, 3, 7]) writeSync(fd, page, 0, PS, p * PS);
      fallocate(fd, 0, 4 * PS, 3 * PS);
      fallocate(fd, 0, 10 * PS, PS);
      // the last page: allocated, then punched out again (a hole, not cached)
      fallocate(fd, 0, 11 * PS, PS);
      fallocate(fd, 0x02 | 0x01, 11 * PS, PS); // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
      const st = fstatSync(fd);
      const { result: segs, swapped } = withSwapState(fd, 12, () => objectSegments({ fd, key: 'test', dev: st.dev, ino: st.ino, size: st.size, via: 'test' }, 0, 12, PS));
      // a page the machine swapped out meanwhile is data to SEEK_DATA, written or not
      const kind = (i: number): [string, string] => ([2, 3, 7].includes(i) || swapped[i] ? ['data', 'S2'] : [4, 5, 6, 10].includes(i) ? ['hole', 'S5'] : ['hole', 'S6']);
      expect(segs.map((x) => [x.offset, x.pages, x.verdict, x.case])).toEqual(runsOf(Array.from({ length: 12 }, (_, i) => kind(i))));
    } finally {
      closeSync(fd);
    }
  });

  it('has pages here and there read a buffer at a time, and those past a shrink listed as unreadable, in order', async () => {
    const PS = 4096;
    const fd = memfdCreate('pagesnap-scattered', MFD.CLOEXEC);
    try {
      for (let p = 0; p < 40; p++) writeSync(fd, Buffer.alloc(PS, p + 1), 0, PS, p * PS);
      // pieces that fill 4-page buffers at every place: whole, cut across two, one page each
      const data = [[0, 1], [2, 2], [5, 1], [7, 6], [14, 1], [16, 5], [25, 1], [30, 4]];
      const segs: Segment[] = data.map(([offset, pages]) => ({ offset: offset!, pages: pages!, verdict: 'data', case: 'S2' }));
      const wanted = data.flatMap(([o, n]) => Array.from({ length: n! }, (_, i) => o! + i));
      const bufs = [Buffer.alloc(4 * PS), Buffer.alloc(4 * PS)] as const;
      const c = collect();
      await readObjectSegments(fd, 40 * PS, segs, c.sink, null as unknown as Recorder, bufs, PS);
      expect(c.order).toEqual(wanted);
      for (const p of wanted) expect(c.pages.get(p)!.equals(Buffer.alloc(PS, p + 1)), `page ${p}`).toBe(true);
      // shrunk to 17 pages and a few bytes since the segments were taken: page 17 on are unreadable
      ftruncateSync(fd, 17 * PS + 10);
      const shrunk = collect();
      await readObjectSegments(fd, 40 * PS, segs, shrunk.sink, null as unknown as Recorder, bufs, PS);
      expect(shrunk.order).toEqual(wanted);
      expect([...shrunk.pages.keys()]).toEqual(wanted.filter((p) => p < 17));
      expect([...shrunk.unreadable.keys()]).toEqual(wanted.filter((p) => p >= 17));
      expect(new Set(shrunk.unreadable.values())).toEqual(new Set(['pread: end of file (the object shrank)']));
    } finally {
      closeSync(fd);
    }
  });

  it('whose size is not a whole number of pages has its last page read, zeros past the end (as a mapping shows it)', async () => {
    const PS = 4096;
    const fd = memfdCreate('pagesnap-odd-size', MFD.CLOEXEC);
    try {
      // a SysV segment of 56 bytes, any file: 2 pages and 100 bytes
      const bytes = Buffer.alloc(2 * PS + 100, 9);
      writeSync(fd, bytes, 0, bytes.length, 0);
      const size = fstatSync(fd).size;
      const o = { fd, key: 'test', dev: 0, ino: 0, size, via: 'test' };
      const segs = objectSegments(o, 0, 3, PS);
      expect(segs.map((x) => [x.offset, x.pages, x.verdict])).toEqual([[0, 3, 'data']]);
      const c = collect();
      await readObjectSegments(fd, size, segs, c.sink, null as unknown as Recorder, [Buffer.alloc(8 * PS), Buffer.alloc(8 * PS)], PS);
      expect(c.unreadable.size).toBe(0);
      expect(c.pages.get(2)!.equals(Buffer.concat([Buffer.alloc(100, 9), Buffer.alloc(PS - 100)]))).toBe(true);
      // an object that shrank since its segments were taken: the pages past its new end are unreadable, with why
      ftruncateSync(fd, PS + 10);
      const shrunk = collect();
      await readObjectSegments(fd, size, segs, shrunk.sink, null as unknown as Recorder, [Buffer.alloc(8 * PS), Buffer.alloc(8 * PS)], PS);
      expect([...shrunk.pages.keys()]).toEqual([0]);
      expect([...shrunk.unreadable.entries()]).toEqual([[1, 'pread: end of file (the object shrank)'], [2, 'pread: end of file (the object shrank)']]);
    } finally {
      closeSync(fd);
    }
  });
});
