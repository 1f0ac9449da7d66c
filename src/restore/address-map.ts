/**
 * Where the pages of a plan are in the process being filled, as its non-cooperative events change that:
 * MADV_DONTNEED and friends (REMOVE: the range now reads as zeros, nothing may be filled there), munmap
 * (UNMAP: gone) and mremap (REMAP: the pages moved). Plan pages are the addresses the segment table was built
 * for; a row maps a stretch of them to client pages (client = plan + delta) with a state.
 *
 * Shared by the fault thread (the only writer: it reads the events) and the fill workers, who read it only
 * inside the fill gate (see gate.ts), so they never see it half-changed.
 */
export const ROW = { LIVE: 0, REMOVED: 1, UNMAPPED: 2 } as const;
export type RowState = (typeof ROW)[keyof typeof ROW];

const FIELDS = 4; // planStart, planEnd, delta, state

export interface Piece {
  /** plan pages [from, to) */
  from: number;
  to: number;
  /** client page = plan page + delta */
  delta: number;
  state: RowState;
}

export class AddressMap {
  private readonly head: Int32Array;
  private readonly rows: Float64Array;

  private constructor(readonly buffer: SharedArrayBuffer) {
    this.head = new Int32Array(buffer, 0, 2);
    this.rows = new Float64Array(buffer, 8);
  }

  /** A map where every range is live at its own address. */
  static identity(ranges: readonly { first: number; pages: number }[], capacity = 4096): AddressMap {
    const m = new AddressMap(new SharedArrayBuffer(8 + capacity * FIELDS * 8));
    m.head[1] = capacity;
    for (const r of [...ranges].sort((a, b) => a.first - b.first)) m.append(r.first, r.first + r.pages, 0, ROW.LIVE);
    return m;
  }

  static attach(buffer: SharedArrayBuffer): AddressMap {
    return new AddressMap(buffer);
  }

  /** An independent copy (a forked child starts with its parent's map). */
  clone(): AddressMap {
    const b = new SharedArrayBuffer(this.buffer.byteLength);
    new Uint8Array(b).set(new Uint8Array(this.buffer));
    return new AddressMap(b);
  }

  get count(): number {
    return this.head[0]!;
  }

  private row(i: number): Piece {
    const r = this.rows;
    return { from: r[i * FIELDS]!, to: r[i * FIELDS + 1]!, delta: r[i * FIELDS + 2]!, state: r[i * FIELDS + 3]! as RowState };
  }

  private append(from: number, to: number, delta: number, state: RowState): void {
    this.insert(this.count, { from, to, delta, state });
  }

  private insert(at: number, p: Piece): void {
    const n = this.count;
    if (n >= this.head[1]!) throw new Error(`the process changed its memory map more than ${this.head[1]} times`);
    this.rows.copyWithin((at + 1) * FIELDS, at * FIELDS, n * FIELDS);
    this.rows.set([p.from, p.to, p.delta, p.state], at * FIELDS);
    this.head[0] = n + 1;
  }

  private set(i: number, p: Piece): void {
    this.rows.set([p.from, p.to, p.delta, p.state], i * FIELDS);
  }

  /** The parts of plan pages [from, to) that are in some row, with where they are now. */
  pieces(from: number, to: number): Piece[] {
    const out: Piece[] = [];
    for (let i = 0; i < this.count; i++) {
      const r = this.row(i);
      if (r.to <= from || r.from >= to) continue;
      out.push({ ...r, from: Math.max(from, r.from), to: Math.min(to, r.to) });
    }
    return out;
  }

  /** The row holding client page c, and the plan page it is; null if c is in none. */
  fromClient(c: number): { plan: number; delta: number; state: RowState } | null {
    for (let i = 0; i < this.count; i++) {
      const r = this.row(i);
      if (c >= r.from + r.delta && c < r.to + r.delta) return { plan: c - r.delta, delta: r.delta, state: r.state };
    }
    return null;
  }

  /** Apply `f` to the rows' parts that lie in client pages [from, to), splitting rows at the edges. */
  private update(from: number, to: number, f: (p: Piece) => Piece): void {
    for (let i = 0; i < this.count; i++) {
      const r = this.row(i);
      const a = Math.max(from, r.from + r.delta) - r.delta;
      const b = Math.min(to, r.to + r.delta) - r.delta;
      if (a >= b) continue;
      if (a > r.from) {
        this.set(i, { ...r, to: a });
        this.insert(++i, { ...r, from: a });
      }
      const cur = this.row(i);
      if (b < cur.to) {
        this.set(i, { ...cur, to: b });
        this.insert(i + 1, { ...cur, from: b });
      }
      this.set(i, f(this.row(i)));
    }
  }

  /** REMOVE (reads as zeros from now on) or UNMAP of client pages [from, to). */
  drop(from: number, to: number, state: RowState): void {
    this.update(from, to, (p) => (p.state === ROW.UNMAPPED ? p : { ...p, state }));
  }

  /** REMAP: client pages [from, from+pages) moved to [to, to+pages). */
  move(from: number, to: number, pages: number): void {
    this.update(from, from + pages, (p) => ({ ...p, delta: p.delta + (to - from) }));
  }
}
