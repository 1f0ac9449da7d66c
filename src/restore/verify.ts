/**
 * `restore --verify`: read back every page the restore placed (from each recreated object's memfd once it is filled,
 * and from the host's memory once the restore is full, so no read can fault) and compare it with the snapshot:
 * stored pages by their XXH3-64 hash, zero pages as zero. Poisoned pages are not read (that is their point).
 */
import { openSync, readSync, closeSync } from 'node:fs';
import { scanPages, fromNodeError, type Addr } from '../native/index.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import type { ContentPlan, ObjectPlan } from './plan.js';
import { Op } from './segments.js';

export interface Mismatch {
  /** an address in the host, or `object N + offset` */
  where: string;
  problem: string;
}

export interface VerifyResult {
  pages: number;
  mismatches: number;
  /** the first few */
  first: Mismatch[];
}

const CHUNK_PAGES = 2048;
const KEEP = 10;

class Checker {
  readonly result: VerifyResult = { pages: 0, mismatches: 0, first: [] };
  private readonly buf: Buffer;
  private readonly hashes = new BigUint64Array(CHUNK_PAGES);
  private readonly zero = new Uint8Array(CHUNK_PAGES);

  constructor(private readonly reader: SnapshotReader) {
    this.buf = Buffer.alloc(CHUNK_PAGES * reader.pageSize);
  }

  /**
   * Check `pages` pages read by `read(buf)`: against stored pages src, src+1, ... or (src null) against zero.
   * `where(i)` names page i for a report.
   */
  check(pages: number, src: number | null, read: (b: Buffer, at: number) => void, where: (i: number) => string): void {
    const ps = this.reader.pageSize;
    const seed = this.reader.manifest.hash.seed;
    for (let at = 0; at < pages; at += CHUNK_PAGES) {
      const n = Math.min(CHUNK_PAGES, pages - at);
      const b = this.buf.subarray(0, n * ps);
      read(b, at);
      scanPages(b, n, ps, seed, this.hashes, this.zero);
      for (let i = 0; i < n; i++) {
        this.result.pages++;
        let problem: string | null = null;
        if (src === null) {
          if (!this.zero[i]) problem = 'should be zero, holds data';
        } else {
          const want = this.reader.hashOf(src + at + i);
          if (this.zero[i]) problem = 'holds zeros, should hold stored data';
          else if (this.hashes[i] !== want) problem = `hash ${this.hashes[i]!.toString(16)}, snapshot has ${want.toString(16)}`;
        }
        if (problem) {
          this.result.mismatches++;
          if (this.result.first.length < KEEP) this.result.first.push({ where: where(at + i), problem });
        }
      }
    }
  }
}

const hex = (a: Addr) => `0x${a.toString(16)}`;

/**
 * Checks a restore as it goes: each object through its memfd once it is filled (nothing writes to it afterwards,
 * and its descriptor is not kept), then the host's memory once the restore is full.
 */
export class Verifier {
  private readonly c: Checker;

  constructor(private readonly reader: SnapshotReader) {
    this.c = new Checker(reader);
  }

  /** Check object `o`'s content, read through `fd`. */
  object(o: ObjectPlan, fd: number): void {
    const ps = this.reader.pageSize;
    for (const { run, offset, pages, src } of this.reader.stretches(o.object)) {
      if (run.verdict !== 'data' && run.verdict !== 'zero') continue;
      this.c.check(pages, src ?? null, (b, at) => {
        try {
          // past the object's end (its last page) it reads as zeros, as the snapshot holds it
          b.fill(0, readSync(fd, b, 0, b.length, (offset + at) * ps));
        } catch (e) {
          throw fromNodeError(e, 'pread', `object ${o.object.id}`);
        }
      }, (i) => `object ${o.object.id} + 0x${((offset + i) * ps).toString(16)}`);
    }
  }

  /** Check every page placed in the host's memory, and give the whole result. `skip`: ranges poisoned during the restore (damaged frames), reported on their own and not read. */
  memory(hostPid: number, content: ContentPlan, skip: readonly { addr: Addr; pages: number }[] = []): VerifyResult {
    // /proc/PID/mem rather than process_vm_readv: it reads PROT_NONE regions too
    let mem: number;
    try {
      mem = openSync(`/proc/${hostPid}/mem`, 'r');
    } catch (e) {
      throw fromNodeError(e, 'open', `/proc/${hostPid}/mem`);
    }
    const ps = this.reader.pageSize;
    const fromHost = (addr: Addr) => (b: Buffer, at: number) => {
      const a = addr + BigInt(at * ps);
      let got: number;
      try {
        got = readSync(mem, b, 0, b.length, Number(a));
      } catch (e) {
        throw fromNodeError(e, 'read', `the restore host at ${hex(a)}`);
      }
      if (got !== b.length) throw new Error(`short read of the restore host at ${hex(a)}`);
    };
    try {
      checkMemory(this.c, fromHost, ps, content, skip);
    } finally {
      closeSync(mem);
    }
    return this.c.result;
  }
}

function checkMemory(c: Checker, fromHost: (addr: Addr) => (b: Buffer, at: number) => void, ps: number, content: ContentPlan, skip: readonly { addr: Addr; pages: number }[]): void {
  const t = content.table;
  const skipped = (p: number) => skip.some((d) => p >= Number(d.addr / BigInt(ps)) && p < Number(d.addr / BigInt(ps)) + d.pages);
  for (let s = 0; s < t.pages.length; s++) {
    if (t.op[s] === Op.POISON) continue;
    // check the segment in stretches that avoid poisoned pages
    for (let i = 0; i < t.pages[s]!; ) {
      if (skipped(t.page[s]! + i)) {
        i++;
        continue;
      }
      let n = 1;
      while (i + n < t.pages[s]! && !skipped(t.page[s]! + i + n)) n++;
      const addr = BigInt(t.page[s]! + i) * BigInt(ps);
      c.check(n, t.op[s] === Op.DATA ? t.src[s]! + i : null, fromHost(addr), (k) => hex(addr + BigInt(k * ps)));
      i += n;
    }
  }
  for (const w of content.writes) c.check(w.pages, w.src, fromHost(w.addr), (i) => hex(w.addr + BigInt(i * ps)));
}
