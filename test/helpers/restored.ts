/**
 * Comparing a restored process with the original, through two snapshots: the original's, and one taken of the
 * restore host. Every region the restore mapped must be at the same address with the same pages: the same bytes
 * where data was stored, and the same kind of nothing elsewhere (zero, hole, file-backed, guard, poison).
 */
import { SnapshotReader } from '../../src/snapshot/reader.js';
import { cli, cliJson } from './cli.js';
import type { SnapshotRegion } from '../../src/snapshot/manifest.js';
import type { Verdict } from '../../src/model/verdict.js';

interface Span { offset: number; pages: number; verdict: Verdict }

const SKIPPED = new Set(['vdso', 'vvar', 'vsyscall', 'special']);
/** VmFlags a restore gives back: madvise flags, MAP_DROPPABLE, mseal */
const RESTORED_FLAGS = ['hg', 'nh', 'dc', 'wf', 'dd', 'mg', 'rr', 'sr', 'dp', 'sl'];

/** A region's runs with case ids dropped and neighbours of one verdict merged; `as` renames verdicts. */
function spans(r: SnapshotReader, reg: SnapshotRegion, as: (v: Verdict) => Verdict = (v) => v): Span[] {
  const out: Span[] = [];
  for (const run of r.runsOf(reg.runs, r.pagesOf(reg))) {
    const verdict = as(run.verdict);
    const last = out[out.length - 1];
    if (last && last.verdict === verdict && last.offset + last.pages === run.offset) last.pages += run.pages;
    else out.push({ offset: run.offset, pages: run.pages, verdict });
  }
  return out;
}

/** Differences between the original process and the restored one (empty when the restore is faithful). */
export function compareRestored(a: SnapshotReader, aPid: number, b: SnapshotReader, bPid: number): string[] {
  const pa = a.process(aPid);
  const pb = b.process(bPid);
  const diffs: string[] = [];
  for (const ra of pa.regions) {
    if (SKIPPED.has(ra.kind)) continue;
    const where = `0x${ra.start.toString(16)} ${ra.path ?? ra.kind}`;
    const rb = pb.regions.find((x) => x.start === ra.start);
    // memfd_secret memory: the snapshot holds none of it, and the restore leaves its place empty
    if (ra.kind === 'secret') {
      if (rb) diffs.push(`${where}: memfd_secret memory restored as ${rb.kind}`);
      continue;
    }
    if (!rb || rb.end !== ra.end || rb.mode !== ra.mode) {
      diffs.push(`${where}: ${rb ? `restored as ${rb.mode} up to 0x${rb.end.toString(16)}` : 'not restored'}`);
      continue;
    }
    const flags = (r: SnapshotRegion) => RESTORED_FLAGS.filter((f) => r.vmFlags.includes(f)).join(' ');
    if (flags(ra) !== flags(rb)) diffs.push(`${where}: VmFlags ${flags(ra)} came back as ${flags(rb)}`);
    // What the restore does with content it cannot have: poison it (a file gone with the dump, unreadable pages) —
    // except in a recreated object, which userfaultfd does not fill: there it is a hole of the memfd (and listed lost).
    const fileGone = ra.kind === 'file-private' && (ra.deleted || !ra.path) && rb.kind !== 'file-private';
    const expect = (v: Verdict): Verdict =>
      v === 'unreadable' && ra.object ? 'object' : v === 'unreadable' || v === 'retry' || (fileGone && (v === 'file' || v === 'object')) ? 'poison' : v;
    const unread = spans(a, ra).filter((s) => s.verdict === 'unreadable');
    const sa = spans(a, ra, expect);
    const sb = spans(b, rb);
    if (JSON.stringify(sa) !== JSON.stringify(sb)) {
      diffs.push(`${where}: pages ${JSON.stringify(sa)} came back as ${JSON.stringify(sb)}`);
      continue;
    }
    for (const s of sa) {
      if (s.verdict !== 'data' && s.verdict !== 'object') continue;
      for (let i = 0; i < s.pages; i++) {
        if (unread.some((u) => s.offset + i >= u.offset && s.offset + i < u.offset + u.pages)) continue;
        const addr = ra.start + BigInt((s.offset + i) * a.pageSize);
        let x: Buffer;
        let y: Buffer;
        try {
          x = a.read(pa, addr, a.pageSize);
          y = b.read(pb, addr, b.pageSize);
        } catch (e) {
          diffs.push(`${where} page ${s.offset + i}: ${(e as Error).message}`);
          break;
        }
        if (!x.equals(y)) {
          diffs.push(`${where} page ${s.offset + i} differs`);
          break;
        }
      }
    }
  }
  return diffs;
}

/** Kill a restore host, if it is still there. */
export function killHost(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/**
 * `pagesnap restore FILE --hold ARGS --json`, its report given to `use`, and the host killed after: also when the
 * restore finished but exited non-zero (pages that differ, damaged frames), which leaves the host held all the same.
 * Such an exit fails the test, once the host is gone.
 */
export function withHeldRestore<T>(file: string, args: string[], use: (r: any) => T): T {
  const res = cli(['restore', file, '--hold', ...args, '--json']);
  let r: any;
  try {
    r = JSON.parse(res.stdout);
  } catch {
    /* it failed before it had anything to report (and a host to hold) */
  }
  try {
    if (res.code !== 0) throw new Error(`pagesnap restore ${file} ${args.join(' ')} exited ${res.code}: ${res.stderr}`);
    return use(r);
  } finally {
    if (r?.hostPid) killHost(r.hostPid);
  }
}

/** How restore host `hostPid` differs from process `pid` of snapshot `original`: the host is dumped into `back`. */
export function hostDifferences(original: string, pid: number, hostPid: number, back: string): string[] {
  cliJson(['dump', String(hostPid), '-o', back, '--force']);
  const a = SnapshotReader.open(original);
  const b = SnapshotReader.open(back);
  try {
    return compareRestored(a, pid, b, hostPid);
  } finally {
    a.close();
    b.close();
  }
}
