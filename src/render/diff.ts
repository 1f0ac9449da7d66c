/** Text and pictures for diff. */
import type { DiffReport, RegionDiff } from '../analyze/diff.js';
import { table, cell, bytes, hex } from './format.js';
import { hexdump } from './snapshot.js';
import type { HeatmapDoc } from './heatmap.js';

const range = (x: { start: bigint; end: bigint } | null) => (x ? `${hex(x.start)}-${hex(x.end)}` : '');
const changedPages = (r: RegionDiff) => r.pages.changed + r.pages.added + r.pages.removed;

/** The regions worth a line: everything that moved, appeared, went, or changed a page. */
const interesting = (r: RegionDiff) => r.status.length > 0 || changedPages(r) > 0;

/** `all`: a line for every region the report holds (it holds them all when asked for all). */
export function renderDiff(d: DiffReport, opts: { pages?: boolean; limit?: number; all?: boolean } = {}): string {
  const t = d.totals;
  const out = [
    `diff ${d.a.file} → ${d.b.file}`,
    `  A: process ${d.a.pid} (${d.a.comm}) taken ${d.a.created} · snapshot ${d.a.id}`,
    `  B: process ${d.b.pid} (${d.b.comm}) taken ${d.b.created} · snapshot ${d.b.id}`,
    ...d.notes.map((n) => `  note: ${n}`),
    `  pages: ${t.changed} changed, ${t.added} added, ${t.removed} removed (${bytes(t.bytesChanged)}), ${t.unchanged} unchanged`,
    `  regions: ${t.regionsChanged} changed, ${t.regionsAdded} added, ${t.regionsRemoved} removed, of ${t.regions}`,
  ];
  const tr = Object.entries(d.transitions).sort((x, y) => y[1] - x[1]);
  if (tr.length) out.push(`  page states: ${tr.map(([k, n]) => `${k}: ${n}`).join(' · ')}`);
  const shown = opts.all ? d.regions : d.regions.filter(interesting);
  if (shown.length) {
    out.push('');
    out.push(table(shown, [
      { head: 'A', get: (r) => range(r.a), align: 'left' },
      { head: 'B', get: (r) => range(r.b), align: 'left' },
      { head: 'PERM', get: (r) => (r.a && r.b && r.a.mode !== r.b.mode ? `${r.a.mode}→${r.b.mode}` : (r.b ?? r.a)!.mode), align: 'left' },
      { head: 'KIND', get: (r) => r.kind, align: 'left' },
      { head: 'STATUS', get: (r) => r.status.join(',') || (changedPages(r) ? 'changed' : ''), align: 'left' },
      { head: 'CHANGED', get: (r) => cell(r.pages.changed) },
      { head: 'ADDED', get: (r) => cell(r.pages.added) },
      { head: 'REMOVED', get: (r) => cell(r.pages.removed) },
      { head: 'SAME', get: (r) => cell(r.pages.unchanged) },
      { head: 'PATH', get: (r) => r.path ?? '', align: 'left' },
    ]));
  }
  const objs = d.objects.filter((o) => changedPages(o) > 0);
  for (const o of objs) out.push(`  object ${o.name}: ${o.pages.changed} changed, ${o.pages.added} added, ${o.pages.removed} removed, ${o.pages.unchanged} unchanged`);
  const ranges = d.regions.flatMap((r) => r.ranges.map((x) => ({ start: x.start, pages: x.pages, status: x.status, path: r.path }))).sort((x, y) => y.pages - x.pages);
  if (ranges.length) {
    const limit = opts.limit ?? 10;
    out.push('', `largest changed ranges${ranges.length > limit ? ` (${limit} of ${ranges.length})` : ''}:`);
    for (const x of ranges.slice(0, limit)) out.push(`  ${hex(x.start)}  ${String(x.pages).padStart(6)} pages ${x.status}${x.path ? `  ${x.path}` : ''}`);
  }
  if (opts.pages) {
    out.push('', 'changed pages:');
    for (const x of ranges.sort((p, q) => (p.start < q.start ? -1 : 1))) {
      for (let i = 0; i < x.pages; i++) out.push(`  ${hex(x.start + BigInt(i * 4096))} ${x.status}`);
    }
  }
  return out.join('\n');
}

/** One page in both snapshots, its differing lines marked (- A, + B). */
export function renderPageDiff(addr: bigint, a: Buffer | string, b: Buffer | string): string {
  if (typeof a === 'string' || typeof b === 'string') {
    return [`page ${hex(addr)}`, `  A: ${typeof a === 'string' ? a : 'holds data'}`, `  B: ${typeof b === 'string' ? b : 'holds data'}`].join('\n');
  }
  const out = [`page ${hex(addr)}: ${a.equals(b) ? 'identical' : 'lines that differ (- A, + B)'}`];
  for (let o = 0; o < a.length; o += 16) {
    if (a.subarray(o, o + 16).equals(b.subarray(o, o + 16))) continue;
    out.push(`- ${hexdump(a.subarray(o, o + 16), addr + BigInt(o))}`, `+ ${hexdump(b.subarray(o, o + 16), addr + BigInt(o))}`);
  }
  return out.join('\n');
}

export function diffHeatmap(d: DiffReport): HeatmapDoc {
  return {
    title: `pagesnap diff · ${d.a.file} → ${d.b.file} · ${d.totals.changed} changed, ${d.totals.added} added, ${d.totals.removed} removed pages`,
    classes: [
      { key: 'changed', color: '#d62728', label: 'changed' },
      { key: 'added', color: '#2ca02c', label: 'added (data only in B)' },
      { key: 'removed', color: '#1f77b4', label: 'removed (data only in A)' },
      { key: 'unchanged', color: '#c7c7c7', label: 'unchanged data' },
      { key: 'empty', color: '#eeeeee', label: 'no data in either' },
    ],
    sections: [{
      title: `process ${d.b.pid} (${d.b.comm})`,
      bands: d.regions.filter(interesting).map((r) => ({
        label: `${range(r.b ?? r.a)} ${r.kind} ${bytes(r.span * 4096)}${r.path ? ` ${r.path}` : ''}${r.status.length ? ` · ${r.status.join(', ')}` : ''}${changedPages(r) ? ` · ${changedPages(r)} pages` : ''}`,
        labelClass: changedPages(r) ? 'changed' : undefined,
        pages: r.span,
        runs: r.runs.map((x) => ({ offset: x.offset, pages: x.pages, cls: x.cls })),
      })),
    }],
  };
}
