/** A region's pages as runs of decisions: the page table's states put through the model. */
import type { PageRun } from '../proc/index.js';
import { decide, type DecideOptions, type Verdict, type CaseId, type RegionShape, type PageFacts } from '../model/verdict.js';
import type { Run } from '../snapshot/manifest.js';

/** Runs that merge with an equal neighbour as they are pushed. */
export class RunList {
  readonly runs: Run[] = [];

  push(offset: number, pages: number, verdict: Verdict, c: CaseId, reason?: string): void {
    if (pages <= 0) return;
    const last = this.runs[this.runs.length - 1];
    if (last && last.verdict === verdict && last.case === c && last.reason === reason && last.offset + last.pages === offset) {
      last.pages += pages;
      return;
    }
    this.runs.push(reason === undefined ? { offset, pages, verdict, case: c } : { offset, pages, verdict, case: c, reason });
  }
}

/** What a region's object holds over its pages [first, first + count), in runs (none past the object's end). */
export type ObjectEvidence = (first: number, count: number) => { offset: number; pages: number; object: NonNullable<PageFacts['object']> }[];

/**
 * Decide every page of a region from its populated runs (pages not in a run have no page table entry).
 * `objectAt`: where what the object holds decides a pte-less page too (a mapping registered with userfaultfd).
 */
export function planRegion(shape: RegionShape, start: bigint, pages: number, populated: PageRun[], opts: DecideOptions, objectAt?: ObjectEvidence, pageSize = 4096): Run[] {
  const out = new RunList();
  const ps = BigInt(pageSize);
  const none = decide(shape, 'none', opts);
  const pushNone = (from: number, to: number) => {
    let pos = from;
    if (objectAt && to > from) {
      for (const x of objectAt(from, to - from)) {
        const d = decide(shape, 'none', opts, { object: x.object });
        out.push(x.offset, x.pages, d.verdict, d.case, d.reason);
        pos = x.offset + x.pages;
      }
    }
    out.push(pos, to - pos, none.verdict, none.case, none.reason);
  };
  let pos = 0;
  for (const r of populated) {
    const at = Number((r.start - start) / ps);
    pushNone(pos, at);
    const d = decide(shape, r.state, opts, { huge: r.huge, uffdWp: r.uffdWp });
    out.push(at, r.pages, d.verdict, d.case, d.reason);
    pos = at + r.pages;
  }
  pushNone(pos, pages);
  return out.runs;
}
