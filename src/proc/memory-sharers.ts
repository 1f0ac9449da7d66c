/**
 * Processes that run in another's address space: made by clone(CLONE_VM) without CLONE_THREAD (a vfork child until
 * it execs, a runtime's processes of its own). No file of /proc names an address space; kcmp(KCMP_VM) compares two.
 */
import { kcmp, KCMP } from '../native/index.js';
import { memoryTask, hasAddressSpace, processIds } from './process.js';

/**
 * kcmp's order of two processes' address spaces: negative, 0 (the same one), positive; null where they cannot be
 * compared (one has gone, or is not ours to inspect).
 */
function vmOrder(a: number, b: number): number | null {
  let r: number;
  try {
    r = kcmp(a, b, KCMP.VM);
  } catch {
    return null;
  }
  return r === 0 ? 0 : r === 1 ? -1 : r === 2 ? 1 : null;
}

/** Where `pid`'s address space is, or would go, among `spaces` (kcmp's order); null where it cannot be compared. */
function search(spaces: number[], pid: number): { at: number; same: boolean } | null {
  let lo = 0;
  let hi = spaces.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const o = vmOrder(pid, spaces[mid]!);
    if (o === null) return null;
    if (o === 0) return { at: mid, same: true };
    if (o < 0) hi = mid;
    else lo = mid + 1;
  }
  return { at: lo, same: false };
}

/**
 * The processes other than `pids` and `known` whose address space is that of one of `pids`, each with that one. A
 * pass over /proc costs a kcmp per process and step of a binary search among the address spaces of `pids` (kcmp
 * orders them): a tree's hundreds of processes are not each compared with every other. (Measured: 5 ms for one
 * target on a host of 2000 processes, as much in C; the kernel's side of readdir and kcmp is most of it.)
 */
export function memorySharers(pids: readonly number[], known: ReadonlySet<number> = new Set()): Map<number, number> {
  // Each compared through a live thread: a main thread that has exited has no address space, nor has a kernel
  // thread, and kcmp finds two without one the same.
  const spaces: number[] = [];
  const owner = new Map<number, number>();
  for (const p of pids) {
    const t = memoryTask(p);
    if (!hasAddressSpace(t)) continue;
    const s = search(spaces, t);
    if (s && !s.same) {
      spaces.splice(s.at, 0, t);
      owner.set(t, p);
    }
  }
  const found = new Map<number, number>();
  if (spaces.length === 0) return found;
  const skip = new Set([...pids, ...known, process.pid]);
  for (const q of processIds()) {
    if (skip.has(q)) continue;
    const s = search(spaces, q);
    if (s?.same && hasAddressSpace(q)) found.set(q, owner.get(spaces[s.at]!)!);
  }
  return found;
}
