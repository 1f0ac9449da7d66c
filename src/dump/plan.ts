/** A region's pages as runs of decisions: the page table's states put through the model. */
import type { PageRun } from '../proc/index.js';
import { decide, type DecideOptions, type Verdict, type CaseId, type RegionShape } from '../model/verdict.js';
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

/** Decide every page of a region from its populated runs (pages not in a run have no page table entry). */
export function planRegion(shape: RegionShape, start: bigint, pages: number, populated: PageRun[], opts: DecideOptions, pageSize = 4096): Run[] {
  const out = new RunList();
  const ps = BigInt(pageSize);
  let pos = 0;
  const none = decide(shape, 'none', opts);
  for (const r of populated) {
    const at = Number((r.start - start) / ps);
    out.push(pos, at - pos, none.verdict, none.case, none.reason);
    const d = decide(shape, r.state, opts, { huge: r.huge, uffdWp: r.uffdWp });
    out.push(at, r.pages, d.verdict, d.case, d.reason);
    pos = at + r.pages;
  }
  out.push(pos, pages - pos, none.verdict, none.case, none.reason);
  return out.runs;
}
