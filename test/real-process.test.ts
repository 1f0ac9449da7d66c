// A real program, not a fixture with known content: a Node process holding live objects (thousands of V8 heap
// regions, repeated pages across them). Stopped, dumped through the CLI, then every page the snapshot says holds
// data or zero is compared with the process's memory as it still is.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, openSync, closeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { startNodeHeap, type NodeHeap } from '../fixtures/node-heap.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { processVmReadv, cachestat } from '../src/native/index.js';
import { requireCachestat } from './helpers/kernel.js';
import { readStat } from '../src/proc/process.js';
import { cliJson, cli } from './helpers/cli.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

const dir = scratchDir('real');
const file = join(dir, 'node.psnap');
let heap: NodeHeap;

beforeAll(async () => {
  heap = await startNodeHeap(256);
  // stopped, so its memory is the snapshot's when compared afterwards (the dump leaves a stopped target stopped)
  process.kill(heap.pid, 'SIGSTOP');
}, 60_000);

afterAll(async () => {
  process.kill(heap.pid, 'SIGKILL');
  await heap.stop();
});

describe('dump of a Node process', () => {
  it('stores every page as the process holds it, and verifies', () => {
    const anonKiB = Number(/^Anonymous:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${heap.pid}/smaps_rollup`, 'utf8'))![1]);
    expect(anonKiB).toBeGreaterThan(200 * 1024); // it holds its objects (not freed by a GC before we look)
    const s = cliJson<{ pagesStored: number; pagesDeduplicated: number; pagesZero: number; regions: number }>(['dump', String(heap.pid), '-o', file]);
    expect(s.regions).toBeGreaterThan(100);
    // every anonymous page the process has is in the snapshot: stored, a repeat of one stored, or a zero page
    expect((s.pagesStored + s.pagesDeduplicated + s.pagesZero) * 4).toBe(anonKiB);
    expect(cli(['verify', file]).stdout).toMatch(/^OK /);

    const r = SnapshotReader.open(file);
    const proc = r.process(heap.pid);
    const live = Buffer.alloc(1 << 20);
    let compared = 0;
    for (const reg of proc.regions) {
      for (const run of r.runsOf(reg.runs, r.pagesOf(reg))) {
        if (run.verdict !== 'data' && run.verdict !== 'zero') continue;
        for (let p = run.offset; p < run.offset + run.pages; p += 256) {
          const n = Math.min(256, run.offset + run.pages - p);
          const at = reg.start + BigInt(p) * 4096n;
          const mine = live.subarray(0, n * 4096);
          expect(processVmReadv(heap.pid, [mine], [{ addr: at, len: mine.length }])).toBe(mine.length);
          const stored = r.read(proc, at, mine.length);
          if (!stored.equals(mine)) throw new Error(`${reg.path ?? reg.kind} 0x${at.toString(16)}+${n} pages differ from the process`);
          compared += n;
        }
      }
    }
    r.close();
    expect(compared).toBeGreaterThanOrEqual(s.pagesStored);
    expect(readStat(heap.pid).state).toBe('T'); // left as it was found: stopped
  }, 60_000);

  it('its table blocks are read ahead at once, not waited for one by one', async (ctx) => {
    requireCachestat(ctx);
    // a fresh file: the first test read its own through
    const fresh = join(dir, 'fresh.psnap');
    cliJson(['dump', String(heap.pid), '-o', fresh]);
    const r = SnapshotReader.open(fresh);
    const fd = openSync(fresh, 'r');
    try {
      const proc = r.process(heap.pid);
      const blocks = proc.regions.flatMap((reg) => [...(Array.isArray(reg.runs) ? [] : reg.runs.blocks), ...(Array.isArray(reg.refs) ? reg.refs : [])]);
      // (most of its 1800 regions keep their few runs and refs inline in the manifest: the long ones have blocks)
      expect(blocks.length).toBeGreaterThan(0);
      const cached = () => blocks.filter((b) => cachestat(fd, b.offset, b.size).cache > 0).length;
      // opening it read the manifest, and read-around may have brought the tables beside it along: drop the file's
      // page cache (dd's nocache is posix_fadvise DONTNEED)
      spawnSync('dd', [`if=${fresh}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
      const before = cached();
      if (before > blocks.length / 2) {
        const why = `${before} of ${blocks.length} blocks stayed in the page cache (the filesystem ignores POSIX_FADV_DONTNEED?)`;
        skipBecause(ctx, ctx.task.name, why);
      }
      r.prefetchTables(proc);
      let after = cached();
      for (let waited = 0; after < blocks.length && waited < 5000; waited += 50) {
        await new Promise((res) => setTimeout(res, 50));
        after = cached();
      }
      expect(after).toBe(blocks.length);
    } finally {
      closeSync(fd);
      r.close();
    }
  }, 30_000);
});
