/**
 * `audit`: where pagemap's PRESENT/SWAPPED hints disagree with where the data is. Every page of every region is
 * decided by the model from all the evidence pagesnap can gather (pagemap with swap types, and for shared shmem
 * the object itself: SEEK_DATA, and residency by mincore on a mapping of our own), then compared with the naive
 * rule a pagemap-only dumper follows: keep a page when this process's pagemap says PRESENT or SWAPPED.
 */
import { release } from 'node:os';
import { mmap, munmap, mincore, PROT, MAP, type Addr } from '../native/index.js';
import { Pagemap, KpageReader, readRegions, readIdentity, assertPid, isAlive, exited, type Region, type PageState, type PagemapMethod, type ProcessIdentity } from '../proc/index.js';

/** kpageflags bits (include/uapi/linux/kernel-page-flags.h) */
const KPF_SWAPBACKED = 14;
const KPF_KSM = 21;
import { decideFrom, type Evidence } from '../model/rules.js';
import type { CaseId, Verdict } from '../model/verdict.js';
import { openObject, closeObject, objectSegments, type OpenObject } from '../dump/objects.js';

const PAGE = 4096;

/** States in which pagemap says PRESENT or SWAPPED: what a pagemap-only dumper keeps. */
const NAIVE_KEEPS: ReadonlySet<PageState | 'none'> = new Set([
  'data', 'zero', 'file', 'swap', 'migration', 'device', 'hwpoison', 'guard', 'uffd-wp-marker', 'poison-marker', 'swap-unknown',
]);

/** What a page holds, by its verdict and evidence: data that must be kept, or not. */
type Holds = 'data' | 'zero' | 'file' | 'marker' | 'special' | 'nothing';

function holds(verdict: Verdict, e: Evidence): Holds {
  switch (verdict) {
    case 'data':
    case 'retry':
      return 'data';
    case 'object':
      // The object decides; without its evidence, a mapped page surely holds data and an unmapped one may.
      if (e.object) return e.object.data ? 'data' : 'nothing';
      return e.pte === 'none' ? 'nothing' : 'data';
    case 'zero':
      return 'zero';
    case 'file':
      return 'file';
    case 'guard':
    case 'poison':
      return 'marker';
    case 'special':
      return 'special';
    case 'unreadable':
      // memory no one else may read (memfd_secret): a mapped page holds data all the same
      return e.pte === 'none' ? 'nothing' : 'data';
    default:
      return 'nothing';
  }
}

export interface CaseCount {
  case: CaseId;
  /** the rule's name: a case can have more than one rule */
  name: string;
  pages: number;
}

const ruleKey = (c: { case: CaseId; name: string }) => `${c.case} ${c.name}`;

/** What the naive rule does with a run of pages that the model decided. */
export type Status = 'kept' | 'lost' | 'needless' | 'empty';

export interface AuditRun {
  offset: number;
  pages: number;
  case: CaseId;
  verdict: Verdict;
  status: Status;
}

export interface RegionAudit {
  start: Addr;
  end: Addr;
  mode: string;
  kind: Region['kind'];
  path: string | null;
  pages: number;
  /** pages a pagemap-only dumper keeps, and pages that hold data */
  naiveKeeps: number;
  dataPages: number;
  /** data a pagemap-only dumper would not keep, by case */
  lost: { pages: number; bytes: number; cases: CaseCount[] };
  /** what it would keep for nothing: zero pages, clean file pages, markers taken for swap, kernel pages (vdso) */
  needless: { zero: number; file: number; marker: number; special: number; cases: CaseCount[] };
  /**
   * smaps against the counted pages: Rss (Private_ + Shared_Hugetlb for hugetlb) = present pages but zero pages
   * (which have no struct page to count) plus migration entries; Swap = real swap entries (anon) or the object's
   * swapped pages in range (shmem).
   */
  smaps: { rss: number; rssCounted: number; swap: number; swapCounted: number | null; swapPss: number; ok: boolean };
  /** the evidence missing for this region, if any */
  unknown?: string;
  /** the region's pages in runs, as decided and as the naive rule treats them */
  runs: AuditRun[];
}

export interface AuditReport {
  kernel: string;
  processes: { process: ProcessIdentity; method: PagemapMethod; framesVisible: boolean; regions: RegionAudit[] }[];
  totals: { lostPages: number; lostBytes: number; needlessPages: number; lostByCase: CaseCount[]; needlessByCase: CaseCount[] };
}

interface EvidenceRun {
  offset: number;
  pages: number;
  e: Evidence;
}

/** Split [0, pages) at every cut, in address order, with `make` giving each piece's evidence. */
function sweep(pages: number, cuts: number[], make: (from: number, to: number) => Evidence): EvidenceRun[] {
  const points = [...new Set([0, pages, ...cuts.filter((c) => c > 0 && c < pages)])].sort((a, b) => a - b);
  const out: EvidenceRun[] = [];
  for (let i = 0; i + 1 < points.length; i++) out.push({ offset: points[i]!, pages: points[i + 1]! - points[i]!, e: make(points[i]!, points[i + 1]!) });
  return out;
}

/**
 * Object evidence for a mapping of shmem: data ranges by SEEK_DATA, which of its holes are allocated all the same
 * (cachestat), and residency by mincore on our own mapping.
 */
function objectEvidence(o: OpenObject, r: Region, pages: number): { data: Uint8Array; cached: Uint8Array; resident: Uint8Array | null } {
  const data = new Uint8Array(pages);
  const cached = new Uint8Array(pages);
  const base = Number(r.offset);
  const end = Math.min(o.size, base + pages * PAGE);
  // the dump's own reading of the object: data (S2) and holes, allocated (S5) or not
  const at = base / PAGE;
  for (const s of objectSegments(o, at, at + pages, PAGE)) {
    if (s.verdict === 'data') data.fill(1, s.offset - at, s.offset - at + s.pages);
    else if (s.case === 'S5') cached.fill(1, s.offset - at, s.offset - at + s.pages);
  }
  let resident: Uint8Array | null = null;
  if (r.kind !== 'hugetlb' && end > base) {
    // A read-only shared mapping of our own: mincore sees the page cache (and the swap cache) without faulting.
    const len = end - base;
    const p = mmap(len, PROT.READ, MAP.SHARED, o.fd, base);
    try {
      resident = new Uint8Array(pages);
      resident.set(mincore(p, len).map((b) => b & 1));
    } finally {
      munmap(p, len);
    }
  }
  return { data, cached, resident };
}

function auditRegion(pid: number, r: Region, pm: Pagemap, kp: KpageReader | null): RegionAudit {
  const pages = Number((r.end - r.start) / BigInt(PAGE));
  const region: Evidence['region'] = {
    kind: r.kind, shared: r.perms.shared, shmemBacked: r.backing === 'shmem', fileGone: r.backing === 'file' && r.deleted, readable: r.perms.read, vmFlags: r.vmFlags,
  };
  const populated = r.kind === 'vsyscall' ? [] : pm.runs(r);
  const pte = new Array<{ from: number; to: number; run: (typeof populated)[number] }>();
  for (const run of populated) {
    const from = Number((run.start - r.start) / BigInt(PAGE));
    pte.push({ from, to: from + run.pages, run });
  }
  const cuts = pte.flatMap((p) => [p.from, p.to]);

  // --deep: per present anonymous page, PM_MMAP_EXCLUSIVE and kpageflags (KSM, SWAPBACKED): cases A5, K1, A6.
  let deep: { excl: Uint8Array; ksm: Uint8Array; swapBacked: Uint8Array } | null = null;
  if (kp && r.backing === 'anon' && !r.perms.shared) {
    deep = { excl: new Uint8Array(pages), ksm: new Uint8Array(pages), swapBacked: new Uint8Array(pages) };
    for (const p of pte) {
      if (p.run.state !== 'data') continue;
      const details = pm.details(r.start + BigInt(p.from) * BigInt(PAGE), r.start + BigInt(p.to) * BigInt(PAGE), r);
      const info = kp.read(details.map((d) => d.pfn));
      details.forEach((d, i) => {
        const k = p.from + i;
        deep!.excl[k] = d.exclusive ? 1 : 2;
        const f = info[i]?.flags;
        if (f !== undefined) {
          deep!.ksm[k] = (f >> BigInt(KPF_KSM)) & 1n ? 1 : 2;
          deep!.swapBacked[k] = (f >> BigInt(KPF_SWAPBACKED)) & 1n ? 1 : 2;
        }
      });
    }
    for (let i = 1; i < pages; i++) {
      if (deep.excl[i] !== deep.excl[i - 1] || deep.ksm[i] !== deep.ksm[i - 1] || deep.swapBacked[i] !== deep.swapBacked[i - 1]) cuts.push(i);
    }
  }

  let obj: ReturnType<typeof objectEvidence> | null = null;
  let unknown: string | undefined;
  const isObject = decideFrom({ region, pte: 'none' }).verdict === 'object';
  if (isObject) {
    const o = openObject(pid, r);
    if ('error' in o) unknown = `no object evidence: ${o.error}`;
    else {
      try {
        obj = objectEvidence(o, r, pages);
      } finally {
        closeObject(o);
      }
      // Cut wherever the object's data, allocation or residency changes.
      for (let i = 1; i < pages; i++) {
        if (obj.data[i] !== obj.data[i - 1] || obj.cached[i] !== obj.cached[i - 1] || (obj.resident && obj.resident[i] !== obj.resident[i - 1])) cuts.push(i);
      }
    }
  }

  // The sweep visits pieces in address order: walk the pagemap runs alongside.
  let j = 0;
  const pteAt = (page: number) => {
    while (j < pte.length && pte[j]!.to <= page) j++;
    return j < pte.length && pte[j]!.from <= page ? pte[j]!.run : undefined;
  };
  const runs = sweep(pages, cuts, (from) => {
    const run = pteAt(from);
    const e: Evidence = { region, pte: run?.state ?? 'none', huge: run?.huge, uffdWp: run?.uffdWp };
    if (obj) e.object = { data: obj.data[from] === 1, cached: obj.cached[from] === 1, resident: obj.resident ? obj.resident[from] === 1 : undefined };
    if (deep && deep.excl[from]) {
      e.exclusive = deep.excl[from] === 1;
      if (deep.ksm[from]) e.kpf = { ksm: deep.ksm[from] === 1, swapBacked: deep.swapBacked[from] === 1 };
    }
    return e;
  });

  // counted by rule: one case can have several (F1 for a shared and for a private deleted file)
  const lost = new Map<string, CaseCount>();
  const needless = new Map<string, CaseCount>();
  const bump = (m: Map<string, CaseCount>, c: CaseId, name: string, n: number) => {
    const k = ruleKey({ case: c, name });
    const x = m.get(k) ?? { case: c, name, pages: 0 };
    x.pages += n;
    m.set(k, x);
  };
  const out: AuditRun[] = [];
  let naiveKeeps = 0;
  let dataPages = 0;
  const need = { zero: 0, file: 0, marker: 0, special: 0 };
  let present = 0;
  let migration = 0;
  let swapCounted = 0;
  for (const { offset, pages: n, e } of runs) {
    const d = decideFrom(e);
    const keeps = NAIVE_KEEPS.has(e.pte);
    const h = holds(d.verdict, e);
    const status: Status = h === 'data' ? (keeps ? 'kept' : 'lost') : keeps ? 'needless' : 'empty';
    const last = out[out.length - 1];
    if (last && last.case === d.case && last.verdict === d.verdict && last.status === status && last.offset + last.pages === offset) last.pages += n;
    else out.push({ offset, pages: n, case: d.case, verdict: d.verdict, status });
    if (keeps) naiveKeeps += n;
    if (h === 'data') dataPages += n;
    if (h === 'data' && !keeps) bump(lost, d.case, d.rule.name, n);
    if (keeps && h !== 'data') {
      // A swap-like entry over nothing (an uffd-wp marker over a hole) is a marker taken for swap too.
      need[h === 'nothing' ? 'marker' : h] += n;
      bump(needless, d.case, d.rule.name, n);
    }
    if (e.pte === 'data' || e.pte === 'file') present += n;
    if (e.pte === 'migration') migration += n;
    if (r.perms.shared ? e.object?.data === true && e.object.resident === false : e.pte === 'swap') swapCounted += n;
  }
  const sorted = (m: Map<string, CaseCount>) => [...m.values()].sort((a, b) => b.pages - a.pages);
  const lostPages = [...lost.values()].reduce((s, x) => s + x.pages, 0);
  // hugetlb pages are not in Rss: smaps counts them in Private_Hugetlb and Shared_Hugetlb.
  const rss = r.kind === 'hugetlb' ? (r.fields.Private_Hugetlb ?? 0) + (r.fields.Shared_Hugetlb ?? 0) : (r.fields.Rss ?? 0);
  const swap = r.fields.Swap ?? 0;
  const swapKnown = !r.perms.shared || obj?.resident != null;
  const rssCounted = (present + migration) * PAGE;
  return {
    start: r.start, end: r.end, mode: r.mode, kind: r.kind, path: r.name, pages, naiveKeeps, dataPages,
    lost: { pages: lostPages, bytes: lostPages * PAGE, cases: sorted(lost) },
    needless: { ...need, cases: sorted(needless) },
    smaps: {
      rss, rssCounted, swap, swapCounted: swapKnown ? swapCounted * PAGE : null, swapPss: r.fields.SwapPss ?? 0,
      // Swap of a shmem mapping is the object's swapped pages in range; SwapPss divides anonymous swap entries among
      // their sharers, so it never exceeds Swap and is 0 for shmem (which has no swap entries).
      ok: rss === rssCounted && (!swapKnown || swap === swapCounted * PAGE) && (r.fields.SwapPss ?? 0) <= swap && (!r.perms.shared || (r.fields.SwapPss ?? 0) === 0),
    },
    unknown,
    runs: out,
  };
}

export interface AuditOptions {
  method?: PagemapMethod | 'auto';
  /** also gather PM_MMAP_EXCLUSIVE and kpageflags of every present anonymous page (root for kpageflags) */
  deep?: boolean;
}

export function audit(pids: number[], opts: AuditOptions = {}): AuditReport {
  const processes: AuditReport['processes'] = [];
  for (const pid of pids) {
    assertPid(pid);
    const process = readIdentity(pid);
    try {
      const pm = new Pagemap(pid, { method: opts.method });
      const kp = opts.deep ? new KpageReader() : null;
      try {
        const all = readRegions(pid);
        pm.prefetch(all);
        const regions = all.map((r) => auditRegion(pid, r, pm, kp));
        processes.push({ process, method: pm.method, framesVisible: pm.framesVisible, regions });
      } finally {
        pm.close();
        kp?.close();
      }
    } catch (e) {
      if (!isAlive(pid)) throw exited(pid, 'ESRCH', e);
      throw e;
    }
  }
  const all = processes.flatMap((p) => p.regions);
  const merge = (pick: (r: RegionAudit) => CaseCount[]) => {
    const m = new Map<string, CaseCount>();
    for (const c of all.flatMap(pick)) {
      const k = ruleKey(c);
      const x = m.get(k) ?? { ...c, pages: 0 };
      x.pages += c.pages;
      m.set(k, x);
    }
    return [...m.values()].sort((a, b) => b.pages - a.pages);
  };
  const lostPages = all.reduce((s, r) => s + r.lost.pages, 0);
  return {
    kernel: release(), processes,
    totals: {
      lostPages, lostBytes: lostPages * PAGE, needlessPages: all.reduce((s, r) => s + r.needless.zero + r.needless.file + r.needless.marker + r.needless.special, 0),
      lostByCase: merge((r) => r.lost.cases), needlessByCase: merge((r) => r.needless.cases),
    },
  };
}
