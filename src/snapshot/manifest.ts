/**
 * The manifest: everything about a snapshot except the page bytes. msgpack with 64-bit addresses as uint64 and
 * numeric arrays as byte strings of little-endian integers (FORMAT.md gives every field). The decoder checks
 * every field a reader relies on, so a crafted file gives one error line and no crash.
 */
import { MsgpackChunks } from './msgpack-writer.js';
import type { Verdict, CaseId } from '../model/verdict.js';
import type { RegionKind, Backing, ShmemSource, FileStamp } from '../proc/index.js';
import { FormatError } from './format.js';
import { decodeManifestTree, RecordList, type Fields } from './msgpack-reader.js';
import { RUN_RECORD, WIDE_RUN_RECORD, type RunTable, type RunBlock } from './runs.js';

/** A run of pages with one verdict; `offset` and `pages` count pages from the start of the region or object. */
export interface Run {
  offset: number;
  pages: number;
  verdict: Verdict;
  case: CaseId;
  /** why a run is unreadable */
  reason?: string;
}

/**
 * Per-page tables that grow with the target (stored-page numbers, page hashes) live in the file as blocks: zstd
 * frames of little-endian integers, `count` entries each, that the manifest points to. Small snapshots (and
 * golden-v1) may carry them inline instead.
 */
export interface Block {
  offset: number;
  size: number;
  count: number;
}

/** `refs`: one stored-page number (u32) per data page, in address order. */
export type Refs = Uint32Array | Block[];
/** `hashes`: XXH3-64 (u64) of each stored page, by stored-page number. */
export type Hashes = BigUint64Array | Block[];

export const refsCount = (r: Refs | Hashes) => (Array.isArray(r) ? r.reduce((s, b) => s + b.count, 0) : r.length);

export interface SnapshotRegion {
  start: bigint;
  end: bigint;
  mode: string;
  /** file offset of the mapping, bytes */
  offset: bigint;
  dev: string;
  inode: number;
  path: string | null;
  deleted: boolean;
  kind: RegionKind;
  backing: Backing;
  shmem?: ShmemSource;
  vmFlags: string[];
  /** smaps counters (bytes) at dump time */
  smaps: Record<string, number>;
  /** shmem-backed shared mappings: the object holding the content and the object offset of `start` */
  object?: { id: number; offset: bigint };
  /** mappings of a file that has a name: its size and mtime at dump time, so a restore can tell it changed since */
  file?: FileStamp;
  runs: RunTable;
  refs: Refs;
}

export interface SnapshotObject {
  id: number;
  source: ShmemSource | 'hugetlbfs' | 'deleted-file';
  /** what maps showed, e.g. `/memfd:cache (deleted)` */
  name: string;
  dev: number;
  ino: number;
  /** object size in bytes */
  size: number;
  runs: RunTable;
  refs: Refs;
}

export interface SnapshotProcess {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string[];
  uid: number;
  /** its pid in each pid namespace below the dumper's it was in, outermost first (absent: none) */
  nsPids?: number[];
  regions: SnapshotRegion[];
}

/** Where each stored page is: frames hold consecutive stored-page numbers. */
export interface FrameIndex {
  offset: Float64Array;
  size: Uint32Array;
  firstPage: Uint32Array;
  pages: Uint32Array;
  /** for an index over a chain of files (never in a file): which file of the chain each frame is in */
  file?: Uint8Array;
}

export interface DumpStats {
  pagesStored: number;
  pagesDeduplicated: number;
  /** incremental snapshots: pages referenced in the parent's chain */
  pagesFromParent?: number;
  pagesZero: number;
  pagesHole: number;
  pagesFile: number;
  pagesShmem: number;
  pagesMarker: number;
  pagesUnreadable: number;
  bytesRaw: number;
  bytesCompressed: number;
}

/**
 * The snapshot an incremental one was dumped against. Its pages are numbered first: this snapshot's own stored
 * pages start at `pages`, and a ref below that names a page of the parent's chain.
 */
export interface ParentRef {
  /** the parent's snapshot id, and the XXH3-64 of its compressed manifest: that file, unaltered */
  id: Buffer;
  manifestHash: bigint;
  /** where it was: relative to this file's directory, and absolute */
  path: string;
  absolute: string;
  /** stored pages in the parent's whole chain */
  pages: number;
}

/** A process of a dumped tree that exited while it was read; its name when it was read before it went. */
export interface ExitedProcess {
  pid: number;
  comm?: string;
}

/** A process not in the snapshot that ran in the address space of one that is (clone with CLONE_VM): frozen with it. */
export interface SharingProcess {
  pid: number;
  comm: string;
  /** the process of the snapshot whose memory it shares */
  of: number;
}

/** A stored object that processes outside the snapshot, not frozen, mapped writable as it was read. */
export interface OutsideWriters {
  /** the object's id */
  object: number;
  pids: number[];
}

export interface Manifest {
  format: number;
  id: Buffer;
  created: number;
  tool: string;
  host: { kernel: string; hostname: string; arch: string; pageSize: number };
  hash: { algorithm: 'xxh3-64'; seed: number };
  /**
   * `precopy`: the data pages read while the processes ran (dump --precopy) and how long that took; `exited`: members
   * of a tree that exited while the dump read them, so are not in it; `sharers`: processes frozen with them for sharing
   * their memory; `outsideWriters`: objects that processes not frozen may have written as they were read
   */
  freeze: {
    method: string; frozenMs: number; fuzzy: boolean; precopy?: { pages: number; ms: number }; exited?: ExitedProcess[]; sharers?: SharingProcess[];
    outsideWriters?: OutsideWriters[];
  };
  compression: { algorithm: 'zstd'; level: number; framePages: number };
  processes: SnapshotProcess[];
  objects: SnapshotObject[];
  frames: FrameIndex;
  /** hashes of this file's own stored pages (entry i is page parent.pages + i) */
  hashes: Hashes;
  stats: DumpStats;
  parent?: ParentRef;
}

/**
 * Region records made while the processes are frozen, held to be encoded at the thaw: encoding is work the freeze
 * need not wait for (~10 µs a region). Holding costs the heap more than the records (~1.3 KiB each as objects):
 * held ones outlive the young generation's collections, and once encoded they are garbage the old generation grew
 * for. A 60000-region dump peaked 11 MiB higher holding 1024 at a time, 30 MiB higher holding 16384. So records are
 * held only when few enough are expected (`hold`), and if more than `max` come the hold ends there.
 */
export class RecordHold {
  /** records waiting, all processes' */
  waiting = 0;
  private on = false;
  private readonly held = new Set<EncodedRegions>();

  constructor(readonly max = 16384) {}

  /** Hold records from here on if `expected` of them fit. */
  hold(expected: number): void {
    this.on = expected <= this.max;
  }

  /** Encode what waited (the pipeline is still draining the last frames meanwhile), and hold no more. */
  release(): void {
    this.on = false;
    for (const r of this.held) r.encodeWaiting();
    this.held.clear();
  }

  /** Whether the record `r` was just put waits for the release. */
  takes(r: EncodedRegions): boolean {
    if (!this.on) return false;
    this.held.add(r);
    if (this.waiting > this.max) this.release();
    return this.on;
  }
}

/**
 * A process's region records, encoded as the dump makes them (unless `hold` says to wait): held as objects, 60000
 * regions' records were 80 MB of the dump's heap; as msgpack they are 15 MB outside it. They go into the array in
 * address order, whatever order their tables settle in; encodeManifest splices the bytes in.
 */
export class EncodedRegions {
  private readonly out = new MsgpackChunks();
  private next = 0;
  private puts = 0;
  /** records put and not yet encoded, by index: ahead of one still to come, or held */
  private readonly waiting = new Map<number, SnapshotRegion>();

  constructor(private readonly hold = new RecordHold()) {}

  /** How many records were put (all the process's regions, once every `put` has happened). */
  get length(): number {
    return this.puts;
  }

  /** Region `index` of the process, in address order from 0. */
  put(index: number, r: SnapshotRegion): void {
    this.puts++;
    this.waiting.set(index, r);
    this.hold.waiting++;
    if (!this.hold.takes(this)) this.encodeWaiting();
  }

  /** Encode the records waiting from the next in order, as far as they follow on. */
  encodeWaiting(): void {
    for (let x = this.waiting.get(this.next); x; x = this.waiting.get(this.next)) {
      this.waiting.delete(this.next++);
      this.hold.waiting--;
      this.out.write(x);
    }
  }

  bytes(): Buffer[] {
    this.encodeWaiting();
    if (this.waiting.size) throw new Error(`EncodedRegions: region ${this.next} was never put (${this.puts} were)`);
    return this.out.bytes();
  }
}

/** A manifest as written: a process's regions may be records, or records encoded as they were made. */
export type WrittenManifest = Omit<Manifest, 'processes'> & {
  processes: (Omit<SnapshotProcess, 'regions'> & { regions: SnapshotRegion[] | EncodedRegions })[];
};

/**
 * Typed arrays become byte strings (the writer writes a view's bytes, little-endian here as the format wants),
 * block lists arrays of maps; everything else is plain msgpack. The processes' region records encoded as they were
 * made are spliced in.
 */
export function encodeManifest(m: WrittenManifest): Buffer {
  const { processes, ...rest } = m;
  const w = new MsgpackChunks();
  w.writeOpenMap(rest, 1);
  w.write('processes');
  w.arrayHeader(processes.length);
  for (const p of processes) {
    const { regions, ...head } = p;
    w.writeOpenMap(head, 1);
    w.write('regions');
    if (!(regions instanceof EncodedRegions)) w.write(regions);
    else {
      w.arrayHeader(regions.length);
      w.append(regions.bytes());
    }
  }
  return Buffer.concat(w.bytes());
}

// ---- decoding with validation --------------------------------------------------------------------------------

/**
 * Checks the values of a decoded manifest. Where a value sits (processes[0].regions[5].runs[2].offset) is spelled
 * out only for an error: `enter` and `leave` move the place, a check's `what` names the field there (spelling the
 * place for every field of 60000 regions made most of the garbage of opening a snapshot). Equal VmFlags lists come
 * back as one list.
 */
class Check {
  private readonly names: string[] = [];
  private readonly indexes: number[] = [];
  private readonly lists: ListNode = {};
  private slab = new ArrayBuffer(0);
  private slabFill = 0;

  constructor(readonly file: string) {}

  enter(name: string, index = -1): void {
    this.names.push(name);
    this.indexes.push(index);
  }

  leave(): void {
    this.names.pop();
    this.indexes.pop();
  }

  /** `what` at the current place, spelled out. */
  private place(what: string): string {
    let s = '';
    for (let i = 0; i < this.names.length; i++) {
      s += (s ? '.' : '') + this.names[i]!;
      if (this.indexes[i]! >= 0) s += `[${this.indexes[i]}]`;
    }
    return !what ? s || 'manifest' : s ? `${s}.${what}` : what;
  }

  fail(what: string, problem: string): never {
    throw new FormatError(this.file, `bad manifest: ${this.place(what)} ${problem}`);
  }
  obj(v: unknown, what: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || Buffer.isBuffer(v)) this.fail(what, 'is not a map');
    return v as Record<string, unknown>;
  }
  arr(v: unknown, what: string): unknown[] {
    if (!Array.isArray(v)) this.fail(what, 'is not an array');
    return v;
  }
  num(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
    const n = typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) this.fail(what, `is not an integer in 0..${max}`);
    return n;
  }
  big(v: unknown, what: string): bigint {
    if (typeof v === 'bigint' && v >= 0n) return v;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return BigInt(v);
    this.fail(what, 'is not an unsigned integer');
  }
  /** (strings come from the reader made once each: equal ones are one string) */
  str(v: unknown, what: string): string {
    if (typeof v !== 'string') this.fail(what, 'is not a string');
    return v;
  }
  /** A list of strings; equal lists come back as one. */
  strs(v: unknown, what: string): string[] {
    const list = this.arr(v, what).map((x) => this.str(x, what));
    return this.oneOf(list, list.length);
  }

  /**
   * The list of the first n of `items`, one list for equal ones: found by walking a tree keyed by the strings, so a
   * list seen before costs no allocation (a JSON key for each was most of the time spent on VmFlags). A new one is a copy.
   */
  oneOf(items: readonly string[], n: number): string[] {
    let node = this.lists;
    for (let i = 0; i < n; i++) {
      let kid = node.kids?.get(items[i]!);
      if (!kid) (node.kids ??= new Map()).set(items[i]!, (kid = {}));
      node = kid;
    }
    return (node.list ??= items.slice(0, n));
  }
  bytes(v: unknown, what: string, unit: number): Uint8Array {
    if (!(v instanceof Uint8Array)) this.fail(what, 'is not a byte string');
    if (v.length % unit !== 0) this.fail(what, `has ${v.length} bytes, not a multiple of ${unit}`);
    return v;
  }
  /**
   * A byte string of u32s, copied to be aligned: small ones into shared slabs (an ArrayBuffer each cost a region
   * ~170 bytes more).
   */
  u32s(v: unknown, what: string): Uint32Array {
    const b = this.bytes(v, what, 4);
    if (b.length === 0) return NO_U32S;
    if (b.length > SLAB / 16) return new Uint32Array(aligned(b));
    if (this.slabFill + b.length > this.slab.byteLength) {
      this.slab = new ArrayBuffer(SLAB);
      this.slabFill = 0;
    }
    new Uint8Array(this.slab, this.slabFill, b.length).set(b);
    const out = new Uint32Array(this.slab, this.slabFill, b.length / 4);
    this.slabFill += b.length;
    return out;
  }
}

interface ListNode {
  kids?: Map<string, ListNode>;
  list?: string[];
}

const SLAB = 1 << 20;
const NO_U32S = new Uint32Array(0);

function precopyOf(c: Check, v: unknown): { pages: number; ms: number } {
  c.enter('freeze');
  const o = c.obj(v, 'precopy');
  c.enter('precopy');
  const out = { pages: c.num(o.pages, 'pages'), ms: typeof o.ms === 'number' ? o.ms : 0 };
  c.leave();
  c.leave();
  return out;
}

/** A list of maps under the manifest's `freeze`: `name`, each entry read by `entry`. */
function freezeList<T>(c: Check, v: unknown, name: string, entry: (o: Record<string, unknown>) => T): T[] {
  c.enter('freeze');
  const out = c.arr(v, name).map((x) => entry(c.obj(x, name)));
  c.leave();
  return out;
}

const exitedOf = (c: Check, v: unknown): ExitedProcess[] => freezeList(c, v, 'exited', (o) =>
  o.comm === undefined ? { pid: c.num(o.pid, 'exited.pid') } : { pid: c.num(o.pid, 'exited.pid'), comm: c.str(o.comm, 'exited.comm') });

const sharersOf = (c: Check, v: unknown): SharingProcess[] => freezeList(c, v, 'sharers', (o) =>
  ({ pid: c.num(o.pid, 'sharers.pid'), comm: c.str(o.comm, 'sharers.comm'), of: c.num(o.of, 'sharers.of') }));

const outsideWritersOf = (c: Check, v: unknown): OutsideWriters[] => freezeList(c, v, 'outsideWriters', (o) =>
  ({ object: c.num(o.object, 'outsideWriters.object'), pids: c.arr(o.pids, 'outsideWriters.pids').map((p) => c.num(p, 'outsideWriters.pids')) }));

/** A map of counters: 64-bit ones come back from msgpack as bigint. */
function counters(c: Check, v: unknown, what: string): Record<string, number> {
  const o = c.obj(v ?? {}, what);
  c.enter(what);
  const out: Record<string, number> = {};
  for (const k in o) out[k] = typeof o[k] === 'bigint' ? Number(o[k]) : c.num(o[k], k);
  c.leave();
  return out;
}

/** A copy, aligned for typed-array views. */
function aligned(b: Uint8Array): ArrayBuffer {
  const ab = new ArrayBuffer(b.length);
  new Uint8Array(ab).set(b);
  return ab;
}

const VERDICTS = new Set(['data', 'zero', 'hole', 'file', 'object', 'guard', 'poison', 'retry', 'special', 'unreadable']);

/** A run table (field `runs` at the current place): inline runs are checked here; run blocks' records when a reader loads them. */
function runTable(c: Check, v: unknown, totalPages: number, fileSize: number): { runs: RunTable; dataPages: number } {
  if (Array.isArray(v)) return runs(c, v, totalPages);
  const o = c.obj(v, 'runs');
  c.enter('runs');
  const cases = c.strs(o.cases, 'cases');
  const reasons = c.strs(o.reasons, 'reasons');
  let dataPages = 0;
  let prevFirst = -1;
  const blocksOut = blocks(c, o.blocks, 'blocks', fileSize, RUN_RECORD).map((b, i): RunBlock => {
    c.enter('blocks', i);
    const m = c.obj(c.arr(o.blocks, '')[i], '');
    const rb: RunBlock = { ...b, firstOffset: c.num(m.firstOffset, 'firstOffset'), dataBefore: c.num(m.dataBefore, 'dataBefore'), dataPages: c.num(m.dataPages, 'dataPages') };
    if (m.wide === true) {
      if (b.count * WIDE_RUN_RECORD > 1 << 27) c.fail('', `declares ${b.count} entries`);
      rb.wide = true;
    }
    if (rb.firstOffset <= prevFirst || rb.firstOffset >= totalPages) c.fail('', 'is out of order or leaves the range');
    if (rb.dataBefore !== dataPages || rb.dataPages > totalPages) c.fail('', 'does not continue the data page count');
    prevFirst = rb.firstOffset;
    dataPages += rb.dataPages;
    c.leave();
    return rb;
  });
  c.leave();
  return { runs: { blocks: blocksOut, cases, reasons }, dataPages };
}

function runs(c: Check, v: unknown[], totalPages: number): { runs: Run[]; dataPages: number } {
  const out = v.map((x, i) => {
    c.enter('runs', i);
    const o = c.obj(x, '');
    const r: Run = {
      offset: c.num(o.offset, 'offset'), pages: c.num(o.pages, 'pages'), verdict: c.str(o.verdict, 'verdict') as Verdict, case: c.str(o.case, 'case') as CaseId,
    };
    if (o.reason !== undefined) r.reason = c.str(o.reason, 'reason');
    c.leave();
    return r;
  });
  return { runs: out, dataPages: checkRuns(c, out, totalPages) };
}

/** Inline runs, each of a known verdict, in order and inside `totalPages` (checked); their data pages. */
function checkRuns(c: Check, rs: readonly Run[], totalPages: number): number {
  let dataPages = 0;
  let next = 0;
  for (let i = 0; i < rs.length; i++) {
    const r = rs[i]!;
    c.enter('runs', i);
    if (!VERDICTS.has(r.verdict)) c.fail('', `has unknown verdict ${JSON.stringify(r.verdict)}`);
    if (r.offset < next || r.pages === 0 || r.offset + r.pages > totalPages) c.fail('', 'overlaps or leaves the range');
    c.leave();
    next = r.offset + r.pages;
    if (r.verdict === 'data') dataPages += r.pages;
  }
  return dataPages;
}

function blocks(c: Check, v: unknown, what: string, fileSize: number, entryBytes: number): Block[] {
  return c.arr(v, what).map((x, i) => {
    c.enter(what, i);
    const o = c.obj(x, '');
    const b = { offset: c.num(o.offset, 'offset'), size: c.num(o.size, 'size'), count: c.num(o.count, 'count', 1 << 24) };
    if (b.offset < 64 || b.offset + b.size > fileSize || b.size === 0) c.fail('', 'lies outside the file');
    if (b.count * entryBytes > 1 << 27) c.fail('', `declares ${b.count} entries`);
    c.leave();
    return b;
  });
}

/** Inline refs (field `refs` at the current place) are checked here; refs in blocks when a reader loads them (checkRefs). */
function refs(c: Check, v: unknown, dataPages: number, storedPages: number, fileSize: number): Refs {
  return checkedRefs(c, Array.isArray(v) ? blocks(c, v, 'refs', fileSize, 4) : c.u32s(v, 'refs'), dataPages, storedPages);
}

/** Refs, one per data page (checked), and those inline each naming a stored page. */
function checkedRefs(c: Check, r: Refs, dataPages: number, storedPages: number): Refs {
  if (refsCount(r) !== dataPages) c.fail('refs', `has ${refsCount(r)} entries for ${dataPages} data pages`);
  const bad = Array.isArray(r) ? -1 : badRef(r, storedPages);
  if (bad >= 0) c.fail(`refs[${bad}]`, `= ${(r as Uint32Array)[bad]} names no stored page`);
  return r;
}

/** The index of the first ref that names no stored page; -1 if every one names one. */
function badRef(a: Uint32Array, storedPages: number): number {
  for (let i = 0; i < a.length; i++) if (a[i]! >= storedPages) return i;
  return -1;
}

/** Every ref must name a stored page. */
export function checkRefs(a: Uint32Array, storedPages: number, what: string, file: string): void {
  const i = badRef(a, storedPages);
  if (i >= 0) throw new FormatError(file, `bad manifest: ${what}[${i}] = ${a[i]} names no stored page`);
}

/** A region's pages, from its range (checked: page-aligned, not empty). */
function regionPages(c: Check, start: bigint, end: bigint, pageSize: number): number {
  const ps = BigInt(pageSize);
  if (end <= start || start % ps !== 0n || end % ps !== 0n) c.fail('', 'has a bad range');
  return Number((end - start) / ps);
}

/** The object a region maps must be in the snapshot (checked). */
function knownObject(c: Check, o: { id: number }, objectIds: Set<number>): void {
  if (!objectIds.has(o.id)) c.fail('object', `names object ${o.id}, which is not in the snapshot`);
}

function region(c: Check, y: unknown, pageSize: number, objectIds: Set<number>, total: number, fileSize: number): SnapshotRegion {
  const r = c.obj(y, '');
  const start = c.big(r.start, 'start');
  const end = c.big(r.end, 'end');
  const rr = runTable(c, r.runs, regionPages(c, start, end, pageSize), fileSize);
  let object: SnapshotRegion['object'];
  if (r.object !== undefined && r.object !== null) {
    const ob = c.obj(r.object, 'object');
    c.enter('object');
    object = { id: c.num(ob.id, 'id'), offset: c.big(ob.offset, 'offset') };
    c.leave();
    knownObject(c, object, objectIds);
  }
  let file: FileStamp | undefined;
  if (r.file !== undefined && r.file !== null) {
    const f = c.obj(r.file, 'file');
    c.enter('file');
    // (a signed count: a file can be dated before 1970)
    const t = f.mtimeNs;
    const mtimeNs = typeof t === 'bigint' ? t : typeof t === 'number' && Number.isInteger(t) ? BigInt(t) : c.fail('mtimeNs', 'is not an integer');
    file = { size: c.num(f.size, 'size'), mtimeNs };
    c.leave();
  }
  return {
    start, end, mode: c.str(r.mode, 'mode'), offset: c.big(r.offset, 'offset'), dev: c.str(r.dev, 'dev'),
    inode: c.num(r.inode, 'inode'), path: r.path === null ? null : c.str(r.path, 'path'), deleted: r.deleted === true,
    kind: c.str(r.kind, 'kind') as RegionKind, backing: c.str(r.backing, 'backing') as Backing,
    shmem: r.shmem === undefined || r.shmem === null ? undefined : (c.str(r.shmem, 'shmem') as ShmemSource),
    vmFlags: c.strs(r.vmFlags, 'vmFlags'), smaps: counters(c, r.smaps, 'smaps'), object, file,
    runs: rr.runs, refs: refs(c, r.refs, rr.dataPages, total, fileSize),
  };
}

/** Strings read for a list, before it is found (Check.oneOf). */
const scratch: string[] = [];

/** A region record's fields, by name: a switch over strings compared each key with every name before it. */
const F = { start: 1, end: 2, offset: 3, mode: 4, dev: 5, kind: 6, backing: 7, inode: 8, path: 9, shmem: 10, deleted: 11, vmFlags: 12, smaps: 13, object: 14, file: 15, runs: 16, refs: 17 } as const;
const FIELD = new Map<string, number>(Object.entries(F));

/** A map of `k1`, an integer 0..2^53, then `k2`, any integer (an object reference, a file stamp); null if it is not that. */
function countThenBig(f: Fields, k1: string, k2: string): [number, bigint] | null {
  if (f.map() !== 2 || f.str() !== k1) return null;
  const a = f.uint();
  const b = f.str() === k2 ? f.big() : undefined;
  return a < 0 || b === undefined ? null : [a, b];
}

/**
 * A region record read straight from its bytes (Fields) into what `region` makes of it, when it is as pagesnap
 * writes one: inline runs and refs, every field of its kind. Anything else gives null, and the record is decoded by
 * `region`, which names what is wrong; what the fields say is checked by the checks `region` makes.
 */
function regionFast(c: Check, f: Fields, pageSize: number, objectIds: Set<number>, total: number): SnapshotRegion | null {
  let start: bigint | undefined, end: bigint | undefined, offset: bigint | undefined;
  let mode: string | undefined, dev: string | undefined, kind: string | undefined, backing: string | undefined;
  let path: string | null | undefined, shmem: string | undefined;
  let inode = -1;
  let deleted = false;
  let vmFlags: string[] | undefined;
  let smaps: Record<string, number> | undefined;
  let object: SnapshotRegion['object'];
  let file: FileStamp | undefined;
  let runList: Run[] | undefined;
  let refBytes: Uint8Array | undefined;
  const n = f.map();
  if (n < 0) return null;
  for (let i = 0; i < n; i++) {
    const key = f.str();
    if (key === undefined || key === '__proto__') return null;
    switch (FIELD.get(key)) {
      case F.start: if ((start = f.big()) === undefined) return null; break;
      case F.end: if ((end = f.big()) === undefined) return null; break;
      case F.offset: if ((offset = f.big()) === undefined) return null; break;
      case F.mode: if ((mode = f.str()) === undefined) return null; break;
      case F.dev: if ((dev = f.str()) === undefined) return null; break;
      case F.kind: if ((kind = f.str()) === undefined) return null; break;
      case F.backing: if ((backing = f.str()) === undefined) return null; break;
      case F.inode: if ((inode = f.uint()) < 0) return null; break;
      case F.path: if (f.nil()) path = null; else if ((path = f.str()) === undefined) return null; break;
      case F.shmem: if (f.nil()) shmem = undefined; else if ((shmem = f.str()) === undefined) return null; break;
      case F.deleted: deleted = f.isTrue(); break;
      case F.vmFlags: {
        const k = f.array();
        if (k < 0) return null;
        for (let j = 0; j < k; j++) if ((scratch[j] = f.str()!) === undefined) return null;
        vmFlags = c.oneOf(scratch, k);
        break;
      }
      case F.smaps: {
        smaps = {};
        if (f.nil()) break;
        const k = f.map();
        if (k < 0) return null;
        for (let j = 0; j < k; j++) {
          const name = f.str();
          const v = name === undefined || name === '__proto__' ? -1 : f.uint();
          if (v < 0) return null;
          smaps[name!] = v;
        }
        break;
      }
      case F.object: {
        object = undefined;
        if (f.nil()) break;
        const o = countThenBig(f, 'id', 'offset');
        if (!o || o[1] < 0n) return null;
        object = { id: o[0], offset: o[1] };
        break;
      }
      case F.file: {
        file = undefined;
        if (f.nil()) break;
        const st = countThenBig(f, 'size', 'mtimeNs');
        if (!st) return null;
        file = { size: st[0], mtimeNs: st[1] };
        break;
      }
      case F.runs: {
        const k = f.array();
        if (k < 0) return null;
        runList = [];
        for (let j = 0; j < k; j++) {
          const m = f.map();
          if (m < 4) return null;
          let ro = -1, rp = -1, verdict: string | undefined, rc: string | undefined, reason: string | undefined;
          for (let q = 0; q < m; q++) {
            const rk = f.str();
            if (rk === 'offset') ro = f.uint();
            else if (rk === 'pages') rp = f.uint();
            else if (rk === 'verdict') verdict = f.str();
            else if (rk === 'case') rc = f.str();
            else if (rk === 'reason') {
              if ((reason = f.str()) === undefined) return null;
            } else if (rk === undefined || rk === '__proto__') return null;
            else f.skip();
          }
          if (ro < 0 || rp < 0 || verdict === undefined || rc === undefined) return null;
          const run: Run = { offset: ro, pages: rp, verdict: verdict as Verdict, case: rc as CaseId };
          if (reason !== undefined) run.reason = reason;
          runList.push(run);
        }
        break;
      }
      case F.refs: if ((refBytes = f.bytes()) === undefined) return null; break;
      default: f.skip();
    }
  }
  if (start === undefined || end === undefined || offset === undefined || mode === undefined || dev === undefined || kind === undefined ||
    backing === undefined || inode < 0 || path === undefined || vmFlags === undefined || runList === undefined || refBytes === undefined) return null;
  if (start < 0n || end < 0n || offset < 0n) return null;
  const dataPages = checkRuns(c, runList, regionPages(c, start, end, pageSize));
  if (object) knownObject(c, object, objectIds);
  const refs = checkedRefs(c, c.u32s(refBytes, 'refs'), dataPages, total) as Uint32Array;
  return {
    start, end, mode, offset, dev, inode, path, deleted, kind: kind as RegionKind, backing: backing as Backing,
    shmem: shmem as ShmemSource | undefined, vmFlags, smaps: smaps ?? {}, object, file, runs: runList, refs,
  };
}

/**
 * `regions: false` leaves every process's region records unread (its regions empty): a parent read through its
 * child gives only pages and hashes, and a 60000-region parent's records were 30 MiB of every chain reader's memory.
 */
export function decodeManifest(raw: Buffer, file: string, fileSize: number, opts: { regions?: boolean } = {}): Manifest {
  const c = new Check(file);
  let v: unknown;
  try {
    v = decodeManifestTree(raw);
  } catch (e) {
    c.fail('', `is not msgpack (${(e as Error).message})`);
  }
  const m = c.obj(v, '');
  const host = c.obj(m.host, 'host');
  const pageSize = c.num(host.pageSize, 'host.pageSize', 65536);
  let parent: ParentRef | undefined;
  if (m.parent !== undefined && m.parent !== null) {
    const p = c.obj(m.parent, 'parent');
    c.enter('parent');
    parent = {
      id: Buffer.from(c.bytes(p.id, 'id', 16)), manifestHash: c.big(p.manifestHash, 'manifestHash'),
      path: c.str(p.path, 'path'), absolute: c.str(p.absolute, 'absolute'), pages: c.num(p.pages, 'pages', 0xffffffff),
    };
    if (parent.id.length !== 16) c.fail('id', 'is not 16 bytes');
    c.leave();
  }
  const base = parent?.pages ?? 0;
  const hashes: Hashes = Array.isArray(m.hashes) ? blocks(c, m.hashes, 'hashes', fileSize, 8) : new BigUint64Array(aligned(c.bytes(m.hashes, 'hashes', 8)));
  const stored = refsCount(hashes);
  // refs may name the parent chain's pages, numbered before this file's own
  const total = base + stored;
  if (total > 0xffffffff) c.fail('', 'lists more stored pages than refs can name');
  const fr = c.obj(m.frames, 'frames');
  c.enter('frames');
  const frames: FrameIndex = {
    offset: new Float64Array(aligned(c.bytes(fr.offset, 'offset', 8))),
    size: new Uint32Array(aligned(c.bytes(fr.size, 'size', 4))),
    firstPage: new Uint32Array(aligned(c.bytes(fr.firstPage, 'firstPage', 4))),
    pages: new Uint32Array(aligned(c.bytes(fr.pages, 'pages', 4))),
  };
  c.leave();
  const n = frames.offset.length;
  if (frames.size.length !== n || frames.firstPage.length !== n || frames.pages.length !== n) c.fail('frames', 'index arrays differ in length');
  let expectPage = base;
  for (let i = 0; i < n; i++) {
    const off = frames.offset[i]!;
    if (!Number.isInteger(off) || off < 64 || off + frames.size[i]! > fileSize) c.fail(`frame ${i}`, 'lies outside the file');
    if (frames.firstPage[i] !== expectPage || frames.pages[i] === 0 || frames.pages[i]! > 1 << 16) c.fail(`frame ${i}`, 'does not continue the page numbering');
    expectPage += frames.pages[i]!;
  }
  if (expectPage - base !== stored) c.fail('frames', `hold ${expectPage - base} pages but ${stored} hashes are listed`);

  const objects = c.arr(m.objects, 'objects').map((x, i) => {
    c.enter('objects', i);
    const o = c.obj(x, '');
    const size = c.num(o.size, 'size');
    const r = runTable(c, o.runs, Math.ceil(size / pageSize), fileSize);
    const out = {
      id: c.num(o.id, 'id'), source: c.str(o.source, 'source') as SnapshotObject['source'], name: c.str(o.name, 'name'), dev: c.num(o.dev, 'dev'),
      ino: c.num(o.ino, 'ino'), size, runs: r.runs, refs: refs(c, o.refs, r.dataPages, total, fileSize),
    } satisfies SnapshotObject;
    c.leave();
    return out;
  });
  const objectIds = new Set(objects.map((o) => o.id));

  const processes = c.arr(m.processes, 'processes').map((x, i) => {
    c.enter('processes', i);
    const p = c.obj(x, '');
    const records = opts.regions === false ? [] : p.regions instanceof RecordList ? p.regions : c.arr(p.regions, 'regions');
    const regions: SnapshotRegion[] = [];
    for (let j = 0; j < records.length; j++) {
      c.enter('regions', j);
      const fast = records instanceof RecordList ? records.read(j, (f) => regionFast(c, f, pageSize, objectIds, total)) : null;
      if (fast) {
        regions.push(fast);
        c.leave();
        continue;
      }
      let y: unknown;
      try {
        y = records instanceof RecordList ? records.at(j) : records[j];
      } catch (e) {
        c.fail('', `is not msgpack (${(e as Error).message})`);
      }
      regions.push(region(c, y, pageSize, objectIds, total, fileSize));
      c.leave();
    }
    const out = {
      pid: c.num(p.pid, 'pid'), ppid: c.num(p.ppid, 'ppid'), comm: c.str(p.comm, 'comm'), cmdline: c.arr(p.cmdline, 'cmdline').map((s) => c.str(s, 'cmdline')),
      uid: c.num(p.uid, 'uid'), ...(p.nsPids === undefined ? {} : { nsPids: c.arr(p.nsPids, 'nsPids').map((x) => c.num(x, 'nsPids')) }), regions,
    } satisfies SnapshotProcess;
    c.leave();
    return out;
  });

  const hash = c.obj(m.hash, 'hash');
  if (hash.algorithm !== 'xxh3-64') c.fail('hash', `names an unknown page hash ${JSON.stringify(hash.algorithm)}`);
  const fz = c.obj(m.freeze, 'freeze');
  const comp = c.obj(m.compression, 'compression');
  return {
    format: c.num(m.format, 'format'), id: Buffer.from(c.bytes(m.id, 'id', 16)), created: c.num(m.created, 'created'), tool: c.str(m.tool, 'tool'),
    host: { kernel: c.str(host.kernel, 'host.kernel'), hostname: c.str(host.hostname, 'host.hostname'), arch: c.str(host.arch, 'host.arch'), pageSize },
    hash: { algorithm: 'xxh3-64', seed: c.num(hash.seed, 'hash.seed', 0xffffffff) },
    freeze: {
      method: c.str(fz.method, 'freeze.method'), frozenMs: typeof fz.frozenMs === 'number' ? fz.frozenMs : 0, fuzzy: fz.fuzzy === true,
      ...(fz.precopy === undefined ? {} : { precopy: precopyOf(c, fz.precopy) }), ...(fz.exited === undefined ? {} : { exited: exitedOf(c, fz.exited) }),
      ...(fz.sharers === undefined ? {} : { sharers: sharersOf(c, fz.sharers) }),
      ...(fz.outsideWriters === undefined ? {} : { outsideWriters: outsideWritersOf(c, fz.outsideWriters) }),
    },
    compression: { algorithm: 'zstd', level: c.num(comp.level, 'compression.level', 22), framePages: c.num(comp.framePages, 'compression.framePages', 1 << 16) },
    processes, objects, frames, hashes,
    stats: counters(c, m.stats, 'stats') as unknown as DumpStats,
    ...(parent ? { parent } : {}),
  };
}
