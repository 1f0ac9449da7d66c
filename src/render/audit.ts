/** Text rendering of `audit` reports. */
import type { AuditReport, RegionAudit, CaseCount } from '../analyze/audit.js';
import { table, bytes, cell, hex, type Column } from './format.js';

const cases = (cs: CaseCount[]) => cs.map((c) => `${c.case} ${c.pages}`).join(', ');

export function renderAudit(rep: AuditReport, all: boolean): string {
  const out: string[] = [`pagemap audit · kernel ${rep.kernel} · naive rule: keep what pagemap shows PRESENT or SWAPPED`];
  for (const p of rep.processes) {
    const rows = p.regions.filter((r) => all || r.lost.pages > 0 || r.needless.zero + r.needless.marker > 0 || !r.smaps.ok || r.unknown);
    out.push('', `process ${p.process.pid} (${p.process.comm}) · pagemap via ${p.method === 'scan' ? 'PAGEMAP_SCAN' : 'pread'}${p.framesVisible ? '' : ' · swap types hidden (not CAP_SYS_ADMIN)'} · ${rows.length} of ${p.regions.length} regions shown${all ? '' : ' (--all for every one)'}`);
    if (rows.length === 0) continue;
    const cols: Column<RegionAudit>[] = [
      { head: 'RANGE', get: (r) => `${hex(r.start)}-${hex(r.end)}`, align: 'left' },
      { head: 'KIND', get: (r) => r.kind, align: 'left' },
      { head: 'DATA', get: (r) => cell(r.dataPages) },
      { head: 'NAIVE', get: (r) => cell(r.naiveKeeps) },
      { head: 'LOST', get: (r) => cell(r.lost.pages) },
      { head: 'ZERO', get: (r) => cell(r.needless.zero) },
      { head: 'FILE', get: (r) => cell(r.needless.file) },
      { head: 'MARKER', get: (r) => cell(r.needless.marker) },
      { head: 'SMAPS', get: (r) => (r.smaps.ok ? 'ok' : 'MISMATCH'), align: 'left' },
      { head: 'CASES', get: (r) => [cases(r.lost.cases), cases(r.needless.cases)].filter(Boolean).join(' · '), align: 'left' },
      { head: 'PATH', get: (r) => `${r.path ?? ''}${r.unknown ? ` (${r.unknown})` : ''}`, align: 'left' },
    ];
    out.push(table(rows, cols));
  }
  const t = rep.totals;
  out.push(
    '',
    t.lostPages > 0
      ? `A pagemap-only dumper would LOSE ${t.lostPages} pages (${bytes(t.lostBytes)}) of data: ${t.lostByCase.map((c) => `${c.case} ${c.name}: ${c.pages}`).join('; ')}.`
      : 'A pagemap-only dumper would lose no data here.',
    `It would store ${t.needlessPages} pages for nothing: ${t.needlessByCase.map((c) => `${c.case} ${c.name}: ${c.pages}`).join('; ') || 'none'}.`,
    'DATA: pages holding data · NAIVE: pages pagemap shows PRESENT or SWAPPED · LOST: data NAIVE misses · ZERO/FILE/MARKER: pages NAIVE keeps for nothing',
  );
  return out.join('\n');
}
