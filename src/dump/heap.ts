/**
 * V8 lets its heap fill with garbage long before it collects it, and a dump of a process with tens of thousands of
 * regions makes a lot (its list of regions is read first and dies region by region, and each region leaves a few
 * KiB): left alone, pagesnap's RSS reached 430 MiB for 60000 regions, against the 256 MiB it keeps to (270 MiB with
 * this, for 10% more time). The dump asks here every 1024 regions; a full collection runs when the heap has grown
 * 32 MB past what the last one left.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Collect when the heap grows this far past what the last collection left (and never below it). */
const SLACK = 32 << 20;

let mark = SLACK;
let gc: (() => void) | null | undefined;

export function collectIfGrown(): void {
  if (getHeapStatistics().used_heap_size < mark) return;
  if (gc === undefined) {
    // gc() is only exposed by a flag; a new context made after setting it has one
    setFlagsFromString('--expose-gc');
    gc = (runInNewContext('typeof gc === "function" ? gc : null') as (() => void) | null) ?? null;
  }
  if (!gc) return;
  gc();
  mark = getHeapStatistics().used_heap_size + SLACK;
}
