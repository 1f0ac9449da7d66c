/**
 * What a `serve` client gets: its registered ranges, each filled from a range of one snapshot process's address
 * space, as a segment table in the client's addresses. Shmem content comes through the object; pages the
 * snapshot does not hold (clean file pages, guards, unreadable pages) are poisoned and reported.
 */
import { PagesnapError, type Addr } from '../native/index.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import type { Run, SnapshotProcess, SnapshotRegion } from '../snapshot/manifest.js';
import { SegmentBuilder, Op, type SegmentTable } from './segments.js';
import type { LostRange } from './plan.js';

export interface ClientRange {
  /** where the client registered the memory */
  address: Addr;
  length: number;
  /** the snapshot address its first byte is filled from */
  snapshotAddress: Addr;
  /** the client memory's page size (hugetlb: the huge page size); 4096 by default */
  pageSize?: number;
}

export interface ClientPlan {
  table: SegmentTable;
  ranges: { first: number; pages: number; unitPages: number }[];
  counts: { data: number; zero: number; poison: number };
  lost: LostRange[];
}

const hex = (a: Addr) => `0x${a.toString(16)}`;

/** One verdict run inside [from, to) pages of a region or object, with its stored pages. */
interface Piece { offset: number; pages: number; run: Run; src?: number }

function* clip(reader: SnapshotReader, x: Parameters<SnapshotReader['stretches']>[0], from: number, to: number): Generator<Piece> {
  for (const st of reader.stretches(x)) {
    const a = Math.max(from, st.offset);
    const b = Math.min(to, st.offset + st.pages);
    if (a >= b) {
      if (st.offset >= to) return;
      continue;
    }
    yield { offset: a, pages: b - a, run: st.run, src: st.src === undefined ? undefined : st.src + (a - st.offset) };
  }
}

/** Pages [from, to) of a region with object pages resolved through their object. */
function* regionPieces(reader: SnapshotReader, reg: SnapshotRegion, from: number, to: number): Generator<Piece> {
  for (const p of clip(reader, reg, from, to)) {
    if (p.run.verdict !== 'object' || !reg.object) {
      yield p;
      continue;
    }
    const base = Number(reg.object.offset / BigInt(reader.pageSize));
    for (const q of clip(reader, reader.object(reg.object.id), base + p.offset, base + p.offset + p.pages)) {
      yield { ...q, offset: q.offset - base };
    }
  }
}

export function planClient(reader: SnapshotReader, proc: SnapshotProcess, ranges: readonly ClientRange[]): ClientPlan {
  const ps = reader.pageSize;
  const b = new SegmentBuilder();
  const lost: LostRange[] = [];
  const sorted = [...ranges].sort((x, y) => (x.address < y.address ? -1 : 1));
  sorted.forEach((cr, i) => {
    const unit = cr.pageSize ?? ps;
    if (unit < ps || unit > 1 << 30 || (unit & (unit - 1)) !== 0) {
      throw new PagesnapError(`range ${hex(cr.address)}: page size ${unit} is not a power of two from ${ps} to 1 GiB`, { code: 'EINVAL' });
    }
    if (cr.address % BigInt(unit) !== 0n || cr.snapshotAddress % BigInt(ps) !== 0n || cr.length <= 0 || cr.length % unit !== 0) {
      throw new PagesnapError(`range ${hex(cr.address)}+${cr.length} is not aligned to its ${unit}-byte pages`, { code: 'EINVAL' });
    }
    const prev = sorted[i - 1];
    if (prev && prev.address + BigInt(prev.length) > cr.address) throw new PagesnapError(`ranges at ${hex(prev.address)} and ${hex(cr.address)} overlap`, { code: 'EINVAL' });
    const shift = Math.log2(unit / ps);
    const clientFirst = Number(cr.address / BigInt(ps));
    const snapEnd = cr.snapshotAddress + BigInt(cr.length);
    for (let at = cr.snapshotAddress; at < snapEnd; ) {
      const reg = reader.regionAt(proc, at);
      if (!reg) throw new PagesnapError(`${hex(at)} is not mapped in process ${proc.pid} of the snapshot`, { code: 'EFAULT' });
      const upTo = reg.end < snapEnd ? reg.end : snapEnd;
      const from = Number((at - reg.start) / BigInt(ps));
      const to = Number((upTo - reg.start) / BigInt(ps));
      const toClient = clientFirst + Number((reg.start - cr.snapshotAddress) / BigInt(ps));
      for (const p of regionPieces(reader, reg, from, to)) {
        const page = toClient + p.offset;
        const v = p.run.verdict;
        if (v === 'data') b.push(i, page, p.pages, Op.DATA, p.src!, shift);
        else if (v === 'zero') b.push(i, page, p.pages, Op.ZERO, 0, shift);
        else if (v !== 'hole' && v !== 'special') {
          b.push(i, page, p.pages, Op.POISON, 0, shift);
          const why = v === 'file' ? `clean pages of ${reg.path ?? 'a file'} (not stored)` : v === 'guard' ? 'guard pages' : `${v} pages`;
          lost.push({ start: BigInt(page) * BigInt(ps), len: p.pages * ps, why });
        }
      }
      at = upTo;
    }
  });
  return {
    table: b.build(),
    ranges: sorted.map((r) => ({ first: Number(r.address / BigInt(ps)), pages: r.length / ps, unitPages: (r.pageSize ?? ps) / ps })),
    counts: b.counts, lost,
  };
}
