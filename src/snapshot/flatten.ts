/**
 * `flatten`: a self-contained snapshot from an incremental one and its parents. Every page a region or object
 * of the last snapshot refers to is stored once in the new file (pages shared between places stay shared), under
 * the chain's hash seed so the hashes are carried over, not recomputed; runs and everything else are copied.
 */
import { SnapshotReader } from './reader.js';
import { SnapshotWriter, RefSink } from './writer.js';
import { RunSink } from './runs.js';
import { EncodedRegions, type WrittenManifest, type Refs, type SnapshotObject, type SnapshotRegion } from './manifest.js';
import type { RunTable } from './runs.js';

export interface FlattenOptions {
  force?: boolean;
  level?: number;
  framePages?: number;
  threads?: number;
}

export interface FlattenSummary {
  path: string;
  from: string;
  /** the files whose pages were gathered, oldest first */
  chain: string[];
  pagesStored: number;
  fileBytes: number;
}

const BATCH = 2048;
const UNMAPPED = 0xffffffff;

/** Gathers pages out of the chain into the new file, each old stored page once. */
class Regather {
  private readonly map: Uint32Array;
  private readonly buf: Buffer;
  private readonly words = new Uint32Array(2 * BATCH);
  private readonly out = new Uint32Array(BATCH);
  private pending: number[] = [];

  constructor(private readonly reader: SnapshotReader, private readonly writer: SnapshotWriter) {
    this.map = new Uint32Array(reader.totalPages).fill(UNMAPPED);
    this.buf = Buffer.alloc(BATCH * reader.pageSize);
  }

  /** The runs and refs of a region or object, rewritten for the new file. */
  async table(x: SnapshotRegion | SnapshotObject): Promise<{ runs: RunTable; refs: Refs }> {
    const runs = new RunSink(this.writer);
    const refs = new RefSink(this.writer);
    for (const run of this.reader.runsOf(x.runs, this.reader.pagesOf(x))) runs.push(run.offset, run.pages, run.verdict, run.case, run.reason);
    for (const st of this.reader.stretches(x)) {
      if (st.src === undefined) continue;
      for (let i = 0; i < st.pages; i++) {
        const old = st.src + i;
        // (a page met twice within one batch is stored twice over: the writer's deduplication makes it one)
        if (this.map[old] !== UNMAPPED) {
          await this.flush(refs);
          refs.push(this.map[old]!);
        } else {
          this.pending.push(old);
          if (this.pending.length === BATCH) await this.flush(refs);
        }
      }
    }
    await this.flush(refs);
    return { runs: await runs.done(), refs: await refs.done() };
  }

  /** Store the pending pages (the writer deduplicates as it always does) and emit their refs in order. */
  private async flush(refs: RefSink): Promise<void> {
    const n = this.pending.length;
    if (n === 0) return;
    const ps = this.reader.pageSize;
    this.pending.forEach((old, k) => {
      this.reader.page(old).copy(this.buf, k * ps);
      const h = this.reader.hashOf(old);
      this.words[2 * k] = Number(h & 0xffffffffn);
      this.words[2 * k + 1] = Number(h >> 32n);
    });
    await this.writer.store(this.buf.subarray(0, n * ps), n, this.words, this.out);
    this.pending.forEach((old, k) => {
      this.map[old] = this.out[k]!;
      refs.push(this.out[k]!);
    });
    this.pending = [];
  }
}

export async function flatten(input: string, output: string, opts: FlattenOptions = {}): Promise<FlattenSummary> {
  const reader = SnapshotReader.open(input);
  try {
    const m = reader.manifest;
    const writer = SnapshotWriter.create(output, {
      force: opts.force, level: opts.level ?? m.compression.level, framePages: opts.framePages ?? m.compression.framePages,
      threads: opts.threads, pageSize: reader.pageSize, seed: m.hash.seed,
    });
    try {
      const g = new Regather(reader, writer);
      const objects: SnapshotObject[] = [];
      for (const o of m.objects) objects.push({ ...o, ...(await g.table(o)) });
      // (each region's record encoded as soon as it is made, as a dump does: 60000 regions held as objects peaked at 429 MiB)
      const processes: WrittenManifest['processes'] = [];
      for (const p of m.processes) {
        const regions = new EncodedRegions();
        let i = 0;
        for (const r of p.regions) regions.put(i++, { ...r, ...(await g.table(r)) });
        processes.push({ ...p, regions });
      }
      const fileBytes = await writer.finish((frames, hashes, compressed): WrittenManifest => {
        const { parent: _parent, ...rest } = m;
        return {
          ...rest, format: writer.version, id: writer.id, created: m.created, processes, objects, frames, hashes,
          compression: { algorithm: 'zstd', level: writer.level, framePages: writer.framePages },
          stats: { ...m.stats, pagesStored: writer.storedPages, pagesFromParent: 0, bytesRaw: writer.storedPages * writer.pageSize, bytesCompressed: compressed },
        };
      });
      return { path: writer.path, from: input, chain: reader.chain().map((r) => r.path), pagesStored: writer.storedPages, fileBytes };
    } catch (e) {
      await writer.abort();
      throw e;
    }
  } finally {
    reader.close();
  }
}
