/**
 * Which stored page has this hash: an open-addressing table of (hash low word, hash high word, stored-page number).
 * It keeps its own copy of the hashes so the writer can send its page hashes to the file as they accumulate. The
 * table stops admitting pages once it holds `capacity` of them: memory stays bounded, correctness is untouched
 * (later pages are only deduplicated against the ones admitted).
 */
export class DedupeTable {
  private slots = new Uint32Array(3 * (1 << 16));
  private size = 0;

  constructor(readonly capacity = 1 << 20) {}

  private get mask(): number {
    return this.slots.length / 3 - 1;
  }

  /**
   * The first stored page with this hash for which `same` says the bytes are equal too, or -1. (A callback, not an
   * iterator: this runs once per page stored, and must not allocate.)
   */
  find(lo: number, hi: number, same: (n: number) => boolean): number {
    const mask = this.mask;
    for (let s = lo & mask; this.slots[3 * s + 2] !== 0; s = (s + 1) & mask) {
      if (this.slots[3 * s] === lo && this.slots[3 * s + 1] === hi && same(this.slots[3 * s + 2]! - 1)) return this.slots[3 * s + 2]! - 1;
    }
    return -1;
  }

  add(lo: number, hi: number, n: number): void {
    if (this.size >= this.capacity) return;
    if ((this.size + 1) * 2 > this.slots.length / 3) this.grow();
    this.put(this.slots, this.mask, lo, hi, n + 1);
    this.size++;
  }

  private put(t: Uint32Array, mask: number, lo: number, hi: number, v: number): void {
    let s = lo & mask;
    while (t[3 * s + 2] !== 0) s = (s + 1) & mask;
    t[3 * s] = lo;
    t[3 * s + 1] = hi;
    t[3 * s + 2] = v;
  }

  private grow(): void {
    const old = this.slots;
    // Grow four-fold: rehashing is the table's main cost while the dump is young.
    this.slots = new Uint32Array(old.length * 4);
    const mask = this.mask;
    for (let s = 0; s < old.length; s += 3) if (old[s + 2] !== 0) this.put(this.slots, mask, old[s]!, old[s + 1]!, old[s + 2]!);
  }
}
