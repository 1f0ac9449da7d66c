/**
 * Page frames out of a snapshot file, decoded into reused buffers: the snapshot reader's page access and the
 * restore streamer's hot path. Each frame is checked before it is trusted: its declared content size first
 * (so a damaged header never sizes an allocation), then zstd's own content checksum while decoding.
 */
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import { mmap, munmap, madvise, view, MAP, MADV, PROT, type Addr } from '../native/index.js';
import { FormatError, zstdFrameContentSize } from './format.js';
import type { FrameIndex } from './manifest.js';
import { lastAtOrBelow } from './bisect.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');

/**
 * A file is mapped once and read through Buffer views of 1 GiB windows (a view costs a microsecond to make,
 * a subarray of one almost nothing). Windows overlap by more than any frame, so a frame never straddles two.
 */
const WINDOW = 1 << 30;
const OVERLAP = 64 << 20;
/**
 * Past this many bytes read through the mapping its pages are unmapped again (MADV_DONTNEED; they stay in the page
 * cache, and a later read maps them back): every page of a mapping read counts in the process's RSS, and a restore
 * maps the file once in each thread, so restoring a 566 MiB snapshot peaked at 1.14 GiB (161–171 MiB with 16 MiB
 * here; 8 MiB took the restore of 1 GiB of bench content from 179 to 153 MiB, and of 60000 regions from 241 to
 * ~225, at the same speed).
 */
const MAPPED_READ = 8 << 20;

/**
 * What the frames decoded more than once may hold, beside the frames decoded once: 8 MiB (32 frames of 64 pages).
 * Restoring a Node process's 136 MiB (a V8 heap: 16433 of its pages repeat others) took 480 ms, its fill workers
 * decoding each of four frames 900 times; 275 ms with it. Content of which an eighth of the pages repeats (`npm run
 * bench restore:repeats`): 1.30× the time of the same without repeats before, 1.06× with it.
 */
const REUSED_BYTES = 8 << 20;

/** Frame i of an LRU cache, now its most recently used. */
function touch(cache: Map<number, Buffer>, i: number): Buffer | undefined {
  const b = cache.get(i);
  if (b) {
    cache.delete(i);
    cache.set(i, b);
  }
  return b;
}

/** One snapshot file of a chain, mapped (or read, where it cannot be). */
class FrameFile {
  readonly fd: number;
  private readonly owned: boolean;
  private readonly size: number;
  private readonly mapped: Addr | null;
  private readonly windows: Buffer[] = [];
  private buf = Buffer.alloc(0);
  /** bytes read through the mapping since its pages were last unmapped */
  private read = 0;

  constructor(readonly path: string, fd?: number) {
    this.owned = fd === undefined;
    this.fd = fd ?? openSync(path, 'r');
    this.size = fstatSync(this.fd).size;
    let mapped: Addr | null = null;
    try {
      if (this.size > 0) mapped = mmap(this.size, PROT.READ, MAP.SHARED, this.fd, 0);
    } catch {
      /* not mappable (a pipe, a filesystem without mmap): read instead */
    }
    this.mapped = mapped;
  }

  close(): void {
    if (this.mapped !== null) munmap(this.mapped, this.size);
    if (this.owned) closeSync(this.fd);
  }

  /** `size` bytes at `off`: a view of the mapping, or read into a reused buffer. */
  bytes(off: number, size: number, what: string): Buffer {
    if (off + size > this.size) throw new FormatError(this.path, `${what} is truncated`, off);
    if (this.mapped !== null && size <= OVERLAP) {
      // (a view taken before stays valid: the file's pages are mapped back as it is read)
      if ((this.read += size) > MAPPED_READ) {
        madvise(this.mapped, this.size, MADV.DONTNEED);
        this.read = size;
      }
      const w = Math.floor(off / WINDOW);
      this.windows[w] ??= view(this.mapped + BigInt(w * WINDOW), Math.min(WINDOW + OVERLAP, this.size - w * WINDOW));
      return this.windows[w]!.subarray(off - w * WINDOW, off - w * WINDOW + size);
    }
    if (this.buf.length < size) this.buf = Buffer.allocUnsafeSlow(Math.max(size, 2 * this.buf.length));
    const z = this.buf.subarray(0, size);
    for (let got = 0; got < size; ) {
      const n = readSync(this.fd, z, got, size - got, off + got);
      if (n === 0) throw new FormatError(this.path, `${what} is truncated`, off);
      got += n;
    }
    return z;
  }
}

/**
 * Frames of one snapshot file, or of a chain of them (an incremental snapshot and its parents): then the index
 * covers every file's frames in stored-page order and says which file each is in.
 */
export class FrameDecoder {
  private readonly dctx = new zstd.DCtx();
  /** frame number → decoded bytes, least recently used first: frames decoded for the first time */
  private readonly cache = new Map<number, Buffer>();
  /**
   * The same for frames decoded again: those holding pages stored once and placed many times (dedupe), which a
   * reader walking addresses goes back to all along while the frames it streams through would push them out.
   */
  private readonly reused = new Map<number, Buffer>();
  private readonly reusedFrames: number;
  /** one bit per frame: decoded before */
  private readonly decoded: Uint8Array;
  private readonly spare: Buffer[] = [];
  private readonly files: FrameFile[];

  /**
   * `cacheFrames`: frames kept of those decoded once; `reusedBytes`: what those decoded again may hold besides (0:
   * they go with the others, as where nothing streams). `fd`: an open descriptor of the (single) file, which stays the
   * caller's.
   */
  constructor(
    paths: string | readonly string[],
    readonly frames: FrameIndex,
    readonly pageSize: number,
    private readonly cacheFrames = 16,
    fd?: number,
    reusedBytes = REUSED_BYTES,
  ) {
    this.files = typeof paths === 'string' ? [new FrameFile(paths, fd)] : paths.map((p) => new FrameFile(p));
    this.decoded = new Uint8Array(Math.ceil(frames.offset.length / 8));
    this.reusedFrames = Math.floor(reusedBytes / ((frames.pages[0] ?? 1) * pageSize));
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  private file(i: number): FrameFile {
    return this.files[this.frames.file?.[i] ?? 0]!;
  }

  get count(): number {
    return this.frames.offset.length;
  }

  /** The frame holding stored page n. */
  frameOf(n: number): number {
    const fp = this.frames.firstPage;
    return lastAtOrBelow((i) => fp[i]!, fp.length, n);
  }

  /** Whether frame i is decoded already (frame(i) would decode nothing, so evict nothing). */
  holds(i: number): boolean {
    return this.cache.has(i) || this.reused.has(i);
  }

  /** Frame i decoded (cached). Throws FormatError naming the frame when it is damaged. */
  frame(i: number): Buffer {
    const hit = touch(this.reused, i) ?? touch(this.cache, i);
    if (hit) return hit;
    const want = this.frames.pages[i]! * this.pageSize;
    let out = this.spare.pop();
    if (!out || out.length < want) out = Buffer.allocUnsafeSlow(Math.max(want, this.frames.pages[0]! * this.pageSize));
    this.decodeInto(i, out);
    const view = out.subarray(0, want);
    const again = (this.decoded[i >> 3]! & (1 << (i & 7))) !== 0;
    this.decoded[i >> 3]! |= 1 << (i & 7);
    const [cache, most] = again && this.reusedFrames > 0 ? [this.reused, this.reusedFrames] : [this.cache, this.cacheFrames];
    cache.set(i, view);
    if (cache.size > most) this.evict(cache, cache.keys().next().value!);
    return view;
  }

  private evict(cache: Map<number, Buffer>, i: number): void {
    const buf = cache.get(i)!;
    cache.delete(i);
    this.spare.push(Buffer.from(buf.buffer, buf.byteOffset, buf.buffer.byteLength - buf.byteOffset));
  }

  /** Forget frame i (a one-pass reader keeps the cache for frames still to come). */
  drop(i: number): void {
    for (const cache of [this.reused, this.cache]) if (cache.has(i)) this.evict(cache, i);
  }

  /** Decode frame i into `out` (at least the frame's size), bypassing the cache. */
  decodeInto(i: number, out: Uint8Array): void {
    const off = this.frames.offset[i]!;
    const want = this.frames.pages[i]! * this.pageSize;
    const file = this.file(i);
    const z = file.bytes(off, this.frames.size[i]!, `frame ${i}`);
    if (zstdFrameContentSize(z) !== want) throw new FormatError(file.path, `frame ${i} does not declare its ${want} bytes`, off);
    let n: number;
    try {
      n = this.dctx.decompress(out.subarray(0, want), z);
    } catch (e) {
      throw new FormatError(file.path, `frame ${i} is damaged (${(e as Error).message})`, off);
    }
    if (n !== want) throw new FormatError(file.path, `frame ${i} holds ${n} bytes, expected ${want}`, off);
  }

  /** Stored pages [n, n+count) split where frames end: each span's frame, first slot in it, and page count. */
  *spans(n: number, count: number): Generator<{ frame: number; slot: number; pages: number; at: number }> {
    for (let at = 0; at < count; ) {
      const frame = this.frameOf(n + at);
      const slot = n + at - this.frames.firstPage[frame]!;
      const pages = Math.min(count - at, this.frames.pages[frame]! - slot);
      yield { frame, slot, pages, at };
      at += pages;
    }
  }

  /** The bytes of stored page n (a view into the cache: valid until the next decode). */
  page(n: number): Buffer {
    const i = this.frameOf(n);
    const slot = n - this.frames.firstPage[i]!;
    return this.frame(i).subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }
}
