/** `show`: what a snapshot holds: identity, processes, regions with their pages counted by verdict, objects. */
import type { SnapshotReader } from '../snapshot/reader.js';
import type { Run, Manifest } from '../snapshot/manifest.js';
import type { Verdict } from '../model/verdict.js';

export type VerdictCounts = Record<Verdict, number>;

export function countVerdicts(runs: Iterable<Run>): VerdictCounts {
  const c: VerdictCounts = { data: 0, zero: 0, hole: 0, file: 0, object: 0, guard: 0, poison: 0, retry: 0, special: 0, unreadable: 0 };
  for (const r of runs) c[r.verdict] += r.pages;
  return c;
}

export interface ShowReport {
  file: string;
  fileBytes: number;
  id: string;
  created: string;
  tool: string;
  host: { kernel: string; hostname: string; arch: string; pageSize: number };
  freeze: Manifest['freeze'];
  compression: { algorithm: string; level: number; framePages: number; frames: number };
  stats: Record<string, number>;
  processes: {
    pid: number; ppid: number; comm: string; cmdline: string[]; uid: number;
    /** its pid in each pid namespace below the dumper's, outermost first (empty: it was in the dumper's only) */
    nsPids: number[];
    regions: { start: bigint; end: bigint; mode: string; kind: string; path: string | null; deleted: boolean; object: number | null; pages: VerdictCounts; unreadable: string[] }[];
    totals: VerdictCounts;
  }[];
  objects: { id: number; source: string; name: string; size: number; pages: VerdictCounts; mappedBy: number[] }[];
  /** the parents an incremental snapshot reads pages from, nearest first (empty for a full snapshot) */
  chain: { file: string; id: string; created: string; fileBytes: number; storedPages: number }[];
}

export function describeSnapshot(r: SnapshotReader): ShowReport {
  const m = r.manifest;
  const mappedBy = new Map<number, Set<number>>();
  const processes = m.processes.map((p) => {
    const totals = countVerdicts([]);
    const regions = p.regions.map((reg) => {
      const pages = countVerdicts(r.runsOf(reg.runs, r.pagesOf(reg)));
      for (const k of Object.keys(totals) as Verdict[]) totals[k] += pages[k];
      if (reg.object) mappedBy.set(reg.object.id, (mappedBy.get(reg.object.id) ?? new Set()).add(p.pid));
      const reasons = new Set<string>();
      for (const x of r.runsOf(reg.runs, r.pagesOf(reg))) if (x.verdict === 'unreadable') reasons.add(x.reason ?? 'unknown');
      return { start: reg.start, end: reg.end, mode: reg.mode, kind: reg.kind, path: reg.path, deleted: reg.deleted, object: reg.object?.id ?? null, pages, unreadable: [...reasons] };
    });
    return { pid: p.pid, ppid: p.ppid, comm: p.comm, cmdline: p.cmdline, uid: p.uid, nsPids: p.nsPids ?? [], regions, totals };
  });
  return {
    file: r.path, fileBytes: r.size, id: m.id.toString('hex'), created: new Date(m.created).toISOString(), tool: m.tool, host: m.host,
    freeze: m.freeze, compression: { ...m.compression, frames: m.frames.offset.length }, stats: { ...m.stats },
    processes,
    objects: m.objects.map((o) => ({ id: o.id, source: o.source, name: o.name, size: o.size, pages: countVerdicts(r.runsOf(o.runs, r.pagesOf(o))), mappedBy: [...(mappedBy.get(o.id) ?? [])] })),
    chain: r.chain().slice(0, -1).reverse().map((x) => ({
      file: x.path, id: x.manifest.id.toString('hex'), created: new Date(x.manifest.created).toISOString(), fileBytes: x.size, storedPages: x.storedPages,
    })),
  };
}
