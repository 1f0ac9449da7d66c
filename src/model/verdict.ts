/**
 * The inaccuracy model's decision: for a page in a region of some kind, in the state its page table entry shows,
 * what must a snapshot do with it, and which case of kernel-semantics.md §2.1 says so. The rules are in
 * rules.ts; the dump asks this and nothing else.
 */
import type { PageState, RegionKind } from '../proc/index.js';
import { decideFrom, type Evidence } from './rules.js';

/**
 * - data: holds data only this process has: read it and store it;
 * - zero: reads as zero (shared zero page, or the content read back was all zero): recorded, not stored;
 * - hole: nothing there, reads as zero: recorded, not stored;
 * - file: a clean page of the mapped file: the file holds it, recorded, not stored (unless asked);
 * - object: the content is the mapped object's (shmem, hugetlbfs, a deleted file), stored once per object;
 * - guard / poison: a marker: recorded, restored as a marker, no content;
 * - retry: a transient entry (migration): look again, then read;
 * - special: a region that is never read (vvar, vdso, PFNMAP/IO);
 * - unreadable: reading failed; the reason is recorded with the run.
 */
export type Verdict = 'data' | 'zero' | 'hole' | 'file' | 'object' | 'guard' | 'poison' | 'retry' | 'special' | 'unreadable';

/**
 * Case ids of kernel-semantics.md §2.1, plus X1 for regions pagesnap never reads, X2 for memory no one else can,
 * X3 for holes a userfaultfd handler fills and X4 for aio rings, whose pages pagemap shows only once touched.
 */
export const CASE_IDS = [
  'A1', 'A2', 'A3', 'A4', 'A5', 'A6', 'A7', 'A8', 'A9', 'A10', 'A11', 'A12', 'A13', 'A14', 'A15', 'A16', 'A17', 'A18', 'A19',
  'S1', 'S2', 'S3', 'S4', 'S5', 'S6', 'S7', 'F1', 'F2', 'F3', 'F4', 'F5', 'F6', 'F7', 'H1', 'H2', 'H3', 'K1', 'K2',
  'P1', 'P2', 'P3', 'P4', 'P5', 'R1', 'X1', 'X2', 'X3', 'X4', 'X5',
] as const;
export type CaseId = (typeof CASE_IDS)[number];

export interface DecideOptions {
  /** Store clean file pages too (`--include-file-pages`). */
  includeFilePages?: boolean;
}

/** What the dump knows of a region when it decides its pages. */
export interface RegionShape {
  kind: RegionKind;
  shared: boolean;
  vmFlags?: readonly string[];
  readable?: boolean;
  shmemBacked?: boolean;
  fileGone?: boolean;
}

export interface PageFacts {
  huge?: boolean;
  uffdWp?: boolean;
  /** what the region's object holds at the page (SEEK_DATA, and cachestat for allocated holes) */
  object?: { data: boolean; cached?: boolean };
}

export type Decided = Readonly<{ verdict: Verdict; case: CaseId; reason?: string }>;

const NO_FLAGS: readonly string[] = [];
// (defaults made once: a default written `= {}` is a new object at every call)
const NO_OPTIONS: DecideOptions = Object.freeze({});
const NO_FACTS: PageFacts = Object.freeze({});
/**
 * Decisions already made, by VmFlags list (the smaps parser shares one array per distinct list) and the rest of the
 * evidence: a process of 60000 regions asks a few hundred thousand times, of a few dozen distinct cases.
 */
const decided = new WeakMap<readonly string[], Map<number, Decided>>();

/** A small number for each distinct string (kinds, page states), for the key of a decision. */
const numbers = new Map<string, number>();
const numberOf = (s: string) => numbers.get(s) ?? (numbers.set(s, numbers.size), numbers.size - 1);
/** undefined, false, true: 0, 1, 2 */
const tri = (b: boolean | undefined) => (b === undefined ? 0 : b ? 2 : 1);

/** The verdict and its case; `reason` (the rule's why) for an unreadable verdict, which the snapshot records. */
export function decide(r: RegionShape, state: PageState | 'none', opts: DecideOptions = NO_OPTIONS, page: PageFacts = NO_FACTS): Decided {
  const flags = r.vmFlags ?? NO_FLAGS;
  let known = decided.get(flags);
  if (!known) decided.set(flags, (known = new Map()));
  // (digits in base 3, one for each fact: no list of them made at each of a dump's few hundred thousand calls)
  let key = numberOf(r.kind) * 256 + numberOf(state);
  key = key * 3 + tri(r.shared);
  key = key * 3 + tri(r.readable);
  key = key * 3 + tri(r.shmemBacked);
  key = key * 3 + tri(r.fileGone);
  key = key * 3 + tri(page.huge);
  key = key * 3 + tri(page.uffdWp);
  key = key * 3 + tri(page.object?.data);
  key = key * 3 + tri(page.object?.cached);
  key = key * 3 + tri(opts.includeFilePages);
  let d = known.get(key);
  if (!d) {
    const e: Evidence = {
      region: { kind: r.kind, shared: r.shared, vmFlags: flags, readable: r.readable, shmemBacked: r.shmemBacked, fileGone: r.fileGone },
      pte: state, huge: page.huge, uffdWp: page.uffdWp, object: page.object, includeFilePages: opts.includeFilePages,
    };
    const x = decideFrom(e);
    d = Object.freeze(x.verdict === 'unreadable' ? { verdict: x.verdict, case: x.case, reason: x.rule.why } : { verdict: x.verdict, case: x.case });
    known.set(key, d);
  }
  return d;
}
