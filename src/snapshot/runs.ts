/**
 * Run tables: a region's or object's runs, inline (a list of maps) or, as the dump writes them, in blocks of packed
 * 12-byte records streamed to the file as the runs are made. A fragmented 64 GiB region can have millions of
 * runs; in blocks they cost the dump one block of memory and a reader the blocks it touches.
 */
import type { Verdict, CaseId } from '../model/verdict.js';
import type { Block, Run } from './manifest.js';

/**
 * Record layout: offset u32, pages u32, verdict u8, case u8 (index into `cases`), reason u16 (index + 1 into
 * `reasons`, 0 = none). A block of runs reaching past page 2^32 of its region (16 TiB of 4 KiB pages: sanitizers'
 * shadow memory is that large) is wide: offset and pages are u64 (format version 3).
 */
export const RUN_RECORD = 12;
export const WIDE_RUN_RECORD = 20;
const NARROW_END = 2 ** 32;
/** The format version a file with wide run blocks is written as. */
const WIDE_RUNS_VERSION = 3;

/** Where a run table's blocks go: the snapshot writer. */
export interface TableOut {
  readonly tableEntries: number;
  writeTable(bytes: Uint8Array, count: number): Promise<Block>;
  /** the file needs at least this format version */
  needVersion(version: number): void;
}
export const VERDICT_CODES: readonly Verdict[] = ['data', 'zero', 'hole', 'file', 'object', 'guard', 'poison', 'retry', 'special', 'unreadable'];

/** A block of run records, with what a reader needs to find a page without loading the others. */
export interface RunBlock extends Block {
  /** offset (in pages) of the block's first run */
  firstOffset: number;
  /** data pages in the runs before this block, and in it */
  dataBefore: number;
  dataPages: number;
  /** records are WIDE_RUN_RECORD bytes */
  wide?: true;
}

export interface RunBlocks {
  blocks: RunBlock[];
  cases: string[];
  reasons: string[];
}

export type RunTable = Run[] | RunBlocks;

function packRun(b: DataView, at: number, r: Run, caseIndex: number, reasonIndex: number, wide = false): void {
  if (wide) {
    b.setBigUint64(at, BigInt(r.offset), true);
    b.setBigUint64(at + 8, BigInt(r.pages), true);
    at += 8;
  } else {
    b.setUint32(at, r.offset, true);
    b.setUint32(at + 4, r.pages, true);
  }
  b.setUint8(at + 8, VERDICT_CODES.indexOf(r.verdict));
  b.setUint8(at + 9, caseIndex);
  b.setUint16(at + 10, reasonIndex, true);
}

/** Decode and check one block: known verdicts and indexes, runs in order inside the range, the declared data pages. */
export function unpackRuns(bytes: ArrayBuffer, t: RunBlocks, block: RunBlock, totalPages: number): { runs: Run[]; dataPrefix: Uint32Array } | string {
  const v = new DataView(bytes);
  const runs: Run[] = new Array(block.count);
  const dataPrefix = new Uint32Array(block.count);
  let data = 0;
  let next = block.firstOffset;
  const size = block.wide ? WIDE_RUN_RECORD : RUN_RECORD;
  for (let i = 0; i < block.count; i++) {
    let at = i * size;
    // (wide values past 2^53 turn inexact, and then fail the range check below: no region is that large)
    const offset = block.wide ? Number(v.getBigUint64(at, true)) : v.getUint32(at, true);
    const pages = block.wide ? Number(v.getBigUint64(at + 8, true)) : v.getUint32(at + 4, true);
    if (block.wide) at += 8;
    const verdict = VERDICT_CODES[v.getUint8(at + 8)];
    const c = t.cases[v.getUint8(at + 9)];
    const reason = v.getUint16(at + 10, true);
    if (!verdict || c === undefined || reason > t.reasons.length) return `run ${i} has an unknown verdict, case or reason`;
    if (offset < next || (i === 0 && offset !== block.firstOffset) || pages === 0 || offset + pages > totalPages) return `run ${i} overlaps or leaves the range`;
    next = offset + pages;
    runs[i] = reason ? { offset, pages, verdict, case: c as CaseId, reason: t.reasons[reason - 1] } : { offset, pages, verdict, case: c as CaseId };
    dataPrefix[i] = data;
    if (verdict === 'data') data += pages;
  }
  if (data !== block.dataPages) return `holds ${data} data pages, not the ${block.dataPages} declared`;
  return { runs, dataPrefix };
}

export type VerdictPages = Record<Verdict, number>;

export function noPages(): VerdictPages {
  return { data: 0, zero: 0, hole: 0, file: 0, object: 0, guard: 0, poison: 0, retry: 0, special: 0, unreadable: 0 };
}

/**
 * Runs a table may keep inline in the manifest. Most regions have a handful: a block each (a zstd frame, a write, a
 * promise) made a process of 60000 regions pay more for its tables than for its pages.
 */
export const INLINE_RUNS = 16;

// (shared until a table outgrows its inline runs: most never do, and a buffer and a view each cost a region ~300 bytes)
const NO_BYTES = new ArrayBuffer(0);
const NO_VIEW = new DataView(NO_BYTES);

/**
 * Builds a run table as runs are pushed in address order: equal neighbours merge. A table of a few runs stays
 * inline (a list for the manifest); a longer one is packed into blocks that go to the file (through `write`) as they
 * fill. Counts pages by verdict on the way.
 */
export class RunSink {
  readonly pages = noPages();
  /** the runs while they are few enough to stay inline; null once they are packed */
  private inline: Run[] | null = [];
  private readonly inlineMax: number;
  // grown on demand up to a block
  private buf = NO_BYTES;
  private view = NO_VIEW;
  private fill = 0;
  private last: Run | null = null;
  private readonly blocks: Promise<RunBlock>[] = [];
  private readonly cases: string[] = [];
  private readonly reasons: string[] = [];
  private dataBefore = 0;
  private blockData = 0;
  private blockFirst = 0;
  /** the records are wide from the first run that ends past NARROW_END */
  private wide = false;
  private readonly entries: number;

  constructor(private readonly out: TableOut) {
    this.entries = out.tableEntries;
    // (tests make blocks of a few entries: a table that would fill one is never inline)
    this.inlineMax = Math.min(INLINE_RUNS, this.entries - 1);
  }

  push(offset: number, pages: number, verdict: Verdict, c: CaseId, reason?: string): void {
    if (pages <= 0) return;
    const l = this.last;
    if (l && l.verdict === verdict && l.case === c && l.reason === reason && l.offset + l.pages === offset) {
      l.pages += pages;
      return;
    }
    if (l) this.emit(l);
    this.last = reason === undefined ? { offset, pages, verdict, case: c } : { offset, pages, verdict, case: c, reason };
  }

  private index(list: string[], s: string): number {
    const i = list.indexOf(s);
    return i >= 0 ? i : list.push(s) - 1;
  }

  private emit(r: Run): void {
    this.pages[r.verdict] += r.pages;
    if (this.inline) {
      if (this.inline.length < this.inlineMax) {
        this.inline.push(r);
        return;
      }
      const held = this.inline;
      this.inline = null;
      for (const x of held) this.pack(x);
    }
    this.pack(r);
  }

  private get record(): number {
    return this.wide ? WIDE_RUN_RECORD : RUN_RECORD;
  }

  private pack(r: Run): void {
    if (!this.wide && r.offset + r.pages > NARROW_END) {
      this.flush();
      this.wide = true;
      this.out.needVersion(WIDE_RUNS_VERSION);
    }
    if (this.fill === 0) this.blockFirst = r.offset;
    if ((this.fill + 1) * this.record > this.buf.byteLength) {
      const grown = new Uint8Array(Math.min(this.entries, Math.max(16, 2 * this.fill)) * this.record);
      grown.set(new Uint8Array(this.buf, 0, this.fill * this.record));
      this.buf = grown.buffer;
      this.view = new DataView(this.buf);
    }
    packRun(this.view, this.fill * this.record, r, this.index(this.cases, r.case), r.reason === undefined ? 0 : this.index(this.reasons, r.reason) + 1, this.wide);
    if (r.verdict === 'data') this.blockData += r.pages;
    if (++this.fill === this.entries) this.flush();
  }

  private flush(): void {
    if (this.fill === 0) return;
    const meta = { firstOffset: this.blockFirst, dataBefore: this.dataBefore, dataPages: this.blockData, ...(this.wide && { wide: true as const }) };
    this.blocks.push(this.out.writeTable(new Uint8Array(this.buf, 0, this.fill * this.record), this.fill).then((b) => ({ ...b, ...meta })));
    this.dataBefore += this.blockData;
    this.blockData = 0;
    this.fill = 0;
  }

  /** The table: at once when it is inline (most are: a promise each cost a process of 60000 regions 2 MB it kept). */
  done(): RunTable | Promise<RunTable> {
    if (this.last) this.emit(this.last);
    this.last = null;
    if (this.inline) return this.inline;
    this.flush();
    return Promise.all(this.blocks).then((blocks) => ({ blocks, cases: this.cases, reasons: this.reasons }));
  }
}
