/** Text rendering for restore (and serve sessions). */
import type { RestoreResult } from '../restore/restore.js';
import type { ServeEvent } from '../restore/serve.js';
import { bytes, hex } from './format.js';

const ms = (x: number) => (x < 10 ? x.toFixed(1) : x.toFixed(0));
const us = (x: number | null) => (x === null ? '-' : x < 10 ? x.toFixed(1) : x.toFixed(0));

export function renderRestore(r: RestoreResult): string {
  const b = r.bytes;
  const out = [
    `restored process ${r.pid} of ${r.snapshot} into host ${r.hostPid}${r.held ? ' (held: it keeps running)' : ' (exited)'}`,
    `  ${r.regions.mapped} regions mapped, ${r.regions.skipped.length} skipped · ${r.lazy ? 'lazy' : 'eager'}, ${r.mode} mode · userfaultfd by ${r.uffd}`,
    `  placed: ${bytes(b.copied)} copied, ${bytes(b.moved)} moved, ${bytes(b.zeroed)} zero pages, ${bytes(b.written)} written in directly, ${bytes(b.objects)} into objects${b.poisoned ? `, ${bytes(b.poisoned)} poisoned` : ''}`,
    `  setup ${ms(r.timings.setupMs)} ms · ready ${ms(r.timings.readyMs)} ms · full ${ms(r.timings.fullMs)} ms · ${r.throughputMBs >= 1000 ? `${(r.throughputMBs / 1000).toFixed(2)} GB/s` : `${r.throughputMBs.toFixed(0)} MB/s`} streamed`,
  ];
  if (r.faults.served) {
    out.push(`  faults: ${r.faults.served} served${r.timings.firstFaultMs !== null ? `, the first ${ms(r.timings.firstFaultMs)} ms in` : ''} · service p50 ${us(r.faults.p50Us)} µs, p99 ${us(r.faults.p99Us)} µs`);
  }
  if (r.profile) {
    out.push(`  profile ${r.profile.path}: ${r.profile.used ? `filled ${r.profile.used} profiled pages first` : 'none used'}${r.profile.recorded ? `, recorded ${r.profile.recorded} first touches` : ''}`);
  }
  for (const x of r.relocations) out.push(`  relocated ${hex(x.from)} → ${hex(x.to)} (${bytes(x.len)}${x.path ? ` ${x.path}` : ''}): pointers into it are not adjusted`);
  const skipped = new Map<string, string[]>();
  for (const s of r.regions.skipped) skipped.set(s.why, [...(skipped.get(s.why) ?? []), s.path ?? `${hex(s.start)}-${hex(s.end)}`]);
  for (const [why, which] of skipped) out.push(`  skipped ${which.join(', ')}: ${why}`);
  const lost = new Map<string, number>();
  for (const l of r.lost) lost.set(l.why, (lost.get(l.why) ?? 0) + l.len);
  for (const [why, len] of lost) out.push(`  lost: ${bytes(len)} ${why} (access gives SIGBUS where it is poisoned, SIGSEGV where it is not mapped)`);
  for (const d of r.damage) out.push(`  DAMAGED: frame ${d.frame}, ${d.pages} pages at ${hex(d.addr)} poisoned: ${d.message}`);
  for (const n of r.notes) out.push(`  note: ${n}`);
  if (r.verify) {
    const v = r.verify;
    out.push(v.mismatches === 0 ? `  verify: all ${v.pages} placed pages match the snapshot` : `  VERIFY FAILED: ${v.mismatches} of ${v.pages} pages differ`);
    for (const m of v.first) out.push(`    ${m.where}: ${m.problem}`);
  }
  return out.join('\n');
}

export function renderServeEvent(e: ServeEvent): string {
  switch (e.kind) {
    case 'listening': return `serving ${e.snapshot} on ${e.socket}${e.replaced ? ' (in place of a socket nobody listened on, left by a server that died)' : ''}`;
    case 'start': return `session ${e.session}${e.forkOf ? ` (fork of ${e.forkOf})` : ''}: pid ${e.client.pid} uid ${e.client.uid} · ${e.pages.data} data, ${e.pages.zero} zero pages${e.lost ? `, ${e.lost} ranges poisoned` : ''}${e.events.length ? ` · events ${e.events.join(',')}` : ''}${e.prefetch ? '' : ' · on fault only'}`;
    case 'full': return `session ${e.session}: full after ${ms(e.ms)} ms`;
    case 'end': return `session ${e.session} ended (${e.why}) after ${ms(e.ms)} ms · ${bytes(e.stats.copied)} copied, ${bytes(e.stats.zeroed)} zero · ${e.faults.served} faults, p50 ${us(e.faults.p50Us)} µs, p99 ${us(e.faults.p99Us)} µs`;
    case 'refused': return `refused ${e.client ? `pid ${e.client.pid} uid ${e.client.uid}` : 'a client'}: ${e.why}`;
    case 'trouble': return `waiting: ${e.why}`;
  }
}
