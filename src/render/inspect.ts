/** Text rendering of `inspect` reports. */
import type { InspectReport, PagesReport, PageCounts, RegionReport } from '../analyze/inspect.js';
import { table, bytes, cell, hex, type Column } from './format.js';

type Row = { range: string; mode: string; kind: string; size: string; rss: string; counts: PageCounts | null; path: string };

/** Columns shown always, then the rare ones only when some region has them. */
const COUNT_COLUMNS: [keyof PageCounts, string, boolean][] = [
  ['present', 'PRESENT', true], ['data', 'DATA', true], ['zero', 'ZERO', true], ['thp', 'THP', true], ['swap', 'SWAP', true],
  ['file', 'FILE', true], ['guard', 'GUARD', true], ['uffdWpMarker', 'WP-MARK', true], ['poisonMarker', 'POISON', true],
  ['migration', 'MIGR', true], ['device', 'DEVICE', false], ['hwpoison', 'HWPOISON', false],
  ['swapUnknown', 'SWAP?', false], ['uffdWp', 'WP-BIT', false], ['notPresent', 'NONE', true],
];

function rowOf(r: RegionReport): Row {
  const name = r.path === null ? '' : `${r.path}${r.deleted ? ' (deleted)' : ''}`;
  return { range: `${hex(r.start)}-${hex(r.end)}`, mode: r.mode, kind: r.kind, size: bytes(r.size), rss: bytes(r.rss), counts: r.counts, path: name };
}

export function renderInspect(rep: InspectReport): string {
  const rows = rep.regions.map(rowOf);
  rows.push({ range: 'total', mode: '', kind: '', size: bytes(rep.regions.reduce((s, r) => s + r.size, 0)), rss: bytes(rep.regions.reduce((s, r) => s + r.rss, 0)), counts: rep.totals, path: '' });
  const cols: Column<Row>[] = [
    { head: 'RANGE', get: (r) => r.range, align: 'left' },
    { head: 'PERM', get: (r) => r.mode, align: 'left' },
    { head: 'KIND', get: (r) => r.kind, align: 'left' },
    { head: 'SIZE', get: (r) => r.size },
    { head: 'RSS', get: (r) => r.rss },
  ];
  for (const [key, head, always] of COUNT_COLUMNS) {
    if (always || rep.totals[key] > 0) cols.push({ head, get: (r) => (r.counts ? cell(r.counts[key]) : 'n/a') });
  }
  cols.push({ head: 'PATH', get: (r) => r.path, align: 'left' });
  const p = rep.process;
  const head = `pid ${p.pid} (${p.comm}) · kernel ${rep.kernel} · pagemap via ${rep.method === 'scan' ? 'PAGEMAP_SCAN' : 'pread'} · ${rep.framesVisible ? 'PFNs visible' : 'PFNs hidden (not CAP_SYS_ADMIN)'} · counts in 4 KiB pages`;
  const notes = rep.caveats.map((c) => `note: ${c}`);
  return [head, '', table(rows, cols), ...(notes.length ? ['', ...notes] : [])].join('\n');
}

export function renderPages(rep: PagesReport): string {
  type P = PagesReport['pages'][number];
  const flags = (p: P) =>
    [p.present && 'P', p.swapped && 'S', p.file && 'F', p.exclusive && 'X', p.uffdWp && 'W', p.guard && 'G', p.huge && 'H', p.softDirty && 'D']
      .filter(Boolean)
      .join('') || '-';
  const frame = (p: P) =>
    p.pfn !== null ? `pfn ${hex(p.pfn)}` : p.swapType !== null ? `type ${p.swapType} off ${hex(p.swapOffset!)}` : p.present || p.swapped ? 'hidden' : '-';
  const cols: Column<P>[] = [
    { head: 'ADDRESS', get: (p) => hex(p.addr), align: 'left' },
    { head: 'STATE', get: (p) => p.state, align: 'left' },
    { head: 'BITS', get: flags, align: 'left' },
    { head: 'RAW', get: (p) => (p.raw === null ? 'unmapped' : p.raw.toString(16).padStart(16, '0')), align: 'left' },
    { head: 'FRAME', get: frame, align: 'left' },
    { head: 'KPAGECOUNT', get: (p) => (p.kpagecount === null ? '-' : String(p.kpagecount)) },
    { head: 'KPAGEFLAGS', get: (p) => (p.kpageflags === null ? (p.pfn === null ? '-' : 'n/a') : p.kpageflags.join(',') || '-'), align: 'left' },
    { head: 'REGION', get: (p) => (p.region ? `${p.region.kind}${p.region.path ? ` ${p.region.path}` : ''}` : ''), align: 'left' },
  ];
  const head = `pid ${rep.process.pid} (${rep.process.comm}) · ${rep.pages.length} pages · pagemap via ${rep.method === 'scan' ? 'PAGEMAP_SCAN' : 'pread'} · kpageflags ${rep.kpageflags}`;
  const legend = 'bits: P present, S swap/non-present entry, F file/shared, X exclusive, W uffd-wp, G guard, H PMD-mapped, D soft-dirty';
  return [head, '', table(rep.pages, cols), '', legend].join('\n');
}
