// What a snapshot of a fixture scenario must hold, page by page, and what dumping it may change in the process.
import { expect } from 'vitest';
import type { FixtureRegion } from '../../fixtures/driver.js';
import { expectedPage, pagesToCheck } from '../../fixtures/pattern.js';
import type { SnapshotReader } from '../../src/snapshot/reader.js';
import type { inspect, PageCounts } from '../../src/analyze/inspect.js';

export const countsByStart = (counts: ReturnType<typeof inspect>) => new Map(counts.regions.map((r) => [r.start, r.counts]));

/** Reading may swap pages in (swap → data); nothing else may change, and no page may appear. */
export function expectUnpopulated(before: PageCounts | null, after: PageCounts | null, name: string) {
  if (!before || !after) return;
  const fold = (c: PageCounts) => ({ ...c, data: c.data + c.swap, present: c.present + c.swap, swap: 0 });
  expect({ region: name, ...fold(after) }).toEqual({ region: name, ...fold(before) });
}

export function expectContent(r: SnapshotReader, pid: number, reg: FixtureRegion, withFiles: boolean) {
  const proc = r.process(pid);
  for (const i of pagesToCheck(reg)) {
    const want = expectedPage(reg, i);
    const at = reg.start + BigInt(i) * 4096n;
    const read = () => r.read(proc, at, 4096);
    const where = `${reg.name} page ${i}`;
    const unreadable = reg.content.unreadable?.some(([f, n]) => i >= f && i < f + n);
    if (want.kind === 'bytes' || (want.kind === 'file' && withFiles)) expect(read().equals(want.bytes), where).toBe(true);
    else if (want.kind === 'zero') expect(read().every((b) => b === 0), where).toBe(true);
    else if (unreadable) {
      expect(read, where).toThrow(/is not in the snapshot: unreadable at dump time \(((memfd_secret memory|registered with userfaultfd \(missing mode\)): .*\) \[case X[23]\]|its deleted file lies on a FUSE mount and a process being dumped serves FUSE: .*\) \[case S2\])/);
    }
    else expect(read, where).toThrow(/is not in the snapshot/);
  }
}
