// The rule table: each case id is reached by its evidence; degraded evidence falls back without guessing; every
// combination of region kind, sharing and page state has a rule.
import { describe, it, expect } from 'vitest';
import { decideFrom, RULES, ALIASES, type Evidence } from '../src/model/rules.js';
import { CASE_IDS, type CaseId, type Verdict } from '../src/model/verdict.js';
import type { PageState, RegionKind } from '../src/proc/index.js';

const anon = { kind: 'anon-private' as RegionKind, shared: false, vmFlags: [] as string[] };
const ev = (region: Partial<Evidence['region']>, pte: Evidence['pte'], more: Partial<Evidence> = {}): Evidence => ({ region: { ...anon, ...region }, pte, ...more });
const shm = { kind: 'shmem-shared' as RegionKind, shared: true, shmemBacked: true };
const fpriv = { kind: 'file-private' as RegionKind, shared: false };

/** Evidence that is the case, and the verdict the case calls for (kernel-semantics.md §2.1, "dump?"). */
const CASES: Record<CaseId, [Evidence, Verdict]> = {
  A1: [ev({}, 'none'), 'hole'],
  A2: [ev({}, 'zero'), 'zero'],
  A3: [ev({}, 'data'), 'data'],
  A4: [ev({}, 'swap'), 'data'],
  A5: [ev({}, 'data', { exclusive: false }), 'data'],
  A6: [ev({}, 'data', { kpf: { swapBacked: false } }), 'data'],
  A7: [ev({}, 'zero', { huge: true }), 'zero'],
  A8: [ev({}, 'data', { huge: true }), 'data'],
  A9: [ev({}, 'swap'), 'data'], // alias of A4
  A10: [ev({}, 'migration'), 'retry'],
  A11: [ev({}, 'device'), 'data'],
  A12: [ev({}, 'device', { deviceExclusive: true }), 'data'],
  A13: [ev({}, 'hwpoison'), 'poison'],
  A14: [ev({}, 'poison-marker'), 'poison'],
  A15: [ev({}, 'guard'), 'guard'],
  A16: [ev(shm, 'guard'), 'guard'],
  A17: [ev({}, 'uffd-wp-marker'), 'hole'],
  A18: [ev(shm, 'uffd-wp-marker'), 'object'],
  A19: [ev({}, 'data', { uffdWp: true }), 'data'],
  S1: [ev(shm, 'file'), 'object'],
  S2: [ev(shm, 'none', { object: { data: true, resident: true } }), 'object'],
  S3: [ev(shm, 'none', { object: { data: true, resident: false } }), 'object'],
  S4: [ev(shm, 'file', { zeroContent: true }), 'object'],
  S5: [ev(shm, 'none', { object: { data: false, cached: true } }), 'object'],
  S6: [ev(shm, 'none', { object: { data: false } }), 'object'],
  S7: [ev(shm, 'file', { huge: true }), 'object'],
  F1: [ev(fpriv, 'none'), 'file'],
  F2: [ev(fpriv, 'file'), 'file'],
  F3: [ev(fpriv, 'data'), 'data'],
  F4: [ev(fpriv, 'swap'), 'data'],
  F5: [ev(fpriv, 'none', { object: { data: true, resident: false } }), 'file'],
  F6: [ev({ ...fpriv, shmemBacked: true }, 'file', { zeroContent: true }), 'object'],
  F7: [ev(fpriv, 'file'), 'file'], // alias of F2
  H1: [ev({ kind: 'hugetlb' }, 'data', { huge: true }), 'data'],
  H2: [ev({ kind: 'hugetlb', shared: true }, 'none'), 'object'],
  H3: [ev({ kind: 'hugetlb' }, 'swap-unknown'), 'retry'],
  K1: [ev({ vmFlags: ['mg'] }, 'data', { kpf: { ksm: true } }), 'data'],
  K2: [ev({ vmFlags: ['mg'] }, 'zero'), 'zero'],
  P1: [ev({}, 'swap-unknown'), 'data'],
  P2: [ev({ readable: false }, 'data'), 'data'],
  P3: [ev({ vmFlags: ['lo'] }, 'data'), 'data'],
  P4: [ev({}, 'none'), 'hole'], // alias of A1: the region does not exist in the child
  P5: [ev({ vmFlags: ['wf'] }, 'none'), 'hole'],
  R1: [ev({}, 'migration'), 'retry'], // alias of A10
  X1: [ev({ kind: 'vvar' }, 'none'), 'special'],
  X2: [ev({ kind: 'secret', shared: true }, 'file'), 'unreadable'],
  X3: [ev({ vmFlags: ['um'] }, 'none'), 'unreadable'],
  X4: [ev({ kind: 'aio-ring', shared: true }, 'none'), 'data'], // pagemap shows only what the process touched
  X5: [ev({ kind: 'kernel-object', shared: true }, 'file'), 'data'],
};

describe('every case id', () => {
  for (const id of CASE_IDS) {
    it(`${id}`, () => {
      const [e, verdict] = CASES[id];
      const d = decideFrom(e);
      const alias = ALIASES[id];
      expect({ case: d.case, verdict: d.verdict }).toEqual({ case: alias ? alias.as : id, verdict });
    });
  }
  it('every case id without an alias has a rule, and aliases point at cases with rules', () => {
    const ruled = new Set(RULES.map((r) => r.case));
    for (const id of CASE_IDS) expect(ruled.has(id) || ALIASES[id] !== undefined, id).toBe(true);
    for (const a of Object.values(ALIASES)) expect(ruled.has(a!.as)).toBe(true);
  });
});

describe('a kernel object\'s memory (an io_uring\'s rings)', () => {
  it('a page not mapped is not read (X5): only the object\'s fault handler could make it', () => {
    expect(decideFrom(ev({ kind: 'kernel-object', shared: true }, 'none'))).toMatchObject({ case: 'X5', verdict: 'unreadable' });
  });
});

describe('userfaultfd (missing mode) over shmem', () => {
  it('a pte-less page is X3 only where the object holds nothing: data, an allocated page or no evidence stay the object\'s', () => {
    const reg = { ...shm, vmFlags: ['um'] };
    const d = (object?: Evidence['object']) => decideFrom(ev(reg, 'none', { object })).case;
    expect(d({ data: false })).toBe('X3');
    expect(d({ data: true, resident: true })).toBe('S2');
    expect(d({ data: false, cached: true })).toBe('S5');
    expect(d(undefined)).toBe('S2');
    expect(decideFrom(ev(reg, 'file')).case).toBe('S1');
    expect(decideFrom(ev({ ...fpriv, shmemBacked: true, vmFlags: ['um'] }, 'none', { object: { data: false } })).case).toBe('X3');
  });
});

describe('degraded evidence', () => {
  it('without CAP_SYS_ADMIN a swap-like entry is read, and the case says why (P1)', () => {
    expect(decideFrom(ev({}, 'swap-unknown'))).toMatchObject({ case: 'P1', verdict: 'data' });
    expect(decideFrom(ev(fpriv, 'swap-unknown'))).toMatchObject({ case: 'P1', verdict: 'data' });
  });
  it('without access to the shmem object, a page pagemap does not show is still the object\'s', () => {
    const d = decideFrom(ev(shm, 'none'));
    expect(d).toMatchObject({ case: 'S2', verdict: 'object' });
    expect(d.rule.name).toMatch(/object not inspected/);
  });
  it('without kpageflags or the exclusive bit, shared and KSM pages are plain data (A3), never dropped', () => {
    expect(decideFrom(ev({ vmFlags: ['mg'] }, 'data'))).toMatchObject({ case: 'A3', verdict: 'data' });
  });
  it('a private mapping of shmem keeps its clean and untouched pages with the object (a memfd dies with its process)', () => {
    const mshm = { ...fpriv, shmemBacked: true };
    expect(decideFrom(ev(mshm, 'file'))).toMatchObject({ case: 'F2', verdict: 'object' });
    expect(decideFrom(ev(mshm, 'none'))).toMatchObject({ case: 'F1', verdict: 'object' });
    expect(decideFrom(ev(mshm, 'data'))).toMatchObject({ case: 'F3', verdict: 'data' });
    expect(decideFrom(ev(mshm, 'file', { includeFilePages: true }))).toMatchObject({ case: 'F2', verdict: 'object' });
  });
  it('a deleted file keeps every page with the object, mapped or not, shared or private (no name to find it by)', () => {
    const gone = { ...fpriv, fileGone: true };
    const goneShared = { kind: 'file-shared' as RegionKind, shared: true, fileGone: true };
    expect(decideFrom(ev(gone, 'file'))).toMatchObject({ case: 'F2', verdict: 'object' });
    expect(decideFrom(ev(gone, 'none'))).toMatchObject({ case: 'F1', verdict: 'object' });
    expect(decideFrom(ev(gone, 'data'))).toMatchObject({ case: 'F3', verdict: 'data' });
    expect(decideFrom(ev(goneShared, 'file'))).toMatchObject({ case: 'F2', verdict: 'object' });
    expect(decideFrom(ev(goneShared, 'none'))).toMatchObject({ case: 'F1', verdict: 'object' });
    expect(decideFrom(ev(goneShared, 'guard'))).toMatchObject({ case: 'A16', verdict: 'guard' });
    // a file still there holds its own pages
    expect(decideFrom(ev({ kind: 'file-shared', shared: true }, 'none'))).toMatchObject({ case: 'F1', verdict: 'file' });
  });
  it('memfd_secret memory is unreadable whatever pagemap shows, and the verdict says why', () => {
    for (const pte of ['none', 'file', 'data'] as const) {
      const d = decideFrom(ev({ kind: 'secret', shared: true }, pte));
      expect(d).toMatchObject({ case: 'X2', verdict: 'unreadable' });
      expect(d.rule.why).toMatch(/no other process/);
    }
  });
  it('--include-file-pages turns clean file pages into data', () => {
    expect(decideFrom(ev(fpriv, 'file', { includeFilePages: true }))).toMatchObject({ case: 'F2', verdict: 'data' });
  });
});

describe('exhaustive', () => {
  const kinds: RegionKind[] = ['anon-private', 'heap', 'stack', 'shmem-shared', 'file-private', 'file-shared', 'hugetlb', 'vdso', 'vvar', 'vsyscall', 'secret', 'aio-ring', 'special'];
  const states: (PageState | 'none')[] = ['none', 'data', 'zero', 'file', 'swap', 'migration', 'device', 'hwpoison', 'guard', 'uffd-wp-marker', 'poison-marker', 'swap-unknown'];
  it('every kind × sharing × state has a rule', () => {
    for (const kind of kinds) for (const shared of [false, true]) for (const pte of states) {
      expect(() => decideFrom(ev({ kind, shared }, pte)), `${kind} ${shared} ${pte}`).not.toThrow();
    }
  });
});
