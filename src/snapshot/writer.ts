/**
 * Writes a snapshot as it is produced: stored pages are deduplicated (equal XXH3-64 and equal bytes), packed into
 * frames, compressed on worker threads and appended in order; the manifest and footer close the file. The file is
 * built with mode 0600 in the target directory, unnamed where the filesystem allows (PendingFile), fsynced, and
 * only then given its final name (never replacing an existing file unless forced): a failed or killed dump leaves
 * nothing under that name. Or it is sent to standard output as it is made (STANDARD_OUTPUT).
 */
import { lstatSync, type Stats } from 'node:fs';
import { describeFile } from './file-kind.js';
import { resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { compress, decompress } from 'zstd-napi';
import { PagesnapError, xxh3_64 } from '../native/index.js';
import { encodeHeader, encodeFooter, writtenVersion, FORMAT_VERSION } from './format.js';
import { encodeManifest, type Block, type FrameIndex, type WrittenManifest, type Refs } from './manifest.js';
import { DedupeTable } from './dedupe.js';
import { CompressPool, type Slot } from './compress-pool.js';
import { type OutputFile } from './output.js';
import { PendingFile, alreadyExists, requireDirectory, outputError, type Destination } from './pending-file.js';
import { STANDARD_OUTPUT, openStandardOutput } from './standard-output.js';

export interface WriterOptions {
  /** replace an existing file */
  force?: boolean;
  /** zstd level of page frames (1-19) */
  level?: number;
  /** pages per frame: the unit a reader decompresses to get one page (default 64: 256 KiB) */
  framePages?: number;
  threads?: number;
  pageSize?: number;
  /** store identical pages once (default on) */
  dedupe?: boolean;
  /** entries per table block in the file (page hashes, refs); small values only for tests */
  tableEntries?: number;
  /** write an incremental snapshot: pages the parent's chain holds are referenced there, not stored again */
  parent?: WriterParent;
  /** the page-hash seed (default: random; a parent's, or the one of the snapshot being rewritten) */
  seed?: number;
}

export interface WriterParent {
  /** stored pages in the parent's chain: this snapshot's own are numbered from here */
  pages: number;
  /** the chain's page-hash seed (hashes compare only under one seed) */
  seed: number;
  /** a page of the chain with this hash, or -1 (the kernel has no soft-dirty here: hashes decide) */
  find: (lo: number, hi: number) => number;
}

/** Entries per table block: 64 Ki refs (256 KiB) or hashes (512 KiB) before compression. */
export const TABLE_ENTRIES = 1 << 16;

/** A Uint32Array that doubles as it fills (from nothing: a dump makes one per region, most of them small). */
class Growable32 {
  a = EMPTY32;
  n = 0;
  push(v: number): void {
    this.reserve(1);
    this.a[this.n++] = v;
  }
  /** Room for `k` more. */
  reserve(k: number): void {
    if (this.n + k <= this.a.length) return;
    const b = new Uint32Array(Math.max(16, this.a.length * 2, this.n + k));
    b.set(this.a.subarray(0, this.n));
    this.a = b;
  }
  done(): Uint32Array {
    return this.a.slice(0, this.n);
  }
}

const EMPTY32 = new Uint32Array(0);

/** Refs a table may keep inline in the manifest (1 KiB), like a short run table (see INLINE_RUNS). */
export const INLINE_REFS = 256;

/**
 * A table that grows with the target (a region's refs) sent to the file in blocks as it fills, so the dump holds at
 * most one block of it in memory; a short one stays inline.
 */
export class RefSink {
  private readonly refs = new Growable32();
  private readonly blocks: Promise<Block>[] = [];

  constructor(private readonly w: SnapshotWriter) {}

  push(ref: number): void {
    this.refs.push(ref);
    if (this.refs.n === this.w.tableEntries) this.flush();
  }

  /** The refs first, first + 1, …: `count` pages stored one after another. */
  pushRun(first: number, count: number): void {
    while (count > 0) {
      const k = Math.min(count, this.w.tableEntries - this.refs.n);
      this.refs.reserve(k);
      const { a, n } = this.refs;
      for (let i = 0; i < k; i++) a[n + i] = first + i;
      this.refs.n += k;
      first += k;
      count -= k;
      if (this.refs.n === this.w.tableEntries) this.flush();
    }
  }

  private flush(): void {
    const { a, n } = this.refs;
    if (n === 0) return;
    this.blocks.push(this.w.writeTable(new Uint8Array(a.buffer, 0, n * 4), n));
    this.refs.n = 0;
  }

  /** The table: at once when it is inline, like a RunSink's. */
  done(): Refs | Promise<Refs> {
    if (this.blocks.length === 0 && this.refs.n <= Math.min(INLINE_REFS, this.w.tableEntries - 1)) return this.refs.done();
    this.flush();
    return Promise.all(this.blocks);
  }
}

/** Pages per frame: 64 pages (256 KiB) keeps per-frame costs low and one page's read at one small decompression. */
export const DEFAULT_FRAME_PAGES = 64;
/** How much of the frames read back to dedupe stays decompressed (32 frames of the default size) */
const READ_BACK_BYTES = 8 << 20;

/** The frame being filled. */
interface Filling {
  slot: Slot;
  frame: number;
  pages: number;
}

export class SnapshotWriter {
  readonly id = randomBytes(16);
  readonly created = Date.now();
  readonly seed: number;
  readonly pageSize: number;
  /** the first stored-page number of this file's own pages (the parent chain's come before) */
  readonly base: number;
  private readonly parent?: WriterParent;
  readonly framePages: number;
  readonly level: number;
  private readonly file: Destination;
  private readonly pool: CompressPool;
  private readonly dedupe: boolean;
  private readonly force: boolean;
  private finished = false;
  private failure: Error | null = null;

  // stored pages: how many (of this file's own), their hashes (sent to the file in blocks), the deduplication table
  private stored = 0;
  private fromParent = 0;
  private hashBlock: Uint32Array;
  private hashFill = 0;
  private readonly hashBlocks: Promise<Block>[] = [];
  private readonly table = new DedupeTable();
  private deduplicated = 0;
  readonly tableEntries: number;
  /** the format version the header was written with, and the one the file needs (its tables may need a later one) */
  private readonly headerVersion: number;
  private needed: number;

  // frames: shared-memory slots cycle between filling, compressing and writing
  private readonly free: Slot[] = [];
  private readonly slotWaiters: (() => void)[] = [];
  private filling: Filling | null = null;
  private framesStarted = 0;
  /** frames handed to compression and not yet written, by frame index: their input still holds the pages */
  private readonly inFlight = new Map<number, Slot>();
  private readonly offsets: number[] = [];
  private readonly sizes = new Growable32();
  private readonly firstPages = new Growable32();
  private readonly framePageCounts = new Growable32();
  private writeChain: Promise<void> = Promise.resolve();
  /**
   * Frames read back to compare a repeated page, decompressed, the most recently used last: the repeats of a tree's
   * processes (forks of one another) point back into a few dozen frames, in turn (36 PostgreSQL processes: 2591
   * read-backs of 40 frames, 530 ms of decompression while frozen with room for one, 47 with room for 32).
   */
  private readonly readBack = new Map<number, Buffer>();
  private readBackBytes = 0;
  /**
   * Whether a page may be compared with a stored one by reading its frame back from the output (a 256 KiB
   * decompression for one page, and a read when the frame is on disk). Off while targets are frozen for a precopy:
   * there a page is rather stored again than the freeze made longer. (A stream's output gives back only what its
   * buffers still hold, whatever this says: a different limit, for a different reason.)
   */
  readBackToDedupe = true;
  private bytesCompressed = 0;

  private constructor(readonly path: string, opts: WriterOptions, file: Destination) {
    this.pageSize = opts.pageSize ?? 4096;
    this.parent = opts.parent;
    this.base = opts.parent?.pages ?? 0;
    this.seed = opts.parent?.seed ?? opts.seed ?? randomBytes(4).readUInt32LE(0);
    this.framePages = opts.framePages ?? DEFAULT_FRAME_PAGES;
    this.level = opts.level ?? 3;
    this.dedupe = opts.dedupe ?? true;
    this.force = opts.force ?? false;
    this.tableEntries = opts.tableEntries ?? TABLE_ENTRIES;
    this.hashBlock = new Uint32Array(2 * this.tableEntries);
    this.file = file;
    // Enough frames in flight for a whole read batch to be stored without waiting on compression: ~16 MiB of slots.
    const frameBytes = this.framePages * this.pageSize;
    this.pool = new CompressPool(this.level, frameBytes, Math.max(8, Math.ceil((8 << 20) / frameBytes)), opts.threads);
    this.free.push(...this.pool.slots);
    // The first append never waits (the buffers are empty): the header is in place when the constructor returns.
    // A stream's header is gone before the end shows which version the file needs: it claims the newest.
    this.headerVersion = this.needed = path === STANDARD_OUTPUT ? FORMAT_VERSION : writtenVersion(!!opts.parent);
    void this.out.append(this.header());
  }

  private header(): Buffer {
    return encodeHeader({ version: this.needed, pageSize: this.pageSize, id: this.id, created: this.created });
  }

  /** The format version the file is written as: the lowest that reads everything in it (FORMAT.md). */
  get version(): number {
    return this.needed;
  }

  needVersion(version: number): void {
    this.needed = Math.max(this.needed, version);
  }

  /**
   * Fails at once, before any work is done, when the final name cannot be had: taken (and not forced), not a regular
   * file (--force must never put a snapshot in place of /dev/null or a directory), or in no directory. A `path` of
   * STANDARD_OUTPUT sends the snapshot there (refused on a terminal).
   */
  static create(path: string, opts: WriterOptions = {}): SnapshotWriter {
    if (path === STANDARD_OUTPUT) return new SnapshotWriter(path, opts, openStandardOutput());
    const full = resolve(path);
    let st: Stats | undefined;
    try {
      st = lstatSync(full);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw outputError(e, 'stat', path);
    }
    if (st && !st.isFile()) {
      throw new PagesnapError(`${path} is ${describeFile(st)}, not a regular file`, { code: st.isDirectory() ? 'EISDIR' : 'EEXIST', hint: 'give the name of a file to write the snapshot to' });
    }
    if (st && !opts.force) throw alreadyExists(path);
    requireDirectory(path, 'snapshot');
    return new SnapshotWriter(full, opts, new PendingFile(full));
  }

  get storedPages(): number {
    return this.stored;
  }

  get dedupedPages(): number {
    return this.deduplicated;
  }

  /** Pages referenced in the parent's chain instead of stored (incremental snapshots). */
  get parentPages(): number {
    return this.fromParent;
  }

  /**
   * Store the `count` pages at `buf`, none of them all zero, whose XXH3-64 hashes are `words` (low and high 32 bits
   * per page); writes each page's stored-page number into `refs` from `refsAt`. Waits only when every frame slot
   * is busy, which bounds memory whatever the target's size.
   */
  async store(buf: Buffer, count: number, words: Uint32Array, refs: Int32Array | Uint32Array, refsAt = 0): Promise<void> {
    // after a failure or an abort the frame slots may be gone (unmapped): not even a dedupe compare may look at them
    if (this.failure) throw this.failure;
    const ps = this.pageSize;
    // Pages stored one after another are copied into the frame in one go (a copy per page was an eighth of a dump's
    // main thread); until then storedPage finds them in `buf`.
    const run = this.uncopied;
    run.buf = buf;
    run.pages = 0;
    const copyRun = () => {
      if (run.pages === 0) return;
      const f = this.filling!;
      buf.copy(f.slot.input, (f.pages - run.pages) * ps, run.off, run.off + run.pages * ps);
      run.pages = 0;
    };
    try {
      for (let i = 0; i < count; i++) {
        const lo = words[2 * i]!;
        const hi = words[2 * i + 1]!;
        const off = i * ps;
        if (this.parent) {
          const p = this.parent.find(lo, hi);
          if (p >= 0) {
            refs[refsAt + i] = p;
            this.fromParent++;
            copyRun();
            continue;
          }
        }
        if (this.dedupe) {
          const same = this.find(lo, hi, buf, off);
          if (same >= 0) {
            refs[refsAt + i] = same;
            this.deduplicated++;
            copyRun();
            continue;
          }
        }
        const f = this.filling ?? (this.filling = { slot: await this.takeSlot(), frame: this.framesStarted++, pages: 0 });
        const n = this.base + this.stored++;
        this.hashBlock[2 * this.hashFill] = lo;
        this.hashBlock[2 * this.hashFill + 1] = hi;
        if (++this.hashFill === this.tableEntries) this.flushHashes();
        if (this.dedupe) this.table.add(lo, hi, n);
        if (run.pages++ === 0) run.off = off;
        refs[refsAt + i] = n;
        if (++f.pages === this.framePages) {
          copyRun();
          this.submit();
        }
      }
      copyRun();
    } finally {
      run.pages = 0;
    }
  }

  private get out(): OutputFile {
    return this.file.out;
  }

  /** The newest stored pages, not yet copied into the frame being filled: `pages` pages at buf[off]. */
  private readonly uncopied: { buf: Buffer; off: number; pages: number } = { buf: Buffer.alloc(0), off: 0, pages: 0 };

  /** A stored page equal to the page at buf[off] (same hash and same bytes), or -1. */
  private find(lo: number, hi: number, buf: Buffer, off: number): number {
    this.probe.buf = buf;
    this.probe.off = off;
    return this.table.find(lo, hi, this.samePage);
  }

  /** The page being looked up, for samePage (one closure for the writer's life, not one per page). */
  private readonly probe: { buf: Buffer; off: number } = { buf: Buffer.alloc(0), off: 0 };
  private readonly samePage = (n: number): boolean => {
    const stored = this.storedPage(n);
    if (stored === null) return false;
    const [bytes, at] = stored;
    return this.probe.buf.compare(bytes, at, at + this.pageSize, this.probe.off, this.probe.off + this.pageSize) === 0;
  };

  private flushHashes(): void {
    if (this.hashFill === 0) return;
    this.hashBlocks.push(this.writeTable(new Uint8Array(this.hashBlock.buffer, 0, this.hashFill * 8), this.hashFill));
    this.hashFill = 0;
  }

  /**
   * Append a table block (zstd frame of `bytes`, `count` entries) in file order with the frames; `bytes` may be
   * reused as soon as this returns.
   */
  writeTable(bytes: Uint8Array, count: number): Promise<Block> {
    const z = compress(bytes, { compressionLevel: 1, checksumFlag: true, contentSizeFlag: true });
    const block = this.writeChain.then(async () => ({ offset: await this.out.append(z), size: z.length, count }));
    // finish() awaits the block; after an abort nobody does, and its failure (the output closed) is expected
    this.writeChain = block.then(() => undefined, () => undefined);
    return block;
  }

  /**
   * Where the bytes of stored page n are: the frame being filled, a frame in flight, or read back from the file;
   * null when a stream has sent them on (the page is stored again: deduplication reaches back only so far there).
   */
  private storedPage(n: number): [Buffer, number] | null {
    const ps = this.pageSize;
    const own = n - this.base;
    const frame = Math.floor(own / this.framePages);
    const at = (own % this.framePages) * ps;
    const run = this.uncopied;
    const uncopied = this.base + this.stored - run.pages;
    if (n >= uncopied) return [run.buf, run.off + (n - uncopied) * ps];
    if (this.filling?.frame === frame) return [this.filling.slot.input, at];
    const slot = this.inFlight.get(frame);
    if (slot) return [slot.input, at];
    let raw = this.readBack.get(frame);
    if (raw !== undefined) {
      this.readBack.delete(frame);
    } else {
      if (!this.readBackToDedupe) return null;
      const z = this.out.readAt(this.offsets[frame]!, this.sizes.a[frame]!);
      if (z === null) return null;
      raw = decompress(z);
      this.readBackBytes += raw.length;
      for (const [f, b] of this.readBack) {
        if (this.readBackBytes <= READ_BACK_BYTES) break;
        this.readBack.delete(f);
        this.readBackBytes -= b.length;
      }
    }
    this.readBack.set(frame, raw);
    return [raw, at];
  }

  private takeSlot(): Promise<Slot> | Slot {
    if (this.failure) throw this.failure;
    const s = this.free.pop();
    if (s) return s;
    return new Promise<void>((wake) => this.slotWaiters.push(wake)).then(() => this.takeSlot());
  }

  /** Hand the frame being filled to compression; the write chain appends it to the file in frame order. */
  private submit(): void {
    const f = this.filling;
    if (!f || f.pages === 0) return;
    this.filling = null;
    this.inFlight.set(f.frame, f.slot);
    const compressed = this.pool.compress(f.slot, f.pages * this.pageSize);
    this.writeChain = this.writeChain
      .then(async () => {
        const size = await compressed;
        this.offsets.push(await this.out.append(f.slot.output.subarray(0, size)));
        this.sizes.push(size);
        this.firstPages.push(this.base + f.frame * this.framePages);
        this.framePageCounts.push(f.pages);
        this.bytesCompressed += size;
        this.inFlight.delete(f.frame);
        this.free.push(f.slot);
        this.slotWaiters.shift()?.();
      })
      .catch((e: Error) => {
        // Fail every waiter: no slot will ever come back.
        this.failure ??= e;
        for (const w of this.slotWaiters.splice(0)) w();
      });
  }

  /** Once every frame handed to compression so far is compressed and in the file (the frame being filled is not). */
  drained(): Promise<void> {
    return this.writeChain;
  }

  /** Bytes of compressed page data written so far (for progress). */
  get compressedBytes(): number {
    return this.bytesCompressed;
  }

  /**
   * Write the manifest that `build` makes from the frame index and page hashes, then the footer; fsync; give
   * the file its final name. Returns the file's size.
   */
  async finish(build: (frames: FrameIndex, hashes: Block[], pageBytesCompressed: number) => WrittenManifest): Promise<number> {
    // Every frame but the last is full, so own stored-page k lives in frame floor(k / framePages) at slot k % framePages.
    this.submit();
    this.flushHashes();
    const hashes = await Promise.all(this.hashBlocks);
    await this.writeChain;
    await this.pool.close();
    if (this.failure) throw this.failure;
    const frames: FrameIndex = {
      offset: Float64Array.from(this.offsets), size: this.sizes.done(), firstPage: this.firstPages.done(), pages: this.framePageCounts.done(),
    };
    const manifest = build(frames, hashes, this.bytesCompressed);
    const raw = encodeManifest(manifest);
    const z = compress(raw, { compressionLevel: 9, checksumFlag: true, contentSizeFlag: true });
    const manifestOffset = await this.out.append(z);
    await this.out.append(encodeFooter({ manifestOffset, manifestSize: z.length, manifestRawSize: raw.length, manifestHash: xxh3_64(z, 0) }));
    const size = await this.out.finish(this.needed === this.headerVersion ? undefined : { at: 0, bytes: this.header() });
    this.finished = true;
    try {
      this.file.publish(this.force); // (an unnamed file is linked through its open descriptor)
    } finally {
      await this.out.close();
    }
    return size;
  }

  /** Drop everything written; nothing appears under the final name. Safe to call after finish() or twice. */
  async abort(): Promise<void> {
    if (!this.finished) {
      this.finished = true;
      // A store() waiting for a slot must fail, not fill a slot that close() is about to unmap.
      this.failure ??= new Error(`${this.path}: the dump was aborted`);
      for (const w of this.slotWaiters.splice(0)) w();
      await this.out.close().catch(() => {});
      await this.pool.close();
    }
    this.file.discard();
  }
}
