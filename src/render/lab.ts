/** Text rendering of `lab` reports. */
import type { LabReport, LabResult } from '../analyze/lab.js';
import { table, type Column } from './format.js';

export function renderLabLine(r: LabResult): string {
  if (r.skip) return `  ${r.name}: not re-created here (${r.skip})`;
  return `  ${r.name}: pagemap ${r.pagemap} · data: ${r.data} · naive dumper loses ${r.naiveLoses} · pagesnap kept ${r.kept}/${r.of}`;
}

export function renderLab(rep: LabReport): string {
  const cols: Column<LabResult>[] = [
    { head: 'INACCURACY', get: (r) => r.name, align: 'left' },
    { head: 'CASES', get: (r) => r.cases.join(','), align: 'left' },
    { head: 'PAGEMAP SAYS', get: (r) => r.skip ? `not re-created: ${r.skip}` : r.pagemap ?? '', align: 'left' },
    { head: 'PAGEMAP_SCAN SAYS', get: (r) => r.scan ?? '', align: 'left' },
    { head: 'DATA IS', get: (r) => r.data ?? '', align: 'left' },
    { head: 'NAIVE LOSES', get: (r) => (r.skip ? '' : String(r.naiveLoses ?? '')) },
    { head: 'PAGESNAP KEEPS', get: (r) => (r.skip ? '' : `${r.kept}/${r.of}`) },
  ];
  const shown = rep.results.filter((r) => !r.skip).length;
  return [
    `pagemap inaccuracy lab · kernel ${rep.kernel} · ${shown} of ${rep.results.length} re-created`,
    '',
    table(rep.results, cols),
    '',
    'PAGEMAP SAYS: this process\'s pagemap, decoded · DATA IS: pages holding data, by case · NAIVE LOSES: pages a dumper keeping only PRESENT or SWAPPED pages loses · PAGESNAP KEEPS: pages read back byte for byte from pagesnap\'s dump, of those written',
    ...rep.results.filter((r) => r.note).map((r) => `${r.name}: ${r.note}`),
  ].join('\n');
}
