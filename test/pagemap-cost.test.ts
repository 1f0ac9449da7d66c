// The scan path's work follows what is mapped and present, not the virtual size (counted, not timed:
// timings live in bench/).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture } from '../fixtures/driver.js';
import { Pagemap, readRegions } from '../src/proc/index.js';
import { mmap, munmap, view, PROT, MAP, PAGE_IS } from '../src/native/index.js';

describe('pagemap reading cost', () => {
  let fx: Fixture;
  beforeAll(async () => { fx = await Fixture.start(['sparse']); });
  afterAll(async () => { await fx.stop(); });

  const work = (method: 'scan' | 'pread') => {
    const pm = new Pagemap(fx.pid, { method });
    const r = readRegions(fx.pid).find((x) => x.start === fx.region('sparse').start)!;
    const runs = pm.runs(r);
    pm.close();
    return { runs, stats: pm.stats };
  };

  it('64 GiB reserved with 16 pages touched: one scan call, no pagemap entry read', () => {
    const { runs, stats } = work('scan');
    expect(runs.reduce((s, x) => s + x.pages, 0)).toBe(16);
    expect(stats).toEqual({ scanCalls: 1, entriesRead: 0 });
  });

  it('the pread path reads one entry per virtual page of the region', () => {
    const { runs, stats } = work('pread');
    expect(runs.reduce((s, x) => s + x.pages, 0)).toBe(16);
    expect(stats.entriesRead).toBe((64 * 2 ** 30) / 4096);
  });

  it('paginates when more runs exist than one call holds (4096), losing none and repeating none', () => {
    const pages = 16384;
    const p = mmap(pages * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
    try {
      const v = view(p, pages * 4096);
      for (let i = 0; i < pages; i += 2) v[i * 4096] = 1; // 8192 isolated present pages
      const pm = new Pagemap(process.pid, { method: 'scan' });
      const runs = pm.scan(p, p + BigInt(pages) * 4096n, PAGE_IS.PRESENT, PAGE_IS.PRESENT);
      pm.close();
      // 4096 + 4096 (this one fills exactly at the end, where walk_end comes back 1024 pages short) + one that
      // finds nothing after the last region
      expect(pm.stats.scanCalls).toBe(3);
      expect(runs.length).toBe(8192);
      runs.forEach((r, i) => expect(r.start).toBe(p + BigInt(2 * i) * 4096n));
    } finally {
      munmap(p, pages * 4096);
    }
  });
});
