/**
 * Whether a process forked while a precopy ran. A fork shares every private anonymous page of the parent with the
 * child, and the kernel clears the page's anon-exclusive flag (kpageflags bit 34); a page the parent does not write
 * afterwards stays so, even once the child is gone, reaped by a wait or not (SA_NOCLDWAIT). So the witnesses are
 * pages exclusive when chosen, in memory whose writes are tracked: at the check, one mapped at the same frame and not
 * written since that is no longer exclusive shows a fork. Nothing else tells: a child reaped unseen leaves no other
 * trace in /proc. (A page pinned for DMA is copied for the child instead, so the witnesses come from many places;
 * a page KSM merged is never exclusive, which reads as a fork: that only costs reading frozen.)
 */
import { readSync, closeSync } from 'node:fs';
import { KpageReader, PM, frameOf, openProc } from '../proc/index.js';
import { PagesnapError, type Addr } from '../native/index.js';
import type { PageRanges } from './page-ranges.js';

const ANON = 1n << 12n;
const ANON_EXCLUSIVE = 1n << 34n;
/** Witnesses per process: pages spread over its tracked memory. */
const WITNESSES = 32;

interface Witness {
  addr: Addr;
  pfn: number;
}

export class ForkWitness {
  private constructor(readonly pid: number, private readonly witnesses: Witness[]) {}

  /**
   * Choose witnesses among `pages` (page numbers of `pid`'s memory whose writes are tracked and protected). Returns
   * why not when none can be had (no such page in memory, or kpageflags unreadable).
   */
  static choose(pid: number, pages: PageRanges): ForkWitness | { why: string } {
    const candidates: Addr[] = [];
    const step = Math.max(1, Math.floor(pages.length / WITNESSES));
    for (let i = 0; i < pages.length && candidates.length < 4 * WITNESSES; i += step) {
      for (let p = pages.start(i); p < pages.end(i) && p < pages.start(i) + 4; p++) candidates.push(BigInt(p) << 12n);
    }
    const seen = read(pid, candidates);
    if (typeof seen === 'string') return { why: seen };
    const witnesses = seen.filter((s) => s.exclusive).slice(0, WITNESSES).map(({ addr, pfn }) => ({ addr, pfn }));
    if (witnesses.length === 0) return { why: `no page of process ${pid} in memory can show whether it forks` };
    return new ForkWitness(pid, witnesses);
  }

  /** Why the process may have forked since the witnesses were chosen (null: it did not). */
  forked(): string | null {
    const seen = read(this.pid, this.witnesses.map((w) => w.addr));
    if (typeof seen === 'string') return seen;
    let valid = 0;
    for (let i = 0; i < seen.length; i++) {
      const s = seen[i]!;
      // (written, moved or gone since: it no longer says anything)
      if (s.pfn !== this.witnesses[i]!.pfn) continue;
      if (!s.exclusive) return `process ${this.pid} forked (a page of it is shared now)`;
      valid++;
    }
    return valid > 0 ? null : `process ${this.pid} wrote every page that could show whether it forked`;
  }
}

/**
 * Of each page at `addrs`: its frame and whether it is anonymous, exclusive and still write-protected (not written
 * since it was protected); pages not mapped so come back with pfn -1. A string: why it cannot be read.
 */
function read(pid: number, addrs: readonly Addr[]): { addr: Addr; pfn: number; exclusive: boolean }[] | string {
  const kpage = new KpageReader();
  if (kpage.unavailable) {
    kpage.close();
    return kpage.unavailable;
  }
  let fd: number;
  try {
    fd = openProc(pid, 'pagemap');
  } catch (e) {
    kpage.close();
    if (e instanceof PagesnapError) return e.message; // (gone meanwhile)
    throw e;
  }
  try {
    const b = Buffer.alloc(8);
    const frames = addrs.map((addr) => {
      if (readSync(fd, b, 0, 8, Number(addr >> 12n) * 8) !== 8) return -1;
      const hi = b.readUInt32LE(4);
      if (!(hi & PM.PRESENT) || !(hi & PM.UFFD_WP)) return -1;
      return frameOf(hi, b.readUInt32LE(0));
    });
    const info = kpage.read(frames.map((f) => (f > 0 ? BigInt(f) : null)));
    return addrs.map((addr, i) => {
      const flags = info[i]?.flags ?? 0n;
      return { addr, pfn: info[i] ? frames[i]! : -1, exclusive: (flags & ANON) !== 0n && (flags & ANON_EXCLUSIVE) !== 0n };
    });
  } finally {
    closeSync(fd);
    kpage.close();
  }
}
