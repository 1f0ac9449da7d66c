/**
 * Writes snapshots/golden-v3.psnap (format 3): a synthetic region of 2^33 + 4 pages whose run table is in blocks,
 * narrow (12-byte records) up to page 2^32 and wide (20-byte records) past it; refs and hashes in blocks too. Run
 * once; the test suite reads it forever after.
 */
import { rmSync } from 'node:fs';
import { scanPages } from '../src/native/index.js';
import { SnapshotWriter, RefSink } from '../src/snapshot/writer.js';
import { RunSink } from '../src/snapshot/runs.js';
import type { WrittenManifest } from '../src/snapshot/manifest.js';
import { patternPage } from '../fixtures/pattern.js';
import { BASE } from '../test/helpers/synthetic.js';

const out = new URL('../snapshots/golden-v3.psnap', import.meta.url).pathname;
rmSync(out, { force: true });
const w = SnapshotWriter.create(out, { framePages: 2, tableEntries: 2, seed: 3 });
// the third data page repeats the first: stored once
const pages = [1, 2, 1].map((s) => patternPage(s, 0));
const buf = Buffer.concat(pages);
const hashes = new BigUint64Array(pages.length);
scanPages(buf, pages.length, 4096, w.seed, hashes, new Uint8Array(pages.length));
const stored = new Uint32Array(pages.length);
await w.store(buf, pages.length, new Uint32Array(hashes.buffer), stored);
const total = 2 ** 33 + 4;
const runs = new RunSink(w);
runs.push(0, 1, 'data', 'A3');
runs.push(1, 2 ** 32 - 1, 'hole', 'A1');
runs.push(2 ** 32, 1, 'data', 'A3');
runs.push(2 ** 32 + 1, 2, 'zero', 'A2');
runs.push(2 ** 32 + 3, 2 ** 32, 'hole', 'A1');
runs.push(2 ** 33 + 3, 1, 'data', 'A3');
const refs = new RefSink(w);
for (const r of stored) refs.push(r);
const table = { runs: await runs.done(), refs: await refs.done() };
await w.finish((frames, h, compressed): WrittenManifest => ({
  format: w.version, id: w.id, created: w.created, tool: 'golden-v3', host: { kernel: 'test', hostname: 'test', arch: 'x64', pageSize: 4096 },
  hash: { algorithm: 'xxh3-64', seed: w.seed }, freeze: { method: 'none', frozenMs: 0, fuzzy: true },
  compression: { algorithm: 'zstd', level: 3, framePages: 2 },
  processes: [{ pid: 43, ppid: 1, comm: 'vast', cmdline: ['vast'], uid: 0, regions: [{
    start: BASE, end: BASE + BigInt(total) * 4096n, mode: 'rw-p', offset: 0n, dev: '00:00', inode: 0, path: null, deleted: false,
    kind: 'anon-private', backing: 'anon', vmFlags: ['rd', 'wr', 'nr'], smaps: { Rss: 3 * 4096 }, ...table,
  }] }],
  objects: [], frames, hashes: h,
  stats: { pagesStored: h.length, pagesDeduplicated: w.dedupedPages, pagesZero: 2, pagesHole: total - 5, pagesFile: 0, pagesShmem: 0, pagesMarker: 0, pagesUnreadable: 0, bytesRaw: h.length * 4096, bytesCompressed: compressed },
}));
console.log(`wrote ${out}: version ${w.version}`);
