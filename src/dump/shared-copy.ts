/**
 * The precopy of shared memory that nothing writes but its mappings: shared anonymous memory (MAP_SHARED |
 * MAP_ANONYMOUS: what a process shares with the children it forks, as PostgreSQL's buffers are) and SysV segments
 * (no descriptor: a process maps one by its id), in shmem or in hugetlb pages (unnamedSharedObject). Once every mapping of the object is write-protected
 * (WriteTracker.trackShared), a page of it that no mapping shows written since is as the live pass copied it. That
 * holds only while no mapping but those protected can write it:
 * - every process mapping it is a target whose writes are tracked, or forked from one since (see below), checked once
 *   its mappings are protected and before it is copied. Shared anonymous memory: over every process on the system (a
 *   mapping made later must come from a fork of one of them). A SysV segment: the kernel counts its mappings
 *   (/proc/sysvipc/shm), and stamps the segment whenever one is removed, by anyone, so a mapping made later and still
 *   there is counted, and one made and removed is seen (watchSegment, check);
 * - every process one of them forks meanwhile is there, frozen, once the freeze comes: a child keeps its parent's
 *   registration and protection under a userfaultfd of its own that the fork event brings (fork-events.ts), and its
 *   mappings are added to those looked at; one gone may have written it unseen. Where the kernel does not tell forks
 *   (EVENT_FORK needs CAP_SYS_PTRACE), none of them may fork (ForkWitness); a SysV segment counts a fork's mappings;
 * - each keeps exactly the mappings protected (a mapping duplicated by mremap is not registered).
 * Checked once frozen (check()); else the object is read frozen, saying why. Not seen, as for the rest of a precopy:
 * writes by DMA or through long-term pins, and a root process mapping the object through /proc/PID/map_files (which
 * neither counts nor stamps a SysV segment).
 */
import { fstatSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isErrno, type Addr } from '../native/index.js';
import { objectKey, parseMapsOf, readProcText, readStat, statusNumber, unnamedSharedObject, startedAtMs, shmSegment, inOurIpcNamespace, processesMapping, isAlive, type Region } from '../proc/index.js';
import { LiveCopy } from './precopy.js';
import { PageRanges, pageOf } from './page-ranges.js';
import type { Segment } from './pages.js';

/** What says whether a process forked since its mappings were protected: why it may have (null: it did not). */
export interface ForksSeen {
  forked(): string | null;
}

/** One mapping of the object: in which process, where, and the object's page it maps first. */
export interface SharedMapping {
  pid: number;
  start: Addr;
  end: Addr;
  first: number;
  /** false: it may never write (no VM_MAYWRITE, as a SysV segment attached SHM_RDONLY), so it is not protected */
  writes: boolean;
}

export class SharedCopy {
  readonly key: string;
  readonly start: Addr;
  /** a SysV segment's id (the inode maps shows) */
  readonly shmid: number | undefined;
  /** in hugetlb pages (its mappings are protected, and written, a huge page at a time) */
  readonly huge: boolean;
  /** the object's pages as the live pass copied them, by page of the object */
  readonly live = new LiveCopy();
  readonly mappings: SharedMapping[] = [];
  /** why it is read frozen instead (set while copying, or by check()) */
  why: string | undefined;
  private clean: PageRanges | undefined;
  /** a SysV segment's last removal stamp once its mappings were protected (watchSegment) */
  private dtime: number | undefined;

  /** `pid` maps it in `r` (the first mapping met: where the summary says it is) */
  constructor(readonly pid: number, r: Region) {
    this.key = objectKey(r);
    this.start = r.start;
    this.shmid = unnamedSharedObject(r) === 'sysv' ? r.inode : undefined;
    this.huge = r.backing === 'hugetlbfs';
  }

  /** The processes that map it. */
  get pids(): number[] {
    return [...new Set(this.mappings.map((m) => m.pid))];
  }

  /**
   * A SysV segment, once every mapping the targets have of it is protected: recorded for check(), which counts its
   * mappings once frozen, when the forks made meanwhile are known too (one counted now may be a fork told since
   * tracking began). Its stamps are whole seconds: a removal stamped in the current second may be followed by another
   * stamped the same, so the segment is read again in the next.
   */
  async watchSegment(): Promise<void> {
    let ours: boolean;
    try {
      ours = inOurIpcNamespace(this.pid);
    } catch (e) {
      if (isAlive(this.pid)) throw e;
      this.why = `process ${this.pid}, which maps it, is gone`;
      return;
    }
    if (!ours) {
      this.why = `it is a SysV segment of another IPC namespace than pagesnap's (whose mappings cannot be counted)`;
      return;
    }
    for (let tries = 0; tries < 3; tries++) {
      const now = Math.floor(Date.now() / 1000);
      const s = shmSegment(this.shmid!);
      if (!s) {
        this.why = 'its SysV segment is gone';
        return;
      }
      if (s.dtime < now) {
        this.dtime = s.dtime;
        return;
      }
      await sleep((now + 1) * 1000 - Date.now() + 10);
    }
    this.why = 'a mapping of it is removed every second';
  }

  /**
   * Once frozen: whether the copy can still be trusted (see the top of this file), given whether each mapping
   * process is still tracked, and its fork witness. Sets `why` when it cannot.
   */
  check(tracked: (pid: number) => boolean, witness: (pid: number) => ForksSeen | undefined): void {
    if (this.dtime !== undefined && !this.why) this.why = this.segmentChanged(this.dtime);
    for (const pid of this.pids) {
      if (this.why) return;
      const w = witness(pid);
      // (one that exited took with its page tables what it wrote)
      if (!tracked(pid)) this.why = `process ${pid}, which maps it, ${isAlive(pid) ? 'is no longer tracked' : 'has exited since it was protected'}`;
      // (a SysV segment counts a fork's mappings; shared anonymous memory has only the witness)
      else if (!w && this.dtime === undefined) this.why = `whether process ${pid}, which maps it, forked cannot be seen`;
      else this.why = w?.forked() ?? this.mapsChanged(pid);
    }
  }

  /**
   * Why the SysV segment may now have mappings that are not protected (undefined: it has none). A mapping made is
   * counted (a fork's too); one removed is stamped: whoever's it was, what was written through it is not seen. The
   * mappings of the forks pagesnap was told of are among `mappings` by now (adoptForked), and each inherited its
   * parent's protection (a mapping a child made anew has none, and its pages read as written): with none removed, a
   * count equal to theirs leaves no mapping made by another process.
   */
  private segmentChanged(dtime: number): string | undefined {
    const s = shmSegment(this.shmid!);
    if (!s) return 'its SysV segment is gone';
    if (s.dtime !== dtime) return 'a mapping of its SysV segment was removed meanwhile: what was written through it is not seen';
    if (s.nattch !== this.mappings.length) return `it is mapped ${s.nattch} times, ${this.mappings.length} of them by processes tracked`;
    return undefined;
  }

  /** Why `pid` no longer maps it exactly where it did when its mappings were protected (undefined: it does). */
  private mapsChanged(pid: number): string | undefined {
    let text: string;
    try {
      text = readProcText(pid, 'maps');
    } catch (e) {
      if (isAlive(pid)) throw e;
      return `process ${pid}, which maps it, is gone`; // (killed while frozen)
    }
    const now = parseMapsOf(text, this.key);
    const then = this.mappings.filter((m) => m.pid === pid);
    const same = now.length === then.length && now.every((e, i) => e.start === then[i]!.start && e.end === then[i]!.end);
    return same ? undefined : `process ${pid} mapped it again or unmapped some of it`;
  }

  /**
   * Split a window of the object's planned segments into pages to read and pages taken from the copy; `unwritten`
   * gives, for a mapping, the pages of it not written through it since it was protected.
   */
  reuse(segments: Segment[], unwritten: (m: SharedMapping) => PageRanges): { segments: Segment[]; reused: number } {
    if (this.why) return { segments, reused: 0 };
    this.clean ??= this.cleanPages(unwritten);
    return this.live.reuse(0n, segments, this.clean);
  }

  /** The object's pages that no mapping shows written (a page no mapping covers cannot have been written). */
  private cleanPages(unwritten: (m: SharedMapping) => PageRanges): PageRanges {
    const written: [number, number][] = [];
    for (const m of this.mappings) {
      if (!m.writes) continue;
      const shift = m.first - pageOf(m.start);
      const end = pageOf(m.end) + shift;
      let pos = m.first;
      const c = unwritten(m);
      for (let i = 0; i < c.length; i++) {
        if (c.start(i) + shift > pos) written.push([pos, c.start(i) + shift]);
        pos = c.end(i) + shift;
      }
      if (end > pos) written.push([pos, end]);
    }
    written.sort((a, b) => a[0] - b[0]);
    const clean = new PageRanges();
    let pos = 0;
    for (const [a, b] of written) {
      if (a > pos) clean.push(pos, a);
      pos = Math.max(pos, b);
    }
    clean.push(pos, Number.MAX_SAFE_INTEGER);
    return clean;
  }
}

/**
 * Once every mapping the processes tracked have of each object is protected: whether those are all it has (else the
 * copy's `why` says who else may map it). A SysV segment: its stamp now, and the kernel's count once frozen, when
 * its forks are known too (watchSegment, check). Shared anonymous memory: every process on the system, from its maps,
 * but those `forked` from the tracked ones meanwhile (their forks are looked at once frozen) and those gone since; one
 * whose maps cannot be read by when it started (mayMap). `fd`: the object, open.
 */
export async function onlyTrackedMap(copies: readonly { copy: SharedCopy; fd: number }[], forked: (pid: number) => boolean): Promise<void> {
  for (const { copy } of copies) if (copy.shmid !== undefined) await copy.watchSegment();
  const anonymous = copies.filter((x) => x.copy.shmid === undefined);
  if (anonymous.length === 0) return;
  const { mapping, unreadable } = processesMapping(anonymous.map((x) => x.copy.key));
  for (const { copy, fd } of anonymous) {
    // (one exited since maps nothing now, reaped or not (a zombie's maps are empty): what it wrote is in the object)
    const other = mapping.get(copy.key)!.find((pid) => !copy.pids.includes(pid) && !forked(pid) && isAlive(pid));
    // When it was made: its birth time, which tmpfs gives (its ctime moves with every write fault through a mapping);
    // hugetlbfs gives none, but no fault moves its ctime (measured). None known: any process may map it.
    const st = fstatSync(fd, { bigint: true });
    const born = st.birthtimeNs > 0n ? st.birthtimeNs : copy.huge ? st.ctimeNs : 0n;
    const made = { ms: Number(born / 1_000_000n), bytes: Number(st.size) };
    const unseen = unreadable.find((pid) => isAlive(pid) && mayMap(pid, made, copy.pid));
    if (other !== undefined) copy.why = `process ${other} maps it and is not tracked`;
    else if (unseen !== undefined) copy.why = `process ${unseen} may map it (its maps cannot be read)`;
  }
}

/** How far apart two instants must be to be told apart here: ticks of 10 ms, and a realtime clock set meanwhile. */
const MARGIN_MS = 2000;

/**
 * Whether a process whose maps cannot be read (even root may not read some, as a sandbox's init) may map the object,
 * `made` at that time with that size, that `mapper` maps. A process maps shared anonymous memory only if it made it
 * or inherited it through a fork made since, or opened it through /proc/PID/map_files. One that started before the
 * object was made did not inherit it; and the one that made it is `mapper` or one of its ancestors no higher than the
 * lowest of them that had already started then (those below it started after, so inherited it). So a process that
 * started before, other than that lowest ancestor, does not map it; nor does that ancestor if its address space never
 * grew as large as the object, which its maker mapped whole (VmPeak: the most it ever held, since its last exec).
 * That ancestor is often init, a daemon's parent once the one that started it has exited: a daemon starts by making
 * its shared memory, too soon after its own start for the clock to tell which came first.
 */
function mayMap(pid: number, made: { ms: number; bytes: number }, mapper: number): boolean {
  try {
    if (startedAtMs(pid) > made.ms - MARGIN_MS) return true;
    let a = mapper;
    while (startedAtMs(a) > made.ms - MARGIN_MS) {
      const up = readStat(a).ppid;
      if (up <= 0) return true;
      a = up;
    }
    return a === pid && (statusNumber(pid, 'VmPeak') ?? Infinity) * 1024 >= made.bytes;
  } catch (e) {
    // (gone meanwhile: it maps nothing now, and what it wrote before was there to be copied; an ancestor gone breaks
    // the line looked up, so any process may be the one that made it)
    if (isErrno(e, 'ENOENT', 'ESRCH')) return isAlive(pid);
    throw e;
  }
}
