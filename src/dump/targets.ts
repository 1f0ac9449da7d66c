/** Which processes a dump covers: the pids given, and with --tree all their descendants. */
import { PagesnapError } from '../native/index.js';
import { readStat, assertPid, readIdentity, assertUserProcess, isAlive, processIds } from '../proc/index.js';

/**
 * `roots` and their descendants, parents before children. pagesnap and whatever it started are never among them (a
 * tree dumped from the shell that runs pagesnap holds pagesnap itself, and its watchdogs once it freezes).
 */
export function descendants(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const pid of processIds()) {
    try {
      const { ppid, zombie } = readStat(pid);
      // a child that has exited but is not yet reaped has no memory (and no children: they went to a reaper); a
      // zombie main thread whose other threads run on is a live process
      if (!zombie || isAlive(pid)) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    } catch {
      /* exited while listing */
    }
  }
  const out: number[] = [];
  const seen = new Set<number>();
  const visit = (p: number) => {
    if (seen.has(p) || p === process.pid) return;
    seen.add(p);
    out.push(p);
    for (const c of children.get(p) ?? []) visit(c);
  };
  roots.forEach(visit);
  return out;
}

/**
 * Check every target exists and is readable before anything is frozen or written. With `tree`, the processes of the
 * trees as they are now: which of them are dumped is settled as they are frozen (see freeze), since a tree whose
 * processes come and go has others by then.
 */
export function resolveTargets(pids: number[], tree: boolean): number[] {
  for (const p of pids) {
    assertPid(p);
    if (p === process.pid) throw new PagesnapError(`process ${p} is this pagesnap itself: a process cannot trace or stop itself (EPERM)`, { code: 'EPERM', hint: 'give the pid of another process' });
    readIdentity(p);
    assertUserProcess(p);
  }
  return tree ? descendants(pids) : [...new Set(pids)];
}
