/**
 * Writes a snapshot as it is produced: stored pages are deduplicated (equal XXH3-64 and equal bytes), packed into
 * frames, compressed on worker threads and appended in order; the manifest and footer close the file. The file is
 * built under a temporary name with mode 0600 in the target directory, fsynced, and only then given its final
 * name (never replacing an existing file unless forced): a failed or killed dump leaves nothing under that name.
 */
import { openSync, writeSync, fsyncSync, closeSync, existsSync, linkSync, renameSync, unlinkSync, readSync } from 'node:fs';
import { dirname, basename, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { compress, decompress } from 'zstd-napi';
import { PagesnapError, fromNodeError, xxh3_64, atExit } from '../native/index.js';
import { encodeHeader, encodeFooter, FORMAT_VERSION, HEADER_SIZE } from './format.js';
import { encodeManifest, type FrameIndex, type Manifest } from './manifest.js';
import { CompressPool } from './compress-pool.js';

export interface WriterOptions {
  /** replace an existing file */
  force?: boolean;
  /** zstd level of page frames (1-19) */
  level?: number;
  /** pages per frame: the unit a reader decompresses to get one page */
  framePages?: number;
  threads?: number;
  pageSize?: number;
  /** store identical pages once (default on) */
  dedupe?: boolean;
}

interface PendingFrame {
  index: number;
  /** the uncompressed pages, kept until written so deduplication can compare against them */
  raw: Uint8Array;
  written: Promise<void>;
}

class Growable64 {
  a = new BigUint64Array(1024);
  n = 0;
  push(v: bigint): void {
    if (this.n === this.a.length) {
      const b = new BigUint64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
  done(): BigUint64Array {
    return this.a.slice(0, this.n);
  }
}

class Growable32 {
  a = new Uint32Array(256);
  n = 0;
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Uint32Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
  done(): Uint32Array {
    return this.a.slice(0, this.n);
  }
}

export class SnapshotWriter {
  readonly id = randomBytes(16);
  readonly created = Date.now();
  readonly seed = randomBytes(4).readUInt32LE(0);
  readonly pageSize: number;
  readonly framePages: number;
  readonly level: number;
  readonly tmpPath: string;
  private readonly fd: number;
  private readonly pool: CompressPool;
  private readonly dedupe: boolean;
  private readonly force: boolean;
  private pos = HEADER_SIZE;
  private finished = false;
  /** removes the temporary file if pagesnap ends before the snapshot is complete */
  private readonly forgetTmp: () => void;

  // stored pages: their hashes by stored-page number, and an open-addressing table of (number + 1) by hash
  private readonly hashes = new Growable64();
  private table = new Uint32Array(1 << 16);
  private deduplicated = 0;

  // frames
  private frame: Uint8Array;
  private frameFill = 0;
  private readonly offsets: number[] = [];
  private readonly sizes = new Growable32();
  private readonly firstPages = new Growable32();
  private readonly framePageCounts = new Growable32();
  private readonly pending: PendingFrame[] = [];
  private writeChain: Promise<void> = Promise.resolve();
  private readBack: { index: number; raw: Buffer } | null = null;
  private bytesCompressed = 0;

  private constructor(readonly path: string, opts: WriterOptions) {
    this.pageSize = opts.pageSize ?? 4096;
    this.framePages = opts.framePages ?? 16;
    this.level = opts.level ?? 3;
    this.dedupe = opts.dedupe ?? true;
    this.force = opts.force ?? false;
    this.frame = new Uint8Array(new ArrayBuffer(this.framePages * this.pageSize));
    const dir = dirname(path);
    this.tmpPath = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      this.fd = openSync(this.tmpPath, 'wx', 0o600);
    } catch (e) {
      throw fromNodeError(e, 'open', this.tmpPath);
    }
    this.forgetTmp = atExit(() => this.removeTmp());
    this.pool = new CompressPool(this.level, opts.threads);
    writeSync(this.fd, encodeHeader({ version: FORMAT_VERSION, pageSize: this.pageSize, id: this.id, created: this.created }), 0, HEADER_SIZE, 0);
  }

  /** Fails at once when the final name is taken (and not forced), before any work is done. */
  static create(path: string, opts: WriterOptions = {}): SnapshotWriter {
    const full = resolve(path);
    if (!opts.force && existsSync(full)) {
      throw new PagesnapError(`${path} already exists`, { code: 'EEXIST', hint: 'choose another name or pass --force to replace it' });
    }
    return new SnapshotWriter(full, opts);
  }

  get storedPages(): number {
    return this.hashes.n;
  }

  get dedupedPages(): number {
    return this.deduplicated;
  }

  /**
   * Store `count` pages from `buf` whose hashes are `hashes`; writes each page's stored-page number into `refs`.
   * Resolves once the compression backlog is small enough for memory to stay bounded.
   */
  async store(buf: Uint8Array, count: number, hashes: BigUint64Array, refs: Uint32Array, refsAt = 0): Promise<void> {
    const ps = this.pageSize;
    for (let i = 0; i < count; i++) {
      const h = hashes[i]!;
      const page = buf.subarray(i * ps, (i + 1) * ps);
      const same = this.dedupe ? this.find(h, page) : -1;
      if (same >= 0) {
        refs[refsAt + i] = same;
        this.deduplicated++;
        continue;
      }
      const n = this.hashes.n;
      this.hashes.push(h);
      if (this.dedupe) this.insert(h, n);
      this.frame.set(page, this.frameFill * ps);
      refs[refsAt + i] = n;
      if (++this.frameFill === this.framePages) this.submitFrame();
    }
    while (this.pending.length > 2 * 8) await this.pending[0]!.written;
  }

  private insert(h: bigint, n: number): void {
    if (this.hashes.n * 2 > this.table.length) this.grow();
    const mask = this.table.length - 1;
    let s = Number(h & BigInt(mask));
    while (this.table[s] !== 0) s = (s + 1) & mask;
    this.table[s] = n + 1;
  }

  private grow(): void {
    this.table = new Uint32Array(this.table.length * 2);
    const mask = this.table.length - 1;
    for (let n = 0; n < this.hashes.n - 1; n++) {
      let s = Number(this.hashes.a[n]! & BigInt(mask));
      while (this.table[s] !== 0) s = (s + 1) & mask;
      this.table[s] = n + 1;
    }
  }

  /** A stored page equal to `page` (same hash and same bytes), or -1. */
  private find(h: bigint, page: Uint8Array): number {
    const mask = this.table.length - 1;
    for (let s = Number(h & BigInt(mask)); this.table[s] !== 0; s = (s + 1) & mask) {
      const n = this.table[s]! - 1;
      if (this.hashes.a[n] !== h) continue;
      const bytes = this.storedPage(n);
      if (Buffer.compare(bytes, page) === 0) return n;
    }
    return -1;
  }

  /** The bytes of stored page n: from the frame being filled, a frame in flight, or read back from the file. */
  private storedPage(n: number): Uint8Array {
    const ps = this.pageSize;
    const frameIndex = Math.floor(n / this.framePages);
    const slot = n % this.framePages;
    if (frameIndex === this.offsets.length + this.pending.length) return this.frame.subarray(slot * ps, (slot + 1) * ps);
    const p = this.pending.find((f) => f.index === frameIndex);
    if (p) return p.raw.subarray(slot * ps, (slot + 1) * ps);
    if (this.readBack?.index !== frameIndex) {
      const z = Buffer.alloc(this.sizes.a[frameIndex]!);
      readSync(this.fd, z, 0, z.length, this.offsets[frameIndex]!);
      this.readBack = { index: frameIndex, raw: decompress(z) };
    }
    return this.readBack.raw.subarray(slot * ps, (slot + 1) * ps);
  }

  private submitFrame(): void {
    if (this.frameFill === 0) return;
    const index = this.offsets.length + this.pending.length;
    const pages = this.frameFill;
    const raw = this.frame.subarray(0, pages * this.pageSize);
    const send = new Uint8Array(new ArrayBuffer(raw.length));
    send.set(raw);
    const compressed = this.pool.compress(send);
    const entry: PendingFrame = { index, raw, written: Promise.resolve() };
    entry.written = this.writeChain = this.writeChain.then(async () => {
      const z = await compressed;
      writeSync(this.fd, z, 0, z.length, this.pos);
      this.offsets.push(this.pos);
      this.sizes.push(z.length);
      this.firstPages.push(index * this.framePages);
      this.framePageCounts.push(pages);
      this.pos += z.length;
      this.bytesCompressed += z.length;
      this.pending.shift();
    });
    this.pending.push(entry);
    this.frame = new Uint8Array(new ArrayBuffer(this.framePages * this.pageSize));
    this.frameFill = 0;
  }

  /** Bytes of compressed page data written so far (for progress). */
  get compressedBytes(): number {
    return this.bytesCompressed;
  }

  /**
   * Write the manifest that `build` makes from the frame index and page hashes, then the footer; fsync; give
   * the file its final name. Returns the file's size.
   */
  async finish(build: (frames: FrameIndex, hashes: BigUint64Array, pageBytesCompressed: number) => Manifest): Promise<number> {
    // Every frame but the last is full, so stored-page n lives in frame floor(n / framePages) at slot n % framePages.
    this.submitFrame();
    await this.writeChain;
    await this.pool.close();
    const frames: FrameIndex = {
      offset: Float64Array.from(this.offsets), size: this.sizes.done(), firstPage: this.firstPages.done(), pages: this.framePageCounts.done(),
    };
    const manifest = build(frames, this.hashes.done(), this.bytesCompressed);
    const raw = encodeManifest(manifest);
    const z = compress(raw, { compressionLevel: 9, checksumFlag: true, contentSizeFlag: true });
    writeSync(this.fd, z, 0, z.length, this.pos);
    const footer = encodeFooter({ manifestOffset: this.pos, manifestSize: z.length, manifestRawSize: raw.length, manifestHash: xxh3_64(z, 0) });
    writeSync(this.fd, footer, 0, footer.length, this.pos + z.length);
    const size = this.pos + z.length + footer.length;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.finished = true;
    this.publish();
    this.forgetTmp();
    return size;
  }

  private publish(): void {
    try {
      if (this.force) renameSync(this.tmpPath, this.path);
      else {
        linkSync(this.tmpPath, this.path); // fails with EEXIST instead of replacing what appeared meanwhile
        unlinkSync(this.tmpPath);
      }
    } catch (e) {
      this.removeTmp();
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new PagesnapError(`${this.path} already exists`, { code: 'EEXIST', hint: 'choose another name or pass --force to replace it' });
      throw fromNodeError(e, 'rename', this.path);
    }
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  /** Drop everything written; nothing appears under the final name. Safe to call after finish() or twice. */
  async abort(): Promise<void> {
    if (!this.finished) {
      this.finished = true;
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      await this.pool.close();
    }
    this.removeTmp();
    this.forgetTmp();
  }

  private removeTmp(): void {
    try {
      unlinkSync(this.tmpPath);
    } catch {
      /* not there */
    }
  }
}
