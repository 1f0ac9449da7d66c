/** Which processes a dump covers: the pids given, and with --tree all their descendants. */
import { readdirSync } from 'node:fs';
import { PagesnapError } from '../native/index.js';
import { readStat, assertPid, readIdentity, assertUserProcess, isAlive } from '../proc/index.js';

export function descendants(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const { ppid, zombie } = readStat(Number(e));
      // a child that has exited but is not yet reaped has no memory (and no children: they went to a reaper); a
      // zombie main thread whose other threads run on is a live process
      if (!zombie || isAlive(Number(e))) children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {
      /* exited while listing */
    }
  }
  const out: number[] = [];
  const visit = (p: number) => {
    if (out.includes(p)) return;
    out.push(p);
    for (const c of children.get(p) ?? []) visit(c);
  };
  roots.forEach(visit);
  return out;
}

/** Check every target exists and is readable before anything is frozen or written. */
export function resolveTargets(pids: number[], tree: boolean): number[] {
  for (const p of pids) {
    assertPid(p);
    if (p === process.pid) throw new PagesnapError(`process ${p} is this pagesnap itself: a process cannot trace or stop itself (EPERM)`, { code: 'EPERM', hint: 'give the pid of another process' });
    readIdentity(p);
    assertUserProcess(p);
  }
  // (a tree dumped from the shell that runs pagesnap holds pagesnap itself: everything but it is dumped)
  const all = tree ? descendants(pids) : [...new Set(pids)];
  return all.filter((p) => p !== process.pid);
}
