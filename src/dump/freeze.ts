/**
 * Holding the targets still for a consistent snapshot, and letting them go on every exit path.
 * - ptrace (default, like CRIU): PTRACE_SEIZE + PTRACE_INTERRUPT of every thread. If pagesnap dies, even by
 *   SIGKILL, the kernel detaches the tracees and they run on.
 * - sigstop: SIGSTOP the process; cgroup: freeze its cgroup v2. Both would leave the target stopped if pagesnap
 *   were killed outright, so a watchdog process (a shell waiting on a pipe from us) thaws it when that pipe closes.
 * - none: nothing is frozen; the manifest marks the snapshot fuzzy.
 * A target that was already stopped (or in a frozen cgroup) is left so. A failure while freezing thaws what was frozen.
 */
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import * as n from '../native/index.js';
import { PagesnapError, PTRACE, atExit, watchdog, shellQuote, sleepSync } from '../native/index.js';
import { readStat, readIdentity, accessHint, memoryTask, taskState, hasExited, isStopped, whyNotStopped, statusNumber, isAlive, memorySharers } from '../proc/index.js';
import type { SharingProcess } from '../snapshot/manifest.js';
import { descendants } from './targets.js';

export type FreezeMethod = 'ptrace' | 'sigstop' | 'cgroup' | 'none';

export interface Frozen {
  method: FreezeMethod;
  pids: number[];
  /** how long freezing took, ms */
  freezeMs: number;
  thaw(): void;
}

/** What freeze() holds: the targets, and the processes frozen with them for sharing their memory. */
export interface FrozenTargets extends Frozen {
  sharers: SharingProcess[];
}

/** The threads of `pid`, as /proc/PID/task lists them (exited ones too, until they are gone). */
function threads(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    throw new PagesnapError(`process ${pid} does not exist`, { code: 'ESRCH', hint: 'check the pid with `ps`' });
  }
}

/** Whether `tid` has reported its ptrace stop to us (or is seen in tracing stop, should someone else reap it), has
 * gone (exited), or is still on its way (null). */
function traceStopped(pid: number, tid: number): boolean | null {
  let st: n.WaitStatus | null = null;
  try {
    st = n.waitpid(tid, n.WAIT.WALL | n.WAIT.NOHANG);
  } catch (e) {
    if ((e as n.NativeError).code === 'ECHILD') return taskState(pid, tid) === 't';
    throw e;
  }
  if (st?.stopped && st.ptraceEvent !== PTRACE.EVENT_STOP) {
    // A signal came before the interrupt: the thread stopped to have it delivered. Held there, it would lose the
    // signal when let go (a detach passes none on): it takes the signal now, then stops at the interrupt, still
    // pending. (As CRIU's compel does.)
    try {
      n.ptraceCont(tid, st.stopSignal);
    } catch (e) {
      if ((e as n.NativeError).code !== 'ESRCH') throw e; // (killed meanwhile: the next look finds it gone)
    }
    return null;
  }
  if (st?.stopped) return true;
  if (st && (st.exited || st.signaled)) return false;
  return taskState(pid, tid) === null ? false : null;
}

/** A thread, and the process it belongs to. */
interface Task {
  pid: number;
  tid: number;
}

/**
 * Wait until every thread interrupted has stopped. They stop at once, in parallel, every process's together: waiting
 * for each thread before interrupting the next cost ~0.6 ms a thread (1.2 s for 2000), and for each process before
 * interrupting the next ~1.2 ms a process (0.4 s for a tree of 300).
 */
function waitTraceStops(tasks: Task[]): void {
  let pending = tasks;
  for (let i = 0; pending.length > 0; i++) {
    if (i === 5000) throw notStopping(pending[0]!.pid, pending[0]!.tid);
    const before = pending.length;
    pending = pending.filter((t) => traceStopped(t.pid, t.tid) === null);
    if (pending.length === before) sleepSync(1);
  }
}

function notStopping(pid: number, tid: number): PagesnapError {
  const why = whyNotStopped(pid, tid);
  const thread = tid === pid ? `process ${pid}` : `thread ${tid} of process ${pid}`;
  return new PagesnapError(`${thread} did not stop within 5 s${why ? `: ${why}` : ''}`, {
    code: 'ETIMEDOUT', hint: why.includes('vfork') ? 'let the child run on, or use --freeze none (a vfork parent shares its memory with the child until it execs)' : 'try again, or use --freeze none',
  });
}

/**
 * Take the report of a tracee's end (it was killed while frozen): a traced thread's end goes to its tracer first, and
 * until the tracer takes it the process's parent cannot wait for it (a shell waiting for its killed child would hang
 * for as long as pagesnap runs).
 */
function reapTracee(tid: number): void {
  for (let i = 0; i < 1000; i++) {
    let st: n.WaitStatus | null;
    try {
      st = n.waitpid(tid, n.WAIT.WALL | n.WAIT.NOHANG);
    } catch {
      return; // (taken already, or not ours)
    }
    if (st?.exited || st?.signaled) return;
    if (st === null) sleepSync(1); // (still on its way out)
  }
}

function freezePtrace(pids: number[]): Frozen {
  const seized: number[] = [];
  const frozen: Frozen = {
    method: 'ptrace', pids, freezeMs: 0,
    thaw() {
      for (const tid of seized.splice(0)) {
        try {
          n.ptraceDetach(tid);
        } catch {
          reapTracee(tid);
        }
      }
    },
  };
  try {
    for (const pid of pids) {
      const tracer = statusNumber(pid, 'TracerPid') ?? 0;
      if (tracer !== 0) throw alreadyTraced(pid, tracer);
    }
    // Threads may be created while we seize: go round until a pass finds none new.
    const done = new Set<number>();
    for (let pass = 0; pass < 100; pass++) {
      const interrupted: Task[] = [];
      for (const pid of pids) for (const tid of threads(pid)) {
        if (done.has(tid)) continue;
        done.add(tid);
        try {
          n.ptraceSeize(tid);
        } catch (e) {
          const code = (e as n.NativeError).code;
          // Gone; or refused (EPERM) for having exited: a main thread that has while others run on is a zombie,
          // which no ptrace request reaches. (A thread's state is read only then: reading every thread's, every
          // pass, was half of freezing 2000 threads.)
          if (code === 'ESRCH' || (code === 'EPERM' && hasExited(taskState(pid, tid)))) continue;
          throw new PagesnapError(`cannot freeze process ${pid}: ptrace(SEIZE) of thread ${tid}: ${code}`, {
            // (--freeze sigstop would not help: reading the memory needs the same access)
            code, hint: accessHint(pid), cause: e,
          });
        }
        seized.push(tid);
        n.ptraceInterrupt(tid);
        interrupted.push({ pid, tid });
      }
      if (interrupted.length === 0) break;
      waitTraceStops(interrupted);
    }
  } catch (e) {
    frozen.thaw();
    throw e;
  }
  return frozen;
}

/** The error for a target another process traces: a debugger, or another pagesnap dumping it right now. */
function alreadyTraced(pid: number, tracer: number): PagesnapError {
  let who: { comm: string; cmdline: string[] } | undefined;
  try {
    who = readIdentity(tracer);
  } catch {
    /* gone meanwhile, or not ours to read */
  }
  if (who?.cmdline.includes('dump') && who.cmdline.some((a) => /(^|\/)(pagesnap|bin\/run\.js)$/.test(a))) {
    return new PagesnapError(`process ${pid} is being dumped by another pagesnap (process ${tracer})`, { code: 'EBUSY', hint: 'wait for that dump to finish' });
  }
  return new PagesnapError(`process ${pid} is already traced by process ${tracer}${who ? ` (${who.comm})` : ''}`, {
    code: 'EBUSY', hint: 'detach the debugger, or use --freeze sigstop or --freeze none',
  });
}

/** In a cgroup v2 that is frozen (by pagesnap or anyone): still already, and deaf to SIGSTOP until thawed. */
export function cgroupFrozen(pid: number): boolean {
  try {
    return /^frozen 1$/m.test(readFileSync(`${cgroupOf(pid)}/cgroup.events`, 'utf8'));
  } catch {
    return false;
  }
}

function freezeSigstop(pids: number[]): Frozen {
  // (a main thread that has exited is no guide)
  const stopped = pids.filter((p) => !isStopped(readStat(memoryTask(p)).state) && !cgroupFrozen(p));
  const dog = watchdog(`kill -CONT ${stopped.join(' ') || '0'} 2>/dev/null`);
  const frozen: Frozen = {
    method: 'sigstop', pids, freezeMs: 0,
    thaw() {
      for (const p of stopped.splice(0)) {
        try {
          process.kill(p, 'SIGCONT');
        } catch {
          /* gone */
        }
      }
      dog.dismiss();
    },
  };
  try {
    for (const p of stopped) process.kill(p, 'SIGSTOP');
    for (const p of stopped) {
      for (const tid of threads(p)) {
        let i = 0;
        for (let state = taskState(p, tid); !isStopped(state) && !hasExited(state); state = taskState(p, tid)) {
          if (++i > 5000) throw notStopping(p, tid);
          sleepSync(1);
        }
      }
    }
  } catch (e) {
    frozen.thaw();
    throw e;
  }
  return frozen;
}

/** Where cgroup v2 is mounted: /sys/fs/cgroup on unified systems, /sys/fs/cgroup/unified on hybrid ones. */
export function cgroup2Mount(): string | null {
  const line = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[2] === 'cgroup2');
  return line ? line.split(' ')[1]! : null;
}

function cgroupOf(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  const mount = cgroup2Mount();
  if (!line || !mount) throw new PagesnapError(`process ${pid} is not in a cgroup v2 hierarchy`, { code: 'ENOTSUP', hint: 'use --freeze ptrace or sigstop' });
  return `${mount}${line.slice(3)}`.replace(/\/$/, '');
}

function freezeCgroup(pids: number[]): Frozen {
  const groups = [...new Set(pids.map(cgroupOf))];
  const mine = cgroupOf(process.pid);
  for (const g of groups) {
    if (!existsSync(`${g}/cgroup.freeze`)) throw new PagesnapError(`${g} cannot be frozen (no cgroup.freeze: the root cgroup?)`, { code: 'ENOTSUP', hint: 'move the target into a cgroup of its own, or use --freeze ptrace' });
    if (mine === g || mine.startsWith(`${g}/`)) throw new PagesnapError(`refusing to freeze ${g}: pagesnap itself runs in it`, { code: 'EDEADLK', hint: 'run pagesnap outside the target\'s cgroup, or use --freeze ptrace' });
  }
  const toFreeze = groups.filter((g) => readFileSync(`${g}/cgroup.freeze`, 'utf8').trim() === '0');
  const dog = watchdog(toFreeze.map((g) => `echo 0 > ${shellQuote(`${g}/cgroup.freeze`)}`).join('; ') || 'true');
  const frozen: Frozen = {
    method: 'cgroup', pids, freezeMs: 0,
    thaw() {
      for (const g of toFreeze.splice(0)) {
        try {
          writeFileSync(`${g}/cgroup.freeze`, '0');
        } catch {
          /* removed */
        }
      }
      dog.dismiss();
    },
  };
  try {
    for (const g of toFreeze) writeFileSync(`${g}/cgroup.freeze`, '1');
    for (const g of toFreeze) {
      let i = 0;
      while (!/^frozen 1$/m.test(readFileSync(`${g}/cgroup.events`, 'utf8'))) {
        if (++i > 5000) throw new PagesnapError(`${g} did not freeze within 5 s`, { code: 'ETIMEDOUT' });
        sleepSync(1);
      }
    }
  } catch (e) {
    frozen.thaw();
    throw e;
  }
  return frozen;
}

/**
 * Freeze `pids` (and with `tree` their descendants: `pids` of the result says which were frozen), and every other
 * process that runs in the address space of one of them (clone with CLONE_VM): left running, it would change the
 * memory as it is read. The returned thaw() also runs on any exit path of pagesnap until it has been called.
 *
 * A tree is frozen from the top: once a process is frozen it forks no more, so listing the tree again finds the
 * children of the processes frozen since the last listing, until a listing finds none new. A process that exits
 * before it is frozen is not in the tree; one that forks meanwhile has its child found in the next round. (Listing
 * the tree once and then freezing it failed on any tree whose processes come and go: a shell running commands.)
 * The sharers are found the same way, round after round, once the tree is still (unless `sharers` is false: a freeze
 * that holds no memory still, only the targets' threads).
 */
export function freeze(pids: number[], method: FreezeMethod, opts: { tree?: boolean; sharers?: boolean } = {}): FrozenTargets {
  const tree = opts.tree ?? false;
  const t = performance.now();
  const parts: Frozen[] = [];
  const thawAll = () => {
    for (const f of parts.splice(0).reverse()) f.thaw();
  };
  const forget = atExit(thawAll);
  const members: number[] = [];
  const sharers: SharingProcess[] = [];
  try {
    const seen = new Set<number>();
    const add = (f: Frozen) => {
      parts.push(f);
      members.push(...f.pids);
      for (const p of f.pids) seen.add(p);
    };
    add(freezeWith(method, pids));
    for (let round = 0; tree; round++) {
      const fresh = descendants(pids).filter((p) => !seen.has(p));
      if (fresh.length === 0) break;
      if (round === 100) throw new PagesnapError(`the tree of process ${pids.join(', ')} still grew after 100 rounds of freezing`, { code: 'EAGAIN', hint: 'try again' });
      for (const p of fresh) seen.add(p);
      add(freezeMembers(method, fresh));
      // (nothing frozen, nothing stops the tree changing: it is as listed once)
      if (method === 'none') break;
    }
    // (nothing frozen, a sharer changes the memory as the targets themselves do)
    for (let round = 0; method !== 'none' && opts.sharers !== false; round++) {
      const found = memorySharers(members, seen);
      if (found.size === 0) break;
      if (round === 100) throw new PagesnapError(`processes sharing the memory of process ${pids.join(', ')} still came after 100 rounds of freezing`, { code: 'EAGAIN', hint: 'try again' });
      for (const [p, of] of found) {
        seen.add(p);
        let f: Frozen;
        try {
          f = freezeMembers(method, [p]);
        } catch (e) {
          const err = e as PagesnapError;
          throw new PagesnapError(`cannot freeze process ${p}, which shares the memory of process ${of} (clone with CLONE_VM): ${err.message}`, { code: err.code, hint: err.hint, cause: e });
        }
        parts.push(f);
        for (const q of f.pids) {
          try {
            sharers.push({ pid: q, comm: readStat(q).comm, of });
          } catch {
            /* killed while frozen: it changes nothing more */
          }
        }
      }
    }
  } catch (e) {
    thawAll();
    forget();
    throw e;
  }
  return {
    method, pids: members, sharers, freezeMs: performance.now() - t,
    thaw() {
      thawAll();
      forget();
    },
  };
}

function freezeWith(method: FreezeMethod, pids: number[]): Frozen {
  switch (method) {
    case 'ptrace': return freezePtrace(pids);
    case 'sigstop': return freezeSigstop(pids);
    case 'cgroup': return freezeCgroup(pids);
    case 'none': return { method, pids, freezeMs: 0, thaw() {} };
  }
}

/**
 * Freeze the members of a tree that are still there. One that goes while they are frozen makes that fail, having
 * let go what it froze: it is left out, and the rest frozen again. One gone without a failure (its threads exited
 * before they were reached) is left out too.
 */
function freezeMembers(method: FreezeMethod, pids: number[]): Frozen {
  for (let left = pids.filter(isAlive); ; ) {
    if (left.length === 0) return { method, pids: left, freezeMs: 0, thaw() {} };
    try {
      const f = freezeWith(method, left);
      f.pids = left.filter(isAlive);
      return f;
    } catch (e) {
      const still = left.filter(isAlive);
      if (still.length === left.length) throw e;
      left = still;
    }
  }
}
