/** Text rendering for dump, show, cat and verify. */
import type { DumpSummary, NamedWriters } from '../dump/dump.js';
import type { ExitedProcess, SharingProcess } from '../snapshot/manifest.js';
import type { ShowReport, VerdictCounts } from '../analyze/show.js';
import { table, bytes, cell, hex } from './format.js';
import { STANDARD_OUTPUT, STANDARD_OUTPUT_LABEL } from '../snapshot/standard-output.js';

/** Where a snapshot went: a file, or standard output. */
export const wrote = (path: string, size: number) => (path === STANDARD_OUTPUT ? `sent ${bytes(size)} to ${STANDARD_OUTPUT_LABEL}` : `wrote ${path} (${bytes(size)})`);

export function renderDumpSummary(s: DumpSummary): string {
  const ratio = s.bytesCompressed > 0 ? (s.bytesRaw / s.bytesCompressed).toFixed(1) : '-';
  return [
    wrote(s.path, s.fileBytes),
    `  ${pidList(s.processes)} · ${s.regions} regions · ${s.objects} objects`,
    ...(s.parent ? [`  incremental against ${s.parent}: ${s.pagesFromParent} pages found there and referenced, not stored`] : []),
    `  pages: ${s.pagesStored} stored (${s.pagesDeduplicated} more deduplicated, ${s.pagesShmem} from objects), ${s.pagesZero} zero, ${s.pagesHole} holes, ${s.pagesFile} file-backed, ${s.pagesMarker} markers, ${s.pagesUnreadable} unreadable`,
    ...(s.regionsDontdump === 0 ? [] : [s.excludeDontdump
      ? `  left out: ${s.regionsDontdump} regions the process marked MADV_DONTDUMP (their pages are recorded as not dumped, among the unreadable)`
      : `  kept: ${s.regionsDontdump} regions the process marked MADV_DONTDUMP, which core dumps leave out (--exclude-dontdump does too)`]),
    ...(s.precopyMs > 0 ? [`  precopy: ${s.pagesPrecopied} pages read in ${s.precopyMs.toFixed(0)} ms while running and not written since${s.pagesPrecopiedShared > 0 ? ` (${s.pagesPrecopiedShared} of shared memory)` : ''}; frozen, the rest`] : []),
    ...(s.pagesHugeFrozen > 0 ? [`  precopy: ${s.pagesHugeFrozen} pages of huge pages read frozen (a write would split them; --split-huge tracks them)`] : []),
    ...s.precopySkipped.map((x) => `  precopy skipped: ${x.why}; read frozen`),
    ...(s.processesExited.length ? [`  left out, as they exited while the dump read them: ${exitedList(s.processesExited)}`] : []),
    ...(s.sharers.length ? [sharersLine(s.sharers)] : []),
    ...outsideLines(s.outsideWriters),
    `  data: ${bytes(s.bytesRaw)} → ${bytes(s.bytesCompressed)} compressed (${ratio}×)`,
    `  frozen ${s.frozenMs.toFixed(1)} ms by ${s.freeze} (freezing took ${s.freezeMs.toFixed(1)} ms) · wall ${s.wallMs.toFixed(0)} ms · ${s.throughputMBps.toFixed(0)} MB/s`,
  ].join('\n');
}

const sharersLine = (ps: SharingProcess[]) =>
  `  also frozen, as they ran in the memory of a process dumped (clone with CLONE_VM): ${ps.map((p) => `${p.pid} (${p.comm}) in that of ${p.of}`).join(', ')}`;

/** The objects processes not frozen could write as they were read; dumped together (a tree) they would have been frozen. */
const outsideLines = (ws: NamedWriters[]) => (ws.length === 0 ? [] : [
  '  read while processes not frozen map them writable, so may have changed meanwhile (dump them together, as a --tree, for one instant):',
  ...ws.map((w) => `    object ${w.object} (${w.name || 'unnamed'}): ${pidList(w.pids)}`),
]);

const exitedList = (ps: ExitedProcess[]) => ps.map((p) => (p.comm === undefined ? String(p.pid) : `${p.pid} (${p.comm})`)).join(', ');

/** The processes of a dump, on one line however many a tree held (the JSON summary lists them all). */
function pidList(pids: number[]): string {
  const SHOWN = 8;
  if (pids.length <= SHOWN) return `process${pids.length === 1 ? '' : 'es'} ${pids.join(', ')}`;
  return `${pids.length} processes (${pids.slice(0, SHOWN).join(', ')}, …)`;
}

const VERDICT_COLUMNS: [keyof VerdictCounts, string][] = [
  ['data', 'DATA'], ['zero', 'ZERO'], ['hole', 'HOLE'], ['file', 'FILE'], ['object', 'SHMEM'], ['guard', 'GUARD'], ['poison', 'POISON'], ['unreadable', 'UNREAD'], ['special', 'SPECIAL'],
];

export function renderShow(s: ShowReport, withRegions: boolean): string {
  const out: string[] = [
    `${s.file} · ${bytes(s.fileBytes)} · snapshot ${s.id}`,
    `  taken ${s.created} by ${s.tool} on ${s.host.hostname} (kernel ${s.host.kernel}, ${s.host.arch}, ${s.host.pageSize} B pages)`,
    `  ${s.freeze.fuzzy ? 'FUZZY: the processes were not frozen' : `frozen by ${s.freeze.method} for ${s.freeze.frozenMs.toFixed(1)} ms`}${s.freeze.precopy ? ` after a precopy (${s.freeze.precopy.pages} pages read in ${s.freeze.precopy.ms.toFixed(0)} ms while running)` : ''} · zstd level ${s.compression.level}, ${s.compression.frames} frame${s.compression.frames === 1 ? '' : 's'} of up to ${s.compression.framePages} pages`,
    ...(s.freeze.exited ? [`  left out, as they exited while the dump read them: ${exitedList(s.freeze.exited)}`] : []),
    ...(s.freeze.sharers ? [sharersLine(s.freeze.sharers)] : []),
    ...outsideLines((s.freeze.outsideWriters ?? []).map((w) => ({ ...w, name: s.objects.find((o) => o.id === w.object)?.name ?? '' }))),
    `  ${s.stats.pagesStored} pages stored (${bytes(s.stats.bytesRaw ?? 0)} → ${bytes(s.stats.bytesCompressed ?? 0)}), ${s.stats.pagesDeduplicated} deduplicated`,
  ];
  if (s.chain.length) {
    out.push(`  incremental: ${s.stats.pagesFromParent ?? 0} pages are read from its parent${s.chain.length > 1 ? ` chain of ${s.chain.length}` : ''}:`);
    for (const c of s.chain) out.push(`    ← ${c.file} · ${bytes(c.fileBytes)} · snapshot ${c.id} · taken ${c.created} · ${c.storedPages} pages stored`);
  }
  for (const p of s.processes) {
    const ns = p.nsPids.length ? ` · pid ${p.nsPids[p.nsPids.length - 1]} in its pid namespace` : '';
    out.push('', `process ${p.pid} (${p.comm})${ns} · ppid ${p.ppid} · uid ${p.uid} · ${p.cmdline.join(' ')}`);
    const cols = VERDICT_COLUMNS.filter(([k]) => p.totals[k] > 0 || k === 'data');
    if (withRegions) {
      type R = (typeof p.regions)[number];
      out.push(table(p.regions, [
        { head: 'RANGE', get: (r: R) => `${hex(r.start)}-${hex(r.end)}`, align: 'left' },
        { head: 'PERM', get: (r: R) => r.mode, align: 'left' },
        { head: 'KIND', get: (r: R) => r.kind, align: 'left' },
        ...cols.map(([k, head]) => ({ head, get: (r: R) => cell(r.pages[k]) })),
        { head: 'PATH', get: (r: R) => `${r.path ?? ''}${r.deleted ? ' (deleted)' : ''}${r.object !== null ? ` [object ${r.object}]` : ''}${r.unreadable.length ? ` (unreadable: ${r.unreadable.join('; ')})` : ''}`, align: 'left' },
      ]));
    }
    out.push(`  pages: ${cols.map(([k, head]) => `${head.toLowerCase()} ${p.totals[k]}`).join(', ')}`);
  }
  if (s.objects.length) {
    out.push('', 'objects: shmem, hugetlbfs and deleted files (stored once, whoever maps them):');
    type O = ShowReport['objects'][number];
    out.push(table(s.objects, [
      { head: 'ID', get: (o: O) => String(o.id) },
      { head: 'SOURCE', get: (o: O) => o.source, align: 'left' },
      { head: 'SIZE', get: (o: O) => bytes(o.size) },
      { head: 'DATA', get: (o: O) => cell(o.pages.data) },
      { head: 'ZERO', get: (o: O) => cell(o.pages.zero) },
      { head: 'HOLE', get: (o: O) => cell(o.pages.hole) },
      { head: 'MAPPED BY', get: (o: O) => o.mappedBy.join(','), align: 'left' },
      { head: 'NAME', get: (o: O) => o.name, align: 'left' },
    ]));
  }
  return out.join('\n');
}

/** xxd-style dump: address, 16 bytes in hex, printable characters. */
export function hexdump(buf: Buffer, addr: bigint): string {
  const lines: string[] = [];
  for (let o = 0; o < buf.length; o += 16) {
    const row = buf.subarray(o, o + 16);
    const hexes = Array.from(row, (b) => b.toString(16).padStart(2, '0'));
    const groups = [hexes.slice(0, 8).join(' '), hexes.slice(8).join(' ')].join('  ');
    const text = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${hex(addr + BigInt(o)).padStart(12, '0')}  ${groups.padEnd(48)}  ${text}`);
  }
  return lines.join('\n');
}
