/**
 * /proc/kpageflags and /proc/kpagecount, indexed by PFN (root only). A reader that cannot open them says
 * "unavailable" for every page instead of guessing.
 */
import { openSync, readSync, closeSync } from 'node:fs';
import { isErrno } from '../native/index.js';

/** Bit numbers from include/uapi/linux/kernel-page-flags.h and the kernel-internal ones above 31. */
export const KPF_NAMES: Readonly<Record<number, string>> = {
  0: 'LOCKED', 1: 'ERROR', 2: 'REFERENCED', 3: 'UPTODATE', 4: 'DIRTY', 5: 'LRU', 6: 'ACTIVE', 7: 'SLAB',
  8: 'WRITEBACK', 9: 'RECLAIM', 10: 'BUDDY', 11: 'MMAP', 12: 'ANON', 13: 'SWAPCACHE', 14: 'SWAPBACKED',
  15: 'COMPOUND_HEAD', 16: 'COMPOUND_TAIL', 17: 'HUGE', 18: 'UNEVICTABLE', 19: 'HWPOISON', 20: 'NOPAGE', 21: 'KSM',
  22: 'THP', 23: 'OFFLINE', 24: 'ZERO_PAGE', 25: 'IDLE', 26: 'PGTABLE',
  32: 'RESERVED', 33: 'MLOCKED', 34: 'OWNER_2', 35: 'PRIVATE', 36: 'PRIVATE_2', 37: 'OWNER_PRIVATE', 38: 'ARCH',
  39: 'UNCACHED', 40: 'SOFTDIRTY', 41: 'ARCH_2',
};

export function kpfNames(flags: bigint): string[] {
  const out: string[] = [];
  for (let b = 0; b < 64; b++) if ((flags >> BigInt(b)) & 1n) out.push(KPF_NAMES[b] ?? `BIT${b}`);
  return out;
}

export interface PfnInfo {
  flags: bigint;
  count: bigint;
}

export class KpageReader {
  private readonly flagsFd: number | null;
  private readonly countFd: number | null;
  /** Why the files could not be opened, when they could not. */
  readonly unavailable: string | null;

  constructor() {
    let why: string | null = null;
    const open = (path: string) => {
      try {
        return openSync(path, 'r');
      } catch (e) {
        why ??= isErrno(e, 'EACCES', 'EPERM') ? `${path} needs root` : `${path}: ${(e as Error).message}`;
        return null;
      }
    };
    this.flagsFd = open('/proc/kpageflags');
    this.countFd = open('/proc/kpagecount');
    this.unavailable = why;
  }

  /** Flags and map count for each PFN (null where the PFN is unknown or the files are unreadable). */
  read(pfns: readonly (bigint | null)[]): (PfnInfo | null)[] {
    if (this.flagsFd === null || this.countFd === null) return pfns.map(() => null);
    const b = Buffer.alloc(8);
    const one = (fd: number, pfn: bigint): bigint | null => (readSync(fd, b, 0, 8, Number(pfn * 8n)) === 8 ? b.readBigUInt64LE(0) : null);
    return pfns.map((pfn) => {
      if (pfn === null) return null;
      const flags = one(this.flagsFd!, pfn);
      const count = one(this.countFd!, pfn);
      return flags === null || count === null ? null : { flags, count };
    });
  }

  close(): void {
    if (this.flagsFd !== null) closeSync(this.flagsFd);
    if (this.countFd !== null) closeSync(this.countFd);
  }
}
