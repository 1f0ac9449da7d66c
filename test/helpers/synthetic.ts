import { scanPages } from '../../src/native/index.js';
import { SnapshotWriter, type WriterOptions } from '../../src/snapshot/writer.js';
import type { Manifest, Run, SnapshotRegion } from '../../src/snapshot/manifest.js';
import { patternPage } from '../../fixtures/pattern.js';

export const BASE = 0x7f0000000000n;

/**
 * A small snapshot made by the writer itself (`beforeFinish` runs once the writer has begun): one process, one 12-page region laid out as
 * data(3: seeds 1,2,1 — the third repeats the first) zero(2) hole(2) file(1) data(4: seeds 3,4,5,6), anonymous unless
 * `region` says otherwise.
 */
export async function writeSynthetic(path: string, opts: WriterOptions = {}, beforeFinish?: () => void, region: Partial<SnapshotRegion> = {}): Promise<{ pages: Buffer[] }> {
  const w = SnapshotWriter.create(path, { framePages: 2, ...opts });
  beforeFinish?.();
  const pages = [1, 2, 1, 3, 4, 5, 6].map((s) => patternPage(s, 0));
  const buf = Buffer.concat(pages);
  const hashes = new BigUint64Array(pages.length);
  scanPages(buf, pages.length, 4096, w.seed, hashes, new Uint8Array(pages.length));
  const refs = new Uint32Array(pages.length);
  await w.store(buf, pages.length, new Uint32Array(hashes.buffer), refs);
  const runs: Run[] = [
    { offset: 0, pages: 3, verdict: 'data', case: 'A3' }, { offset: 3, pages: 2, verdict: 'zero', case: 'A2' },
    { offset: 5, pages: 2, verdict: 'hole', case: 'A1' }, { offset: 7, pages: 1, verdict: 'file', case: 'F2' },
    { offset: 8, pages: 4, verdict: 'data', case: 'A3' },
  ];
  await w.finish((frames, h, compressed): Manifest => ({
    format: 1, id: w.id, created: w.created, tool: 'test', host: { kernel: 'test', hostname: 'test', arch: 'x64', pageSize: 4096 },
    hash: { algorithm: 'xxh3-64', seed: w.seed }, freeze: { method: 'none', frozenMs: 0, fuzzy: true },
    compression: { algorithm: 'zstd', level: 3, framePages: 2 },
    processes: [{ pid: 42, ppid: 1, comm: 'synthetic', cmdline: ['synthetic'], uid: 0, regions: [{
      start: BASE, end: BASE + 12n * 4096n, mode: 'rw-p', offset: 0n, dev: '00:00', inode: 0, path: null, deleted: false,
      kind: 'anon-private', backing: 'anon', vmFlags: ['rd', 'wr'], smaps: { Rss: 7 * 4096 }, runs, refs, ...region,
    }] }],
    objects: [], frames, hashes: h,
    stats: { pagesStored: h.length, pagesDeduplicated: w.dedupedPages, pagesZero: 2, pagesHole: 2, pagesFile: 1, pagesShmem: 0, pagesMarker: 0, pagesUnreadable: 0, bytesRaw: h.length * 4096, bytesCompressed: compressed },
  }));
  return { pages };
}
