/**
 * Reversible changes to machine settings (zram swap, KSM, THP, hugetlb pages), for the tests, the lab and the
 * benchmarks. Every change is journaled before it is made, undone in reverse order by restore() or on any exit
 * path (atExit), and a journal left by a process that was killed outright is replayed by the next one.
 */
import { readFileSync, writeFileSync, existsSync, mkdirSync, unlinkSync, readdirSync, openSync, writeSync, closeSync } from 'node:fs';
import { PagesnapError, swapon, swapoff, isErrno, atExit } from '../native/index.js';

type Change = { kind: 'sysfs'; path: string; old: string } | { kind: 'zram-swap'; device: string; sysfs: string };

const JOURNAL_DIR = '/run/pagesnap';
const journalPath = (pid: number) => `${JOURNAL_DIR}/settings-${pid}.json`;

function readValue(path: string): string {
  const raw = readFileSync(path, 'utf8').trim();
  // Selector files list every choice and bracket the current one: "always [madvise] never".
  const m = /\[([^\]]+)\]/.exec(raw);
  return m ? m[1]! : raw;
}

function writeValue(path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch (e) {
    throw new PagesnapError(`cannot write ${JSON.stringify(value)} to ${path}: ${(e as NodeJS.ErrnoException).code}`, {
      code: (e as NodeJS.ErrnoException).code, hint: 'changing machine settings needs root', cause: e,
    });
  }
}

function undo(c: Change): void {
  if (c.kind === 'sysfs') writeValue(c.path, c.old);
  else {
    try {
      swapoff(c.device);
    } catch (e) {
      if (!isErrno(e, 'EINVAL')) throw e; // EINVAL: not swapped on any more
    }
    writeValue(`${c.sysfs}/reset`, '1');
  }
}

/** Replay journals of processes that died before restoring. */
function recoverStale(): void {
  if (!existsSync(JOURNAL_DIR)) return;
  for (const f of readdirSync(JOURNAL_DIR)) {
    const m = /^settings-(\d+)\.json$/.exec(f);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    const changes = JSON.parse(readFileSync(`${JOURNAL_DIR}/${f}`, 'utf8')) as Change[];
    for (const c of changes.reverse()) {
      try {
        undo(c);
      } catch {
        /* best effort for a dead process's leftovers */
      }
    }
    unlinkSync(`${JOURNAL_DIR}/${f}`);
  }
}

export class HostSettings {
  private changes: Change[] = [];
  private forget: (() => void) | null = null;

  constructor() {
    recoverStale();
  }

  private record(c: Change): void {
    this.forget ??= atExit(() => this.restore());
    this.changes.push(c);
    mkdirSync(JOURNAL_DIR, { recursive: true, mode: 0o700 });
    writeFileSync(journalPath(process.pid), JSON.stringify(this.changes));
  }

  /** Set a sysfs/procfs value, remembering the old one. No-op when it already holds `value`. */
  set(path: string, value: string): void {
    const old = readValue(path);
    if (old === value) return;
    this.record({ kind: 'sysfs', path, old });
    writeValue(path, value);
  }

  /**
   * Make sure some swap is on: when none is, set up a zram device and swap on it. Returns a reason string when
   * that cannot be done here (no zram), else null.
   */
  ensureSwap(sizeBytes = 1 << 30): string | null {
    if (swapTotalKiB() > 0) return null;
    const dev = findFreeZram();
    if (!dev) return 'no swap is enabled and no free zram device exists (/sys/block/zram*; modprobe zram)';
    const sysfs = `/sys/block/${dev}`;
    const device = `/dev/${dev}`;
    this.record({ kind: 'zram-swap', device, sysfs });
    writeValue(`${sysfs}/disksize`, String(sizeBytes));
    writeSwapHeader(device, sizeBytes);
    swapon(device);
    return null;
  }

  /** Turn KSM on, scanning fast, so fixtures merge within seconds. */
  enableKsm(): string | null {
    if (!existsSync('/sys/kernel/mm/ksm/run')) return 'this kernel has no KSM (/sys/kernel/mm/ksm)';
    this.set('/sys/kernel/mm/ksm/sleep_millisecs', '10');
    this.set('/sys/kernel/mm/ksm/pages_to_scan', '5000');
    this.set('/sys/kernel/mm/ksm/run', '1');
    return null;
  }

  /** Make THP available to MADV_HUGEPAGE regions (and the huge zero page). */
  enableThp(): string | null {
    const base = '/sys/kernel/mm/transparent_hugepage';
    if (!existsSync(`${base}/enabled`)) return 'this kernel has no transparent huge pages';
    if (readValue(`${base}/enabled`) === 'never') this.set(`${base}/enabled`, 'madvise');
    this.set(`${base}/use_zero_page`, '1');
    return null;
  }

  /** Reserve at least `count` default-size hugetlb pages. */
  reserveHugepages(count: number): string | null {
    const path = '/proc/sys/vm/nr_hugepages';
    if (!existsSync(path)) return 'this kernel has no hugetlb pages';
    const now = Number(readValue(path));
    if (now >= count) return null;
    this.set(path, String(count));
    let got = Number(readValue(path));
    if (got < count && existsSync('/proc/sys/vm/compact_memory')) {
      // Fragmented memory: compact it once (an action, nothing to restore) and ask again.
      writeValue('/proc/sys/vm/compact_memory', '1');
      writeValue(path, String(count));
      got = Number(readValue(path));
    }
    return got >= count ? null : `only ${got} of ${count} hugetlb pages could be reserved (memory too fragmented)`;
  }

  /** Undo every change, newest first. Safe to call more than once. */
  restore(): void {
    const errors: string[] = [];
    for (const c of this.changes.reverse()) {
      try {
        undo(c);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    this.changes = [];
    this.forget?.();
    this.forget = null;
    if (existsSync(journalPath(process.pid))) unlinkSync(journalPath(process.pid));
    if (errors.length) throw new PagesnapError(`could not restore machine settings: ${errors.join('; ')}`);
  }
}

export function swapTotalKiB(): number {
  return Number(/^SwapTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
}

function findFreeZram(): string | null {
  if (!existsSync('/sys/block')) return null;
  for (const d of readdirSync('/sys/block').filter((x) => x.startsWith('zram')).sort()) {
    if (readValue(`/sys/block/${d}/disksize`) === '0') return d;
  }
  if (existsSync('/sys/class/zram-control/hot_add')) {
    const id = readFileSync('/sys/class/zram-control/hot_add', 'utf8').trim();
    return `zram${id}`;
  }
  return null;
}

/** A version-1 swap header (what mkswap writes): swapon(2) needs nothing more on a zeroed device. */
function writeSwapHeader(device: string, sizeBytes: number): void {
  const page = Buffer.alloc(4096);
  page.writeUInt32LE(1, 1024); // version
  page.writeUInt32LE(Math.floor(sizeBytes / 4096) - 1, 1028); // last_page
  page.write('SWAPSPACE2', 4096 - 10, 'latin1');
  const fd = openSync(device, 'w');
  try {
    writeSync(fd, page, 0, page.length, 0);
  } finally {
    closeSync(fd);
  }
}
