/**
 * Reversible changes to machine settings (zram swap, KSM, THP, hugetlb pages), for the tests, the lab and the
 * benchmarks. Changes are kept in one journal shared by every pagesnap process on the machine, each with the pids
 * that need it: a change is journaled before it is made, and undone (newest first) when the last process needing it
 * restores, exits (atExit) or dies (a watchdog undoes what it alone needed once it is gone; failing that, the next
 * run finds it dead). So two runs at once never pull a setting from under each other, and a run killed outright
 * leaves nothing changed.
 */
import { readFileSync, writeFileSync, existsSync, mkdirSync, readdirSync, openSync, writeSync, closeSync, renameSync } from 'node:fs';
import { PagesnapError, swapon, swapoff, flock, isErrno, atExit, watchdog, shellQuote, sleepSync } from '../native/index.js';
import { isAlive } from '../proc/process.js';

type Undo = { kind: 'sysfs'; path: string; old: string } | { kind: 'zram-swap'; device: string; sysfs: string };

/** One change to the machine: what it was (a sysfs path, or 'swap'), how to undo it, and who needs it. */
interface Entry {
  key: string;
  undo: Undo;
  needs: number[];
}

const JOURNAL_DIR = '/run/pagesnap';
const JOURNAL = `${JOURNAL_DIR}/settings.json`;
const LOCK_EX = 2;
const LOCK_UN = 8;

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

function undo(c: Undo): void {
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

/** The shared journal, under an exclusive lock while `f` runs; `save` writes it (before a change is made). */
function withJournal<T>(f: (entries: Entry[], save: () => void) => T): T {
  mkdirSync(JOURNAL_DIR, { recursive: true, mode: 0o700 });
  const lock = openSync(`${JOURNAL_DIR}/settings.lock`, 'a', 0o600);
  try {
    flock(lock, LOCK_EX);
    const entries = existsSync(JOURNAL) ? (JSON.parse(readFileSync(JOURNAL, 'utf8')) as Entry[]) : [];
    const save = () => {
      writeFileSync(`${JOURNAL}.tmp`, JSON.stringify(entries), { mode: 0o600 });
      renameSync(`${JOURNAL}.tmp`, JOURNAL);
    };
    const errors = release(entries, () => false);
    const out = f(entries, save);
    save();
    if (errors.length) throw new PagesnapError(`could not restore machine settings: ${errors.join('; ')}`);
    return out;
  } finally {
    flock(lock, LOCK_UN);
    closeSync(lock);
  }
}

/**
 * Drop `gone` pids and dead ones from every entry; undo, newest first, the entries nobody needs any more. A change
 * made over another of the same setting waits for it: undone first, it would put back the value from before both
 * while the later one is still needed.
 */
function release(entries: Entry[], gone: (pid: number) => boolean): string[] {
  const errors: string[] = [];
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    e.needs = e.needs.filter((p) => !gone(p) && isAlive(p)); // a zombie needs nothing
    if (e.needs.length > 0 || entries.some((x, j) => j > i && x.key === e.key)) continue;
    try {
      undo(e.undo);
    } catch (err) {
      errors.push((err as Error).message);
    }
    entries.splice(i, 1);
  }
  return errors;
}

/** Once `pid` has died (waiting up to 5 s for it to be gone), undo what it alone needed. Run by the watchdog. */
export function releaseDead(pid: number): void {
  for (let i = 0; i < 100 && isAlive(pid); i++) sleepSync(50);
  withJournal(() => {});
}

/** A watchdog that runs releaseDead(this process) in a new node if this process is killed outright. */
function deathWatch(): { dismiss(): void } {
  // (execArgv carries the loader this module runs under, e.g. tsx in the tests)
  const code = `(await import(${JSON.stringify(import.meta.url)})).releaseDead(${process.pid})`;
  return watchdog(['exec', process.execPath, ...process.execArgv, '--input-type=module', '-e', code].map(shellQuote).join(' '));
}

export class HostSettings {
  private forget: (() => void) | null = null;
  private dog: { dismiss(): void } | null = null;

  /** Undoes what processes that died needed and nobody else does. */
  constructor() {
    withJournal(() => {});
  }

  /** Mark this process as needing `entry`, and restore on exit. */
  private need(e: Entry): void {
    if (!e.needs.includes(process.pid)) e.needs.push(process.pid);
    this.forget ??= atExit(() => this.restore());
    this.dog ??= deathWatch();
  }

  /**
   * Set a sysfs/procfs value, remembering the old one. When it already holds `value`, this process needs that as it
   * is; a value another process set is changed over, and put back when this process lets go (then theirs in turn).
   */
  set(path: string, value: string): void {
    withJournal((entries, save) => {
      const old = readValue(path);
      const last = entries.filter((x) => x.key === path).pop();
      if (old === value) {
        if (last) this.need(last);
        return;
      }
      const e: Entry = { key: path, undo: { kind: 'sysfs', path, old }, needs: [] };
      entries.push(e);
      this.need(e);
      save();
      writeValue(path, value);
    });
  }

  /**
   * Make sure some swap is on: when none is, set up a zram device and swap on it. Returns a reason string when
   * that cannot be done here (no zram), else null.
   */
  ensureSwap(sizeBytes = 1 << 30): string | null {
    return withJournal((entries, save) => {
      const ours = entries.find((x) => x.key === 'swap');
      if (ours) {
        this.need(ours);
        return null;
      }
      if (swapTotalKiB() > 0) return null;
      const dev = findFreeZram();
      if (!dev) return 'no swap is enabled and no free zram device exists (/sys/block/zram*; modprobe zram)';
      const sysfs = `/sys/block/${dev}`;
      const device = `/dev/${dev}`;
      const e: Entry = { key: 'swap', undo: { kind: 'zram-swap', device, sysfs }, needs: [] };
      entries.push(e);
      this.need(e);
      save();
      writeValue(`${sysfs}/disksize`, String(sizeBytes));
      writeSwapHeader(device, sizeBytes);
      swapon(device);
      return null;
    });
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
    // (set to what it holds: no change, but this process now needs whatever another one changed it to)
    const enabled = readValue(`${base}/enabled`);
    this.set(`${base}/enabled`, enabled === 'never' ? 'madvise' : enabled);
    this.set(`${base}/use_zero_page`, '1');
    return null;
  }

  /**
   * Transparent huge pages only where a region asks for them (MADV_HUGEPAGE), and only of the PMD size: what the
   * test scenarios' layouts are counted for. A machine that gives every region huge pages (THP `always`, as Fedora
   * and RHEL ship) or multi-size ones (mTHP sizes on `always`, or on `inherit` under it) fills in the pages about
   * each one written, anonymous or shmem, and the regions no longer hold what they were built to hold.
   */
  thpOnlyWhereAdvised(): string | null {
    const base = '/sys/kernel/mm/transparent_hugepage';
    if (!existsSync(`${base}/enabled`)) return 'this kernel has no transparent huge pages';
    const pmdKiB = Number(readValue(`${base}/hpage_pmd_size`)) / 1024;
    const onlyAdvised = (path: string, keep: string[], instead: string) => {
      if (existsSync(path) && !keep.includes(readValue(path))) this.set(path, instead);
    };
    onlyAdvised(`${base}/enabled`, ['madvise', 'never'], 'madvise');
    onlyAdvised(`${base}/shmem_enabled`, ['advise', 'never', 'deny'], 'never');
    for (const d of readdirSync(base).filter((n) => /^hugepages-\d+kB$/.test(n))) {
      // (sizes other than the PMD's: none at all; the PMD size as the top-level setting says)
      const pmd = d === `hugepages-${pmdKiB}kB`;
      onlyAdvised(`${base}/${d}/enabled`, pmd ? ['inherit', 'madvise', 'never'] : ['never'], pmd ? 'inherit' : 'never');
      onlyAdvised(`${base}/${d}/shmem_enabled`, ['inherit', 'advise', 'never'], 'never');
    }
    return null;
  }

  /** Reserve at least `count` hugetlb pages of `kiB` (default: the default size, 2 MiB on x86-64). */
  reserveHugepages(count: number, kiB?: number): string | null {
    const path = kiB === undefined ? '/proc/sys/vm/nr_hugepages' : `/sys/kernel/mm/hugepages/hugepages-${kiB}kB/nr_hugepages`;
    if (!existsSync(path)) return kiB === undefined ? 'this kernel has no hugetlb pages' : `this machine has no ${kiB} KiB hugetlb pages (${path})`;
    const now = Number(readValue(path));
    this.set(path, String(Math.max(now, count)));
    if (now >= count) return null;
    let got = Number(readValue(path));
    if (got < count && existsSync('/proc/sys/vm/compact_memory')) {
      // Fragmented memory: compact it once (an action, nothing to restore) and ask again.
      writeValue('/proc/sys/vm/compact_memory', '1');
      writeValue(path, String(count));
      got = Number(readValue(path));
    }
    return got >= count ? null : `only ${got} of ${count} hugetlb pages${kiB === undefined ? '' : ` of ${kiB} KiB`} could be reserved (memory too fragmented)`;
  }

  /**
   * This process no longer needs its changes: undo, newest first, those no other live process needs. Safe to call
   * more than once.
   */
  restore(): void {
    this.forget?.();
    this.forget = null;
    const errors = withJournal((entries) => release(entries, (pid) => pid === process.pid));
    this.dog?.dismiss();
    this.dog = null;
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
