/**
 * The precopy of shared anonymous memory (MAP_SHARED | MAP_ANONYMOUS): what a process shares with the children it
 * forks, as PostgreSQL's buffers are. Its object has no name and no descriptor, so nothing writes it but its
 * mappings: once every mapping of it is write-protected (WriteTracker.trackShared), a page of it that no mapping shows
 * written since is as the live pass copied it. That holds only while
 * - every process mapping it is a target whose writes are tracked: checked over every process on the system once its
 *   mappings are protected, before it is copied (a mapping made later must come from a fork of one of them, or from
 *   a root process opening /proc/PID/map_files, which is not seen);
 * - none of them forks: a child's mapping is not registered (the userfaultfd is not inherited), and it may write and
 *   be gone before the freeze (ForkWitness);
 * - each keeps exactly the mappings protected (a mapping duplicated by mremap is not registered).
 * Checked once frozen (check()); else the object is read frozen, saying why. Not seen, as for the rest of a precopy:
 * writes by DMA or through long-term pins.
 */
import type { Addr } from '../native/index.js';
import { parseMaps, readProcText, readStat, startedAtMs, type Region } from '../proc/index.js';
import { LiveCopy } from './precopy.js';
import { PageRanges, pageOf } from './page-ranges.js';
import type { Segment } from './pages.js';
import type { ForkWitness } from './fork-witness.js';

/** One mapping of the object: in which process, where, and the object's page it maps first. */
export interface SharedMapping {
  pid: number;
  start: Addr;
  end: Addr;
  first: number;
}

/** The object a mapping shows, as maps prints it (`dev inode`): one key for every process that maps it. */
export const sharedKey = (r: Pick<Region, 'dev' | 'inode'>): string => `${r.dev} ${r.inode}`;

export class SharedCopy {
  /** the object's pages as the live pass copied them, by page of the object */
  readonly live = new LiveCopy();
  readonly mappings: SharedMapping[] = [];
  /** why it is read frozen instead (set while copying, or by check()) */
  why: string | undefined;
  private clean: PageRanges | undefined;

  /** `pid` maps it at `start` (the first mapping met: where the summary says it is) */
  constructor(readonly key: string, readonly pid: number, readonly start: Addr) {}

  /** The processes that map it. */
  get pids(): number[] {
    return [...new Set(this.mappings.map((m) => m.pid))];
  }

  /**
   * Once frozen: whether the copy can still be trusted (see the top of this file), given each mapping process's
   * fork witness (undefined: it is no longer tracked). Sets `why` when it cannot.
   */
  check(witnesses: (pid: number) => ForkWitness | undefined): void {
    for (const pid of this.pids) {
      if (this.why) return;
      const w = witnesses(pid);
      this.why = !w ? `process ${pid}, which maps it, is no longer tracked` : w.forked() ?? (this.mapsAsProtected(pid) ? undefined : `process ${pid} mapped it again or unmapped some of it`);
    }
  }

  /** Whether `pid` maps it exactly where it did when its mappings were protected. */
  private mapsAsProtected(pid: number): boolean {
    const now = parseMaps(readProcText(pid, 'maps')).filter((e) => sharedKey(e) === this.key);
    const then = this.mappings.filter((m) => m.pid === pid);
    return now.length === then.length && now.every((e, i) => e.start === then[i]!.start && e.end === then[i]!.end);
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

/** How far apart two instants must be to be told apart here: ticks of 10 ms, and a realtime clock set meanwhile. */
const MARGIN_MS = 2000;

/**
 * Whether a process whose maps cannot be read (even root may not read some, as a sandbox's init) may map the object,
 * created at `createdMs`, that `mapper` maps. A process maps shared anonymous memory only if it made it or inherited
 * it through a fork made since, or opened it through /proc/PID/map_files. One that started before the object was
 * made did not inherit it; and the one that made it is `mapper` or one of its ancestors no higher than the lowest
 * of them that had already started then (those below it started after, so inherited it). So a process that started
 * before, other than that lowest ancestor, does not map it.
 */
export function mayMap(pid: number, createdMs: number, mapper: number): boolean {
  if (startedAtMs(pid) > createdMs - MARGIN_MS) return true;
  let a = mapper;
  while (startedAtMs(a) > createdMs - MARGIN_MS) {
    const up = readStat(a).ppid;
    if (up <= 0) return true;
    a = up;
  }
  return a === pid;
}
