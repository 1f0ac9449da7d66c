import type { FixtureRegion } from '../../fixtures/driver.js';

/** The full count record inspect must report for a fixture region: every state the fixture did not name is 0. */
export function expectedCounts(r: FixtureRegion): Record<string, number> {
  const e = r.expect;
  const c = {
    pages: r.pages, present: 0, data: e.data ?? 0, zero: e.zero ?? 0, file: e.file ?? 0, thp: e.thp ?? 0,
    swap: e.swap ?? 0, migration: e.migration ?? 0, device: 0, hwpoison: 0, guard: e.guard ?? 0,
    uffdWpMarker: e.uffdWpMarker ?? 0, poisonMarker: e.poisonMarker ?? 0, swapUnknown: 0, uffdWp: e.uffdWp ?? 0,
    notPresent: 0,
  };
  c.present = c.data + c.zero + c.file;
  c.notPresent = c.pages - c.present - c.swap - c.migration - c.guard - c.uffdWpMarker - c.poisonMarker;
  return c;
}
