/**
 * Which pages of a running process it writes, on a kernel without soft-dirty bits: a userfaultfd made inside the
 * target (one injected system call), taken over with pidfd_getfd and closed there again, registers the process's
 * private writable memory for write protection with WP_ASYNC. The kernel then resolves every write itself (the
 * process never waits on us) and clears the page's write protection, which PAGEMAP_SCAN reports as PAGE_IS_WRITTEN.
 * pagesnap holds the only descriptor: closing it, on stop() or as pagesnap dies, unregisters everything and clears
 * the protection (userfaultfd's release).
 * Writes that bypass page faults are not seen: DMA, or the kernel writing through long-term pins (io_uring fixed
 * buffers, RDMA), into memory pinned before tracking began.
 */
import * as n from '../native/index.js';
import { PagesnapError, UFFD_FEATURE, UFFDIO_REGISTER_MODE, UFFDIO_WRITEPROTECT_MODE, PAGE_IS, isErrno, sleepSync, type Addr, type ScanRegion } from '../native/index.js';
import { Pagemap, perRegion, memoryTask, statusNumber, vdsoOf, unnamedSharedObject, uptimeTicks, type Region } from '../proc/index.js';
import { injectSyscall, syscallInstruction } from './inject.js';
import { freeze } from './freeze.js';
import { PageRanges, pageOf } from './page-ranges.js';
import type { ForkEvents } from './fork-events.js';

const O_CLOEXEC = 0o2000000;
const UFFD_USER_MODE_ONLY = 1;
const SYS_CLOSE = 3;
const EPERM = 1n;

export interface Range {
  start: Addr;
  end: Addr;
}

/** Memory whose writes are tracked: private, writable, anonymous, not watched by another userfaultfd already. */
function trackable(r: Region): boolean {
  return ['anon-private', 'heap', 'stack'].includes(r.kind) && r.perms.write && !r.perms.shared && !r.vmFlags.some((f) => f === 'um' || f === 'uw' || f === 'ui');
}

/**
 * Shared anonymous memory (MAP_SHARED | MAP_ANONYMOUS) and SysV segments, in shmem pages not mapped huge, or in
 * hugetlb pages (tracked a huge page at a time): their objects have no descriptor, so nothing writes them but their
 * mappings (see shared-copy.ts for what else must hold).
 */
export function sharedTrackable(r: Region): boolean {
  return unnamedSharedObject(r) !== undefined && !(r.fields.ShmemPmdMapped! > 0) && !r.vmFlags.some((f) => f === 'um' || f === 'uw' || f === 'ui');
}

export class WriteTracker {
  /** the regions registered */
  readonly ranges = new PageRanges();
  /** the shared mappings registered (trackShared: after the others, so apart from them to stay in address order) */
  readonly sharedRanges = new PageRanges();
  /** the pages in them write-protected: only these can read as unwritten */
  readonly protectedRuns = new PageRanges();
  /** pages of huge pages in them left unprotected (see protectable) */
  hugeLeft = 0;
  private stopped = false;
  private closing?: Promise<void>;
  /** its forks are counted in this family of `events` (undefined: they are not seen, see ForkWitness) */
  family: number | undefined;
  /** whether it is a fork's, inherited from its parent's (see inherited): its family is named for the target's */
  get inherited(): boolean {
    return this.uffd < 0;
  }
  /** when tracking began, in clock ticks since boot (as a process's start time): a process started since is new */
  startedTicks = 0;
  private events: ForkEvents | undefined;

  /** `uffd` -1: a process forked from a tracked one, whose userfaultfd ForkEvents holds (see inherited) */
  private constructor(readonly pid: number, private readonly uffd: number, private readonly huge: boolean, private readonly pm: Pagemap) {}

  /**
   * Start tracking `pid`'s writes; track() then says to which of its regions. Throws, saying why, where it cannot.
   * `huge`: protect huge pages too (see protectable). `events`: where its forks are read, if they can be (fork-events.ts).
   */
  static start(pid: number, opts: { huge: boolean; events?: ForkEvents }): WriteTracker {
    const vdso = vdsoOf(pid);
    if (!vdso) throw new PagesnapError(`process ${pid} has no vDSO to run a system call from`, { code: 'ENOENT' });
    const uffd = takeUffd(pid, vdso);
    try {
      const family = opts.events?.family();
      let forks = family !== undefined;
      try {
        n.uffdApi(uffd, UFFD_FEATURE.WP_ASYNC | (forks ? UFFD_FEATURE.EVENT_FORK : 0));
      } catch (e) {
        // (EVENT_FORK needs CAP_SYS_PTRACE; refused, the features are not set, and may be asked again without)
        if (!forks || !isErrno(e, 'EPERM')) throw e;
        forks = false;
        n.uffdApi(uffd, UFFD_FEATURE.WP_ASYNC);
      }
      const t = new WriteTracker(pid, uffd, opts.huge, new Pagemap(pid, { method: 'scan' }));
      t.startedTicks = uptimeTicks();
      if (forks) {
        t.family = family;
        t.events = opts.events;
        // (made in the target without O_NONBLOCK, on which poll errs: the flag is the open file's, now ours alone)
        n.setNonblocking(uffd);
        opts.events!.watch(uffd, family!);
      }
      return t;
    } catch (e) {
      n.closeFd(uffd);
      throw e;
    }
  }

  /**
   * `pid`, forked from the process `parent` tracks while it was tracked: its memory kept the registration and the
   * protection its parent's had then, under a userfaultfd of its own (held by ForkEvents). Nothing of it was copied.
   */
  static inherited(pid: number, parent: WriteTracker): WriteTracker {
    const t = new WriteTracker(pid, -1, parent.huge, new Pagemap(pid, { method: 'scan' }));
    for (const [from, to] of [[parent.ranges, t.ranges], [parent.sharedRanges, t.sharedRanges]] as const) {
      for (let i = 0; i < from.length; i++) to.push(from.start(i), from.end(i));
    }
    t.family = parent.family;
    t.startedTicks = parent.startedTicks;
    return t;
  }

  /**
   * Track the writes to those of `regions` that are trackable (a batch of them, in address order after any before):
   * register each, and write-protect its pages. Returns the regions tracked.
   */
  track(regions: readonly Region[]): Region[] {
    // registered first, then scanned together: a group of them at a time, not one each (a process can have 60000)
    const groups: Region[][] = [[]];
    for (const r of regions) {
      if (!trackable(r)) {
        // (a large region between two groups would be walked for nothing)
        if (r.end - r.start > GROUP_GAP) groups.push([]);
        continue;
      }
      if (this.register(r)) groups[groups.length - 1]!.push(r);
    }
    const tracked: Region[] = [];
    for (const group of groups) {
      if (group.length === 0) continue;
      const populated = this.pm.scan(group[0]!.start, group[group.length - 1]!.end, PAGE_IS.PRESENT | PAGE_IS.SWAPPED, PAGE_IS.WPALLOWED | PAGE_IS.HUGE | PAGE_IS.PFNZERO);
      for (const [r, mine] of perRegion(group, populated)) {
        const p = protectable(mine, this.huge);
        for (const x of p.runs) this.protect(x);
        this.ranges.push(pageOf(r.start), pageOf(r.end));
        for (const x of p.runs) this.protectedRuns.push(pageOf(x.start), pageOf(x.end));
        this.hugeLeft += p.hugeLeft;
        tracked.push(r);
      }
    }
    return tracked;
  }

  /**
   * Track the writes through a shared mapping: register it and write-protect `runs` of it, the pages where its object
   * holds data, ptes or not (a marker goes where none is: a page first touched later must not read as unwritten).
   * False when it cannot be registered. (The objects' mappings come in any order, and once more for a copy made again.)
   */
  trackShared(r: Region, runs: readonly Range[]): boolean {
    if (!this.register(r)) return false;
    this.sharedRanges.insert(pageOf(r.start), pageOf(r.end));
    for (const x of runs) this.protect(x);
    return true;
  }

  /**
   * The pages of a shared mapping's [start, end) not written through it since trackShared: their pte, or the marker
   * in its place, still carries the protection. A page with neither is not among them: a pte zapped after a write
   * (reclaim, MADV_DONTNEED) leaves nothing, while the object keeps what was written. (This kernel reports such a
   * page WRITTEN; asking for a pte or marker says so whatever a kernel reports.)
   */
  unwrittenShared(start: Addr, end: Addr): PageRanges {
    return PageRanges.from(this.pm.scan(start, end, PAGE_IS.PRESENT | PAGE_IS.SWAPPED, PAGE_IS.WPALLOWED, { mask: PAGE_IS.WPALLOWED | PAGE_IS.WRITTEN, inverted: PAGE_IS.WRITTEN }));
  }

  /**
   * Write-protect a run. While a fork of the process waits for its event to be read (ForkEvents reads it within a
   * poll), the kernel refuses with EAGAIN, having done nothing: asked again, a little later each time, until the
   * process has stopped forking for that long.
   */
  private protect(x: Range): void {
    for (let pause = 0.05, waited = 0; ; waited += pause, pause = Math.min(pause * 2, 5)) {
      try {
        n.uffdWriteprotect(this.uffd, x.start, Number(x.end - x.start), UFFDIO_WRITEPROTECT_MODE.WP);
        return;
      } catch (e) {
        if (!isErrno(e, 'EAGAIN') || waited > FORKING_MS) throw e;
      }
      sleepSync(pause);
    }
  }

  /** Register a region for write protection; false when it is gone since it was listed, or no longer qualifies. */
  private register(r: Region): boolean {
    try {
      n.uffdRegister(this.uffd, r.start, Number(r.end - r.start), UFFDIO_REGISTER_MODE.WP);
      return true;
    } catch (e) {
      if (isErrno(e, 'EINVAL', 'EBUSY', 'ENOMEM')) return false;
      throw e;
    }
  }

  /** The pages of [start, end) tracked throughout and not written since tracking began. */
  unwritten(start: Addr, end: Addr): PageRanges {
    const c = this.ahead;
    if (!c || start < c.start || end > c.end) return this.scan(start, end);
    return c.runs.within(pageOf(start), pageOf(end));
  }

  /**
   * Scan [start, end) at once for the unwritten() calls that follow inside it: one call for a batch of regions
   * rather than one each (a process can have 60000).
   */
  prefetch(start: Addr, end: Addr): void {
    this.ahead = { start, end, runs: this.scan(start, end) };
  }

  private ahead: { start: Addr; end: Addr; runs: PageRanges } | null = null;

  private scan(start: Addr, end: Addr): PageRanges {
    return PageRanges.from(this.pm.scan(start, end, 0, PAGE_IS.WPALLOWED, { mask: PAGE_IS.WPALLOWED | PAGE_IS.WRITTEN, inverted: PAGE_IS.WRITTEN }));
  }

  /**
   * Give the process its memory back as it was: closing the only descriptor unregisters every range and clears the
   * write protection before close returns. Safe to call twice.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.pm.close();
    if (this.uffd < 0) return;
    this.events?.unwatch(this.uffd);
    n.closeFd(this.uffd);
  }

  /** As stop(), the descriptor closed on another thread (its release walks every page registered): resolves once it is. */
  stopAside(): Promise<void> {
    if (this.stopped) return this.closing ?? Promise.resolve();
    this.stopped = true;
    this.pm.close();
    if (this.uffd < 0) return Promise.resolve();
    this.events?.unwatch(this.uffd);
    return (this.closing = n.closeAsync(this.uffd, `the userfaultfd tracking process ${this.pid}'s writes`));
  }
}

const BLOCK = 2n << 20n;
/** How long write protection waits for a process that forks without pause. */
const FORKING_MS = 2000;
/** Bytes of untracked memory past which the scan of a batch's tracked regions is split in two. */
const GROUP_GAP = 2n << 20n;

/**
 * What of a registered range to write-protect, as runs: its populated pages (present or swapped: `populated`, what
 * a scan found in it), huge ones only if `huge` says so.
 * - Holes: with WP_ASYNC the kernel marks every unpopulated page it is asked to protect (the marker reports writes
 *   there), and to hold markers it allocates page tables: protecting a sparse 64 GiB region whole left the process
 *   130 MiB of page tables it never had, which outlive the tracking.
 * - Huge pages: with WP_ASYNC a write to a protected PMD-mapped huge page splits its mapping into 512 ptes, and the
 *   process keeps them until khugepaged merges them again (measured: 2 MiB less AnonHugePages after one write).
 * What is not protected reads as written, and is read frozen; a write to a hole makes a page not protected either.
 * Two runs whose gap lies within one 2 MiB block (whose page table exists: the first run's last page is in it) are
 * protected as one, in fewer calls.
 */
function protectable(populated: readonly ScanRegion[], huge: boolean): { runs: Range[]; hugeLeft: number } {
  const runs: Range[] = [];
  let hugeLeft = 0;
  // (registered: every page of the region is WPALLOWED, so runs break only where population or size does)
  for (const s of populated) {
    if (s.categories & PAGE_IS.HUGE && !huge) {
      // (the huge zero page holds nothing to copy)
      if (!(s.categories & PAGE_IS.PFNZERO)) hugeLeft += Number((s.end - s.start) / 4096n);
      continue;
    }
    const last = runs[runs.length - 1];
    if (last && (last.end - 1n) / BLOCK === s.start / BLOCK) last.end = s.end;
    else runs.push({ start: s.start, end: s.end });
  }
  return { runs, hugeLeft };
}

/**
 * A userfaultfd of the target's: made by one of its threads (injected), duplicated into pagesnap, closed there. The
 * whole process is frozen for the two calls, so no other thread can close the descriptor's number and reuse it for
 * a file of its own in between.
 */
function takeUffd(pid: number, vdso: Range): number {
  // Under a seccomp filter, a call the filter does not allow may kill the process (SIGSYS: systemd's
  // SystemCallFilter= does so by default): nothing is run in it then.
  if ((statusNumber(pid, 'Seccomp') ?? 0) !== 0) {
    throw new PagesnapError(`process ${pid} runs under a seccomp filter, which a system call run in it could make kill it`, { code: 'EPERM' });
  }
  const at = syscallInstruction(pid, vdso);
  // (the main thread, or a live one once it has exited)
  const tid = memoryTask(pid);
  // (only its threads: the memory may change, the descriptor table must not)
  const frozen = freeze([pid], 'ptrace', { sharers: false });
  try {
    let fd = injectSyscall(tid, at, n.SYS.userfaultfd, [O_CLOEXEC]);
    // a process without the privilege (vm.unprivileged_userfaultfd = 0) may still make one for its own faults,
    // which is all write tracking needs: WP_ASYNC resolves kernel-mode writes without the descriptor
    if (fd === -EPERM) fd = injectSyscall(tid, at, n.SYS.userfaultfd, [O_CLOEXEC | UFFD_USER_MODE_ONLY]);
    if (fd < 0n) throw new PagesnapError(`process ${pid} cannot make a userfaultfd to track its writes: ${n.errnoName(Number(-fd))}`, { code: n.errnoName(Number(-fd)) });
    try {
      const pidfd = n.pidfdOpen(pid);
      try {
        return n.pidfdGetfd(pidfd, Number(fd));
      } finally {
        n.closeFd(pidfd);
      }
    } finally {
      injectSyscall(tid, at, SYS_CLOSE, [fd]);
    }
  } finally {
    frozen.thaw();
  }
}
