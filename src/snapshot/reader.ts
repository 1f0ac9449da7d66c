/**
 * Reads a snapshot at random: the manifest once, page frames on demand (a small cache of decompressed frames).
 * Addresses resolve through a region's runs to a stored page, an object page, zeros, or a clear refusal.
 */
import { openSync, readSync, closeSync, fstatSync, existsSync, constants } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { decompress } from 'zstd-napi';
import { PagesnapError, fromNodeError, xxh3_64, scanPages, willNeed } from '../native/index.js';
import { decodeHeader, decodeFooter, zstdFrameContentSize, FormatError, HEADER_SIZE, FOOTER_SIZE, EXIT_DAMAGED_STRUCTURE, type Header, type Footer } from './format.js';
import { decodeManifest, checkRefs, type Block, type FrameIndex, type ParentRef, type Manifest, type Run, type SnapshotObject, type SnapshotProcess, type SnapshotRegion, type Refs, type Hashes } from './manifest.js';
import { FrameDecoder } from './frame-decoder.js';
import { describeFile } from './file-kind.js';
import { lastAtOrBelow } from './bisect.js';
import { unpackRuns, RUN_RECORD, WIDE_RUN_RECORD, type RunTable, type RunBlocks, type RunBlock } from './runs.js';

const FRAME_CACHE = 64;
/** Decoded table blocks kept (64 Ki entries each at most): a few MiB. */
const BLOCK_CACHE = 16;

/** Where one page of a region or object comes from. */
export type PageSource =
  | { kind: 'stored'; page: number }
  | { kind: 'zero'; verdict: 'zero' | 'hole' }
  | { kind: 'absent'; run: Run };

/** Per run: how many data pages precede it (so a page's ref index is found without scanning). */
function dataPrefix(runs: Run[]): Uint32Array {
  const p = new Uint32Array(runs.length);
  let n = 0;
  runs.forEach((r, i) => {
    p[i] = n;
    if (r.verdict === 'data') n += r.pages;
  });
  return p;
}

function runAt(runs: Run[], page: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (page < r.offset) hi = mid - 1;
    else if (page >= r.offset + r.pages) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** How deep a chain of incremental snapshots may be: deeper is surely a loop or a mistake. */
const MAX_CHAIN = 64;

/** What to do when a snapshot cannot be opened. */
const OPEN_HINTS: Record<string, string> = {
  ENOENT: 'check the file name',
  EACCES: 'snapshots are readable by their owner only (0600): run as that user, or as root',
};

export class SnapshotReader {
  readonly header: Header;
  readonly manifest: Manifest;
  readonly footer: Footer;
  readonly size: number;
  /** the snapshot this one was dumped against (incremental), opened and checked; null for a full one */
  readonly parent: SnapshotReader | null = null;
  private readonly decoder: FrameDecoder;
  /** the chain's frame index, once asked for (frameSource) */
  private chainFrames: { paths: string[]; frames: FrameIndex } | undefined;
  private readonly blocks = new Map<Block, ArrayBuffer>();
  private readonly runBlocks = new Map<RunBlock, { runs: Run[]; dataPrefix: Uint32Array }>();
  private readonly starts = new WeakMap<Block[], Float64Array>();
  private readonly prefixes = new WeakMap<Run[], Uint32Array>();
  private readonly byStart = new WeakMap<SnapshotProcess, SnapshotRegion[]>();

  private constructor(readonly path: string, private readonly fd: number, depth: number, regions: boolean) {
    this.size = fstatSync(fd).size;
    if (this.size < HEADER_SIZE + FOOTER_SIZE) throw new FormatError(path, `truncated: ${this.size} bytes is smaller than an empty snapshot`);
    this.header = decodeHeader(this.readAt(0, HEADER_SIZE), path);
    const footer = decodeFooter(this.readAt(this.size - FOOTER_SIZE, FOOTER_SIZE), this.size, path);
    this.footer = footer;
    const raw = this.unpack(footer.manifestOffset, footer.manifestSize, footer.manifestRawSize, 'manifest', (z) => {
      if (xxh3_64(z, 0) !== footer.manifestHash) throw new FormatError(path, 'manifest checksum mismatch', footer.manifestOffset);
    });
    this.manifest = decodeManifest(raw, path, footer.manifestOffset, { regions });
    if (this.manifest.host.pageSize !== this.header.pageSize) throw new FormatError(path, 'header and manifest disagree on the page size');
    if (this.manifest.parent) this.parent = SnapshotReader.openParent(this, this.manifest.parent, depth);
    this.decoder = new FrameDecoder(path, this.manifest.frames, this.header.pageSize, FRAME_CACHE, fd);
  }

  /**
   * Open a snapshot, and the parents an incremental one needs (each checked to be the file it was dumped against;
   * read for their pages only, so their region records are left unread). `regions: false`: this one's too (for a
   * reader that wants only pages and hashes, as a dump against it does).
   */
  static open(path: string, opts: { regions?: boolean } = {}): SnapshotReader {
    return SnapshotReader.openAt(path, 0, opts.regions !== false);
  }

  private static openAt(path: string, depth: number, regions: boolean): SnapshotReader {
    let fd: number;
    try {
      // (non-blocking: opening a FIFO for reading would wait for a writer)
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      const err = fromNodeError(e, 'open', path);
      throw new PagesnapError(`cannot open ${path}: ${(err as { code?: string }).code ?? err.message}`, {
        code: (err as { code?: string }).code, hint: OPEN_HINTS[(err as { code?: string }).code ?? ''], cause: e,
      });
    }
    try {
      const st = fstatSync(fd);
      const code = st.isDirectory() ? 'EISDIR' : 'EINVAL';
      if (!st.isFile()) throw new PagesnapError(`${path} is ${describeFile(st)}, not a snapshot file (${code})`, { code, hint: 'give the path of a snapshot (.psnap) file' });
      return new SnapshotReader(path, fd, depth, regions);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /**
   * The parent an incremental snapshot names: found where it was relative to the child (both moved together), else
   * at its absolute path; refused, naming it, when missing or when it is not the file the child was dumped against.
   */
  private static openParent(child: SnapshotReader, p: ParentRef, depth: number): SnapshotReader {
    if (depth + 1 >= MAX_CHAIN) throw new PagesnapError(`${child.path}: its chain of parents is deeper than ${MAX_CHAIN}`, { code: 'ELOOP' });
    const near = resolve(dirname(child.path), p.path);
    const path = existsSync(near) ? near : p.absolute;
    if (!existsSync(path)) {
      throw new PagesnapError(`${child.path} is incremental, and its parent ${p.path} is missing`, {
        code: 'ENOENT', hint: `put ${basename(p.path)} back beside it (or at ${p.absolute}), or keep a flattened copy (pagesnap flatten)`,
      });
    }
    const parent = SnapshotReader.openAt(path, depth + 1, false);
    if (!parent.manifest.id.equals(p.id) || parent.footer.manifestHash !== p.manifestHash || parent.totalPages !== p.pages) {
      parent.close();
      throw new PagesnapError(`${child.path} is incremental, and its parent ${path} is not the snapshot it was dumped against (replaced or altered)`, {
        code: 'EBADMSG', hint: 'restore the original parent file', exitCode: EXIT_DAMAGED_STRUCTURE,
      });
    }
    return parent;
  }

  close(): void {
    this.decoder?.close();
    closeSync(this.fd);
    this.parent?.close();
  }

  /** The first stored-page number that is this file's own (pages below it are the parent chain's). */
  get base(): number {
    return this.manifest.parent?.pages ?? 0;
  }

  /** Stored pages this file and its parents hold: refs name pages below this. */
  get totalPages(): number {
    return this.base + this.storedPages;
  }

  /** The files of the chain, the oldest first (just this one for a full snapshot). */
  chain(): SnapshotReader[] {
    return [...(this.parent?.chain() ?? []), this];
  }

  /**
   * Every frame of the chain in stored-page order, with the file each is in: what a FrameDecoder over the whole
   * chain takes (the restore's threads open the files themselves). Made once, in shared memory: each thread it is
   * posted to shares it (a snapshot of a TiB has four million frames, 80 MB of index).
   */
  frameSource(): { paths: string[]; frames: FrameIndex } {
    if (this.chainFrames) return this.chainFrames;
    const files = this.chain();
    const all = files.map((r) => r.manifest.frames);
    // (where each file's frames start in the chain's)
    const at = [0];
    for (const f of all) at.push(at.at(-1)! + f.offset.length);
    const cat = <T extends Float64Array | Uint32Array | Uint8Array>(C: { new (b: SharedArrayBuffer): T; BYTES_PER_ELEMENT: number }, put: (out: T, f: FrameIndex, i: number) => void): T => {
      const out = new C(new SharedArrayBuffer(at.at(-1)! * C.BYTES_PER_ELEMENT));
      all.forEach((f, i) => put(out, f, i));
      return out;
    };
    const pick = (k: 'offset' | 'size' | 'firstPage' | 'pages') => (out: Float64Array | Uint32Array, f: FrameIndex, i: number) => out.set(f[k], at[i]);
    this.chainFrames = {
      paths: files.map((r) => r.path),
      frames: {
        offset: cat(Float64Array, pick('offset')), size: cat(Uint32Array, pick('size')), firstPage: cat(Uint32Array, pick('firstPage')),
        pages: cat(Uint32Array, pick('pages')), file: cat(Uint8Array, (out, _f, i) => out.fill(i, at[i], at[i + 1])),
      },
    };
    return this.chainFrames;
  }

  /**
   * Ask the kernel to start reading the run and ref blocks of a process's regions, and of the objects, all at once.
   * A program's regions number in thousands, each with small blocks scattered between the frames: read one after
   * another from a file not in the page cache (just written with O_DIRECT, or the cache reclaimed since), each would
   * wait for the disk in turn.
   */
  prefetchTables(proc: SnapshotProcess): void {
    for (const t of [...proc.regions, ...this.manifest.objects]) {
      if (!Array.isArray(t.runs)) for (const b of t.runs.blocks) willNeed(this.fd, b.offset, b.size);
      if (Array.isArray(t.refs)) for (const b of t.refs) willNeed(this.fd, b.offset, b.size);
    }
  }

  private readAt(offset: number, len: number): Buffer {
    const b = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = readSync(this.fd, b, got, len - got, offset + got);
      if (n === 0) throw new FormatError(this.path, `truncated: wanted ${len} bytes`, offset + got);
      got += n;
    }
    return b;
  }

  /**
   * Read one zstd frame and decompress it, refusing a frame that does not declare exactly `want` bytes before
   * any memory is given to it (a damaged size field must not become a huge allocation).
   */
  private unpack(offset: number, size: number, want: number, what: string, check?: (z: Buffer) => void): Buffer {
    const z = this.readAt(offset, size);
    check?.(z);
    if (zstdFrameContentSize(z) !== want) throw new FormatError(this.path, `${what} does not declare its ${want} bytes`, offset);
    let raw: Buffer;
    try {
      raw = decompress(z);
    } catch (e) {
      throw new FormatError(this.path, `${what} is damaged (${(e as Error).message})`, offset);
    }
    if (raw.length !== want) throw new FormatError(this.path, `${what} holds ${raw.length} bytes, expected ${want}`, offset);
    return raw;
  }

  get pageSize(): number {
    return this.header.pageSize;
  }

  get storedPages(): number {
    const h = this.manifest.hashes;
    return Array.isArray(h) ? h.reduce((s, b) => s + b.count, 0) : h.length;
  }

  frameOfPage(n: number): number {
    return this.decoder.frameOf(n);
  }

  /** Frame i decoded and checked (declared size, then zstd's content checksum). */
  frame(i: number): Buffer {
    return this.decoder.frame(i);
  }

  /** The bytes of stored page n (a view into the frame cache), from whichever file of the chain holds it. */
  page(n: number): Buffer {
    return n < this.base ? this.parent!.page(n) : this.decoder.page(n);
  }

  process(pid?: number): SnapshotProcess {
    const ps = this.manifest.processes;
    if (pid === undefined) {
      if (ps.length === 1) return ps[0]!;
      throw new PagesnapError(`${this.path} holds ${ps.length} processes (${ps.map((p) => p.pid).join(', ')})`, { code: 'EINVAL', hint: 'choose one with --pid' });
    }
    const p = ps.find((x) => x.pid === pid);
    if (!p) throw new PagesnapError(`${this.path} holds no process ${pid} (it has ${ps.map((x) => x.pid).join(', ')})`, { code: 'ESRCH' });
    return p;
  }

  object(id: number): SnapshotObject {
    return this.manifest.objects.find((o) => o.id === id)!;
  }

  /** A table block, decompressed and checked (size declared before decompressing; refs must name stored pages). */
  private block(b: Block, entryBytes: number, what: string): ArrayBuffer {
    const hit = this.blocks.get(b);
    if (hit) return hit;
    const raw = this.unpack(b.offset, b.size, b.count * entryBytes, `${what} block`);
    const ab = new ArrayBuffer(raw.length);
    new Uint8Array(ab).set(raw);
    if (what === 'refs') checkRefs(new Uint32Array(ab), this.totalPages, what, this.path);
    this.blocks.set(b, ab);
    if (this.blocks.size > BLOCK_CACHE) this.blocks.delete(this.blocks.keys().next().value!);
    return ab;
  }

  /** Which block of a table holds entry i, and where in it (binary search over the blocks' first entries). */
  private locate(t: Block[], i: number, what: string): { block: Block; k: number } {
    let starts = this.starts.get(t);
    if (!starts) {
      starts = new Float64Array(t.length + 1);
      t.forEach((b, k) => (starts![k + 1] = starts![k]! + b.count));
      this.starts.set(t, starts);
    }
    const lo = lastAtOrBelow((k) => starts![k]!, t.length, i);
    const block = t[lo]!;
    const k = i - starts[lo]!;
    if (k < 0 || k >= block.count) throw new FormatError(this.path, `${what}: entry ${i} out of range`);
    return { block, k };
  }

  /** Entry i of a table held inline or in blocks. */
  private entry(t: Refs | Hashes, i: number, entryBytes: 4 | 8, what: string): number | bigint {
    if (!Array.isArray(t)) return t[i]!;
    const { block, k } = this.locate(t, i, what);
    return entryBytes === 4 ? new Uint32Array(this.block(block, 4, what))[k]! : new BigUint64Array(this.block(block, 8, what))[k]!;
  }

  /** Entries [from, from+count) of a stored-page table (refs): a view when inline, else a copy across blocks. */
  refRange(t: Refs, from: number, count: number): Uint32Array {
    if (!Array.isArray(t)) return t.subarray(from, from + count);
    const out = new Uint32Array(count);
    for (let done = 0; done < count; ) {
      const { block, k } = this.locate(t, from + done, 'refs');
      const part = new Uint32Array(this.block(block, 4, 'refs'));
      const n = Math.min(count - done, part.length - k);
      out.set(part.subarray(k, k + n), done);
      done += n;
    }
    return out;
  }

  /** XXH3-64 of stored page n. */
  hashOf(n: number): bigint {
    return n < this.base ? this.parent!.hashOf(n) : (this.entry(this.manifest.hashes, n - this.base, 8, 'hashes') as bigint);
  }

  /** Hashes of stored pages [n, n+count), through the chain (a table's blocks are read a block at a time). */
  hashRange(n: number, count: number): BigUint64Array {
    const out = new BigUint64Array(count);
    let done = 0;
    if (n < this.base) {
      const k = Math.min(count, this.base - n);
      out.set(this.parent!.hashRange(n, k));
      done = k;
    }
    const h = this.manifest.hashes;
    while (done < count) {
      const own = n + done - this.base;
      if (!Array.isArray(h)) {
        out.set(h.subarray(own, own + count - done), done);
        break;
      }
      const { block, k } = this.locate(h, own, 'hashes');
      const part = new BigUint64Array(this.block(block, 8, 'hashes'));
      const take = Math.min(count - done, part.length - k);
      out.set(part.subarray(k, k + take), done);
      done += take;
    }
    return out;
  }

  /** Every stored page's hash in the chain, as (page, low 32 bits, high 32 bits), the oldest file first. */
  forEachHash(f: (n: number, lo: number, hi: number) => void): void {
    this.parent?.forEachHash(f);
    const h = this.manifest.hashes;
    const words = (a: ArrayBuffer | BigUint64Array, count: number, first: number) => {
      const w = a instanceof BigUint64Array ? new Uint32Array(a.buffer, a.byteOffset, a.length * 2) : new Uint32Array(a);
      for (let i = 0; i < count; i++) f(first + i, w[2 * i]!, w[2 * i + 1]!);
    };
    if (!Array.isArray(h)) words(h, h.length, this.base);
    else {
      let n = this.base;
      for (const b of h) {
        words(this.block(b, 8, 'hashes'), b.count, n);
        n += b.count;
      }
    }
  }

  /** A run block, loaded and checked, with the data pages before each of its runs. */
  private runBlock(t: RunBlocks, b: RunBlock, totalPages: number): { runs: Run[]; dataPrefix: Uint32Array } {
    const hit = this.runBlocks.get(b);
    if (hit) return hit;
    const got = unpackRuns(this.block(b, b.wide ? WIDE_RUN_RECORD : RUN_RECORD, 'runs'), t, b, totalPages);
    if (typeof got === 'string') throw new FormatError(this.path, `run block ${got}`, b.offset);
    this.runBlocks.set(b, got);
    if (this.runBlocks.size > BLOCK_CACHE) this.runBlocks.delete(this.runBlocks.keys().next().value!);
    return got;
  }

  /** Every run of a table, in order (blocks are loaded one at a time). */
  *runsOf(t: RunTable, totalPages: number): Generator<Run> {
    if (Array.isArray(t)) yield* t;
    else for (const b of t.blocks) yield* this.runBlock(t, b, totalPages).runs;
  }

  /**
   * The runs of a region or object in order, data runs cut into stretches of consecutively stored pages (a
   * deduplicated page starts a new stretch): `src` is the stretch's first stored page.
   */
  *stretches(x: SnapshotRegion | SnapshotObject): Generator<{ run: Run; offset: number; pages: number; src?: number }> {
    let dataBefore = 0;
    for (const run of this.runsOf(x.runs, this.pagesOf(x))) {
      if (run.verdict !== 'data') {
        yield { run, offset: run.offset, pages: run.pages };
        continue;
      }
      const refs = this.refRange(x.refs, dataBefore, run.pages);
      dataBefore += run.pages;
      for (let i = 0; i < run.pages; ) {
        let n = 1;
        while (i + n < run.pages && refs[i + n] === refs[i]! + n) n++;
        yield { run, offset: run.offset + i, pages: n, src: refs[i]! };
        i += n;
      }
    }
  }

  private source(t: RunTable, refs: Refs, page: number, totalPages: number): PageSource | null {
    let runs: Run[];
    let prefix: Uint32Array;
    let before = 0;
    if (Array.isArray(t)) {
      runs = t;
      let p = this.prefixes.get(t);
      if (!p) this.prefixes.set(t, (p = dataPrefix(t)));
      prefix = p;
    } else {
      // the last block whose first run starts at or before the page
      if (t.blocks.length === 0 || t.blocks[0]!.firstOffset > page) return null;
      const b = t.blocks[lastAtOrBelow((k) => t.blocks[k]!.firstOffset, t.blocks.length, page)]!;
      ({ runs, dataPrefix: prefix } = this.runBlock(t, b, totalPages));
      before = b.dataBefore;
    }
    const i = runAt(runs, page);
    if (i < 0) return null;
    const r = runs[i]!;
    if (r.verdict === 'data') return { kind: 'stored', page: this.entry(refs, before + prefix[i]! + page - r.offset, 4, 'refs') as number };
    if (r.verdict === 'zero' || r.verdict === 'hole') return { kind: 'zero', verdict: r.verdict };
    return { kind: 'absent', run: r };
  }

  /** Where page `page` (counted from the region's start) of a region comes from. */
  regionPage(reg: SnapshotRegion, page: number): PageSource {
    const s = this.source(reg.runs, reg.refs, page, this.pagesOf(reg));
    if (!s) return { kind: 'zero', verdict: 'hole' };
    if (s.kind === 'absent' && s.run.verdict === 'object' && reg.object) {
      const o = this.object(reg.object.id);
      const at = Number(reg.object.offset / BigInt(this.pageSize)) + page;
      return this.source(o.runs, o.refs, at, this.pagesOf(o)) ?? { kind: 'zero', verdict: 'hole' };
    }
    return s;
  }

  /** Pages in a region or object. */
  pagesOf(x: SnapshotRegion | SnapshotObject): number {
    return 'end' in x ? Number((x.end - x.start) / BigInt(this.pageSize)) : Math.ceil(x.size / this.pageSize);
  }

  /** The region of `proc` holding address `a` (a binary search: a process can have 60000 regions). */
  regionAt(proc: SnapshotProcess, a: bigint): SnapshotRegion | undefined {
    let regions = this.byStart.get(proc);
    if (!regions) this.byStart.set(proc, (regions = [...proc.regions].sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0))));
    let lo = 0;
    let hi = regions.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (regions[mid]!.start <= a) lo = mid;
      else hi = mid - 1;
    }
    const r = regions[lo];
    return r && r.start <= a && a < r.end ? r : undefined;
  }

  /** The bytes a process saw at [addr, addr+len); refuses (naming the page) bytes the snapshot does not hold. */
  read(proc: SnapshotProcess, addr: bigint, len: number): Buffer {
    const out = Buffer.alloc(len);
    const ps = BigInt(this.pageSize);
    let done = 0;
    while (done < len) {
      const a = addr + BigInt(done);
      const reg = this.regionAt(proc, a);
      if (!reg) throw new PagesnapError(`0x${a.toString(16)} is not mapped in process ${proc.pid}`, { code: 'EFAULT', hint: '`pagesnap show FILE --regions` lists the regions it held' });
      const pageIdx = Number((a - reg.start) / ps);
      const inPage = Number((a - reg.start) % ps);
      const n = Math.min(this.pageSize - inPage, len - done);
      const s = this.regionPage(reg, pageIdx);
      if (s.kind === 'stored') this.page(s.page).copy(out, done, inPage, inPage + n);
      else if (s.kind === 'absent') throw notHeld(reg, reg.start + BigInt(pageIdx) * ps, s.run);
      done += n;
    }
    return out;
  }

  /**
   * Check every frame (zstd checksum, declared size) and every stored page's hash, of this file and of its
   * parents. Returns the first problem with its file and offset, or null.
   */
  verify(onProgress?: (frame: number, frames: number) => void): { file: string; frame: number; page?: number; offset: number; problem: string } | null {
    const files = this.chain();
    const total = files.reduce((n, r) => n + r.manifest.frames.offset.length, 0);
    let done = 0;
    for (const r of files) {
      const bad = r.verifyOwn(() => onProgress?.(++done, total));
      if (bad) return { file: r.path, ...bad };
    }
    return null;
  }

  private verifyOwn(onFrame: () => void): { frame: number; page?: number; offset: number; problem: string } | null {
    const f = this.manifest.frames;
    const seed = this.manifest.hash.seed;
    const out = new BigUint64Array(1 << 16);
    const zero = new Uint8Array(1 << 16);
    for (let i = 0; i < f.offset.length; i++) {
      let raw: Buffer;
      try {
        raw = this.frame(i);
      } catch (e) {
        return { frame: i, offset: f.offset[i]!, problem: (e as Error).message };
      }
      this.decoder.drop(i);
      scanPages(raw, f.pages[i]!, this.pageSize, seed, out, zero);
      for (let k = 0; k < f.pages[i]!; k++) {
        const n = f.firstPage[i]! + k;
        if (zero[k] || out[k] !== this.hashOf(n)) {
          return { frame: i, page: n, offset: f.offset[i]!, problem: `stored page ${n} (slot ${k} of frame ${i}) does not match its hash` };
        }
      }
      onFrame();
    }
    return null;
  }
}

const WHY: Record<string, string> = {
  file: 'a clean page of the mapped file, not stored (dump with --include-file-pages to keep it)',
  guard: 'a guard page: it has no content (access faults)',
  poison: 'a poisoned page: it has no content (access gives SIGBUS)',
  special: 'in a region pagesnap never reads',
  unreadable: 'unreadable at dump time',
  object: 'in an object (shmem, deleted file) the snapshot does not hold',
  retry: 'still migrating when the dump ended',
};

function notHeld(reg: SnapshotRegion, page: bigint, run: Run): PagesnapError {
  const where = reg.path ? ` of ${reg.path}` : '';
  return new PagesnapError(`page 0x${page.toString(16)}${where} is not in the snapshot: ${WHY[run.verdict] ?? run.verdict}${run.reason ? ` (${run.reason})` : ''} [case ${run.case}]`, { code: 'ENODATA' });
}
