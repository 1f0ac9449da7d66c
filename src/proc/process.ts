/** Reading /proc/PID files, with errors that say what happened to the target and what to do. */
import { readFileSync, readdirSync, openSync, existsSync, statSync } from 'node:fs';
import { PagesnapError, isErrno } from '../native/index.js';

/**
 * The /proc files that show a process's memory, address space and what it sees: empty or gone under /proc/PID once
 * its main thread has exited while others run on (pthread_exit from main), but still there under each live thread's
 * /proc/PID/task/TID. (map_files has no such twin.)
 */
const SEEN_THROUGH_A_THREAD = new Set(['maps', 'smaps', 'smaps_rollup', 'pagemap', 'mem', 'cmdline', 'environ', 'mountinfo', 'root', 'fd']);

export function procPath(pid: number, file: string): string {
  if (!SEEN_THROUGH_A_THREAD.has(file.split('/')[0]!)) return `/proc/${pid}/${file}`;
  const tid = memoryTask(pid);
  return tid === pid ? `/proc/${pid}/${file}` : `/proc/${pid}/task/${tid}/${file}`;
}

/** The task through which `pid`'s memory is reached (/proc files, process_vm_readv): the process, or one of its live
 * threads once its main thread has exited. */
export function memoryTask(pid: number): number {
  try {
    if (!readStat(pid).zombie) return pid;
  } catch {
    return pid;
  }
  return liveThreads(pid)[0] ?? pid;
}

/**
 * A pid is a number a process can have, and not the id of one of its threads: /proc shows a thread under its own id
 * too (top -H and gdb list them), so a thread would pass for a process of that id whose memory is its group's.
 */
export function assertPid(pid: number): void {
  if (!Number.isInteger(pid) || pid <= 0 || pid > 4194304) {
    throw new PagesnapError(`invalid pid ${JSON.stringify(pid)}`, { code: 'EINVAL', hint: 'give a positive process id' });
  }
  let group: number;
  try {
    group = statusNumber(pid, 'Tgid') ?? pid;
  } catch {
    return; // (gone or never there: the first read of the process says which)
  }
  if (group !== pid) {
    let comm = '';
    try {
      comm = ` (${readStat(group).comm})`;
    } catch {
      /* gone meanwhile */
    }
    throw new PagesnapError(`${pid} is a thread of process ${group}${comm}, not a process (/proc/${pid}/status: Tgid ${group})`, { code: 'EINVAL', hint: `give the process's id, ${group}` });
  }
}

/** A number from /proc/PID/status (Tgid, TracerPid, Uid's real id, Seccomp, …); undefined where it has no such field. */
export function statusNumber(pid: number, field: string): number | undefined {
  return statusNumbers(pid, field)[0];
}

/** The numbers of a field of /proc/PID/status (Uid's four ids, NSpid's pids); none where it has no such field. */
export function statusNumbers(pid: number, field: string): number[] {
  // (the numbers the line starts with: VmPeak's is followed by its unit)
  const m = new RegExp(`^${field}:[ \\t]+(\\d+(?:[ \\t]+\\d+)*)`, 'm').exec(readProcText(pid, 'status'));
  return m ? m[1]!.split(/[ \t]+/).map(Number) : [];
}

/** Whether `pid` is a process with memory left: not gone, and not a zombie without a live thread. Never throws: a
 * process reaped while it is looked at is gone. */
export function isAlive(pid: number): boolean {
  try {
    return existsSync(procPath(pid, 'stat')) && (!readStat(pid).zombie || liveThreads(pid).length > 0);
  } catch {
    return false;
  }
}

/** Turn a failed /proc access into a clear error about the target process. */
export function targetError(pid: number, file: string, err: unknown): Error {
  const path = procPath(pid, file);
  if (isErrno(err, 'ENOENT', 'ESRCH')) {
    if (existsSync(`/proc/${pid}`) && isKernelThread(pid)) return kernelThread(pid, `${path}: ${(err as { code: string }).code}`, err);
    if (existsSync(`/proc/${pid}`)) return exited(pid, (err as { code: string }).code, err);
    return new PagesnapError(`process ${pid} does not exist (${path}: ${(err as { code: string }).code})`, {
      code: (err as { code: string }).code,
      hint: 'check the pid with `ps`',
      cause: err,
    });
  }
  if (isErrno(err, 'EACCES', 'EPERM')) {
    return new PagesnapError(`cannot read ${path}: ${(err as { code: string }).code}`, {
      code: (err as { code: string }).code, hint: accessHint(pid), cause: err,
    });
  }
  return err instanceof Error ? err : new Error(String(err));
}

function kernelThread(pid: number, detail: string, cause?: unknown): PagesnapError {
  return new PagesnapError(`process ${pid} is a kernel thread: it has no user memory (${detail})`, { code: 'EINVAL', hint: 'give the pid of a user process', cause });
}

/** Refuse a kernel thread before anything is done to it (freezing one fails with a misleading EPERM). */
export function assertUserProcess(pid: number): void {
  if (isKernelThread(pid)) throw kernelThread(pid, 'PF_KTHREAD');
}

/**
 * A process that is not dumpable (PR_SET_DUMPABLE 0, or one that changed credentials, as setuid programs do): its
 * /proc files belong to root, and only root may read its memory, even for its owner.
 */
function notDumpable(pid: number): boolean {
  try {
    return statSync(procPath(pid, 'mem')).uid === 0 && statSync(`/proc/${pid}`).uid !== 0;
  } catch {
    return false;
  }
}

/** What to do when the target's memory may not be read. */
export function accessHint(pid: number): string {
  if (process.geteuid?.() === 0) return `pagesnap runs as root but may not trace process ${pid}: it belongs to a user namespace above pagesnap's, or a security module (Yama, SELinux, AppArmor) forbids it`;
  if (notDumpable(pid)) return `process ${pid} is not dumpable (PR_SET_DUMPABLE 0, or it changed credentials): only root can read its memory`;
  return 'run pagesnap as root or as the owner of the process (ptrace access is required; see /proc/sys/kernel/yama/ptrace_scope)';
}

/** The target went away after we started reading it. */
export function exited(pid: number, code: string, cause?: unknown): PagesnapError {
  return new PagesnapError(`process ${pid} exited while it was being read (${code})`, {
    code, hint: 'nothing was changed; try again on a process that stays alive', cause,
  });
}

export function readProcText(pid: number, file: string): string {
  try {
    return readFileSync(procPath(pid, file), 'utf8');
  } catch (e) {
    throw targetError(pid, file, e);
  }
}

export function openProc(pid: number, file: string, flags = 'r'): number {
  try {
    return openSync(procPath(pid, file), flags);
  } catch (e) {
    throw targetError(pid, file, e);
  }
}

/** The state letter of thread `tid` of `pid` (R, S, D, T, t, Z, …), or null when it is gone. */
export function taskState(pid: number, tid: number): string | null {
  try {
    const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[0]!;
  } catch {
    return null;
  }
}

/** Stopped: by a signal (T), or in a tracer's stop (t: a debugger's breakpoint, or a SIGSTOP its tracer holds). */
export const isStopped = (state: string | null): boolean => state === 'T' || state === 't';

/**
 * Why a thread asked to stop (SIGSTOP, PTRACE_INTERRUPT) has not, as far as /proc tells: its state and where it
 * sleeps, and the commonest cause, a vfork() parent, which stops only once its child execs or exits. Empty when
 * nothing is known.
 */
export function whyNotStopped(pid: number, tid: number): string {
  const state = taskState(pid, tid);
  if (state === null) return '';
  const read = (file: string) => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/${file}`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const wchan = read('wchan');
  const children = read('children').split(' ').filter(Boolean).map(Number);
  // (wchan names kernel_clone for a vfork parent; its stack, root only, would name __do_sys_vfork)
  if (state === 'D' && wchan === 'kernel_clone' && children.length > 0) {
    const stopped = children.filter((c) => isStopped(taskState(c, c)));
    const child = stopped[0] ?? children[children.length - 1]!;
    return `it waits in vfork() for its child ${child}${stopped.length ? ', which is stopped,' : ''} to exec or exit`;
  }
  return `state ${state}${wchan && wchan !== '0' ? `, sleeping in ${wchan}` : ''}`;
}

/** A thread in this state runs no more: gone, a zombie, or dead. */
export const hasExited = (state: string | null): boolean => state === null || state === 'Z' || state === 'X';

/** The threads of `pid` other than its main one that have not exited. */
function liveThreads(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).filter((tid) => tid !== pid && !hasExited(taskState(pid, tid)));
  } catch {
    return []; // the process is gone
  }
}

const PF_KTHREAD = 0x00200000;

function isKernelThread(pid: number): boolean {
  try {
    return (readStat(pid).flags & PF_KTHREAD) !== 0;
  } catch {
    return false;
  }
}

/** Whether `pid` has an address space: it is neither a kernel thread nor a zombie (nor gone). */
export function hasAddressSpace(pid: number): boolean {
  try {
    const st = readStat(pid);
    return !st.zombie && (st.flags & PF_KTHREAD) === 0;
  } catch {
    return false;
  }
}

export interface ProcStat {
  comm: string;
  state: string;
  ppid: number;
  /** task flags (PF_*) */
  flags: number;
  zombie: boolean;
  /** when it started, in clock ticks since boot: with the pid, which process this is (pids are reused) */
  startTime: number;
}

export function readStat(pid: number): ProcStat {
  const s = readProcText(pid, 'stat');
  // comm may contain spaces and parentheses: it runs from the first '(' to the last ')'.
  const close = s.lastIndexOf(')');
  const comm = s.slice(s.indexOf('(') + 1, close);
  const rest = s.slice(close + 2).split(' ');
  // after comm: state ppid pgrp session tty_nr tpgid flags
  return { comm, state: rest[0]!, ppid: Number(rest[1]), flags: Number(rest[6]), zombie: rest[0] === 'Z' || rest[0] === 'X', startTime: Number(rest[19]) };
}

export interface ProcessIdentity {
  pid: number;
  comm: string;
  cmdline: string[];
  uid: number;
  ppid: number;
  /** its pid in each pid namespace below pagesnap's that it is in, outermost first (a container's process as the
   * container sees it is the last); absent in pagesnap's only */
  nsPids?: number[];
}

export function readIdentity(pid: number): ProcessIdentity {
  const st = readStat(pid);
  // A zombie main thread with live threads is a live process (see memoryTask); without any, nothing is left.
  if (st.zombie && liveThreads(pid).length === 0) {
    throw new PagesnapError(`process ${pid} has exited: a zombie, kept only until its parent (${st.ppid}) reaps it, with no memory left`, {
      code: 'ESRCH', hint: 'give the pid of a live process',
    });
  }
  const cmdline = readProcText(pid, 'cmdline').split('\0').filter((x, i, a) => x !== '' || i < a.length - 1);
  // (pids from the namespace of the /proc read, pagesnap's, down to the process's own)
  const nsPids = statusNumbers(pid, 'NSpid').slice(1);
  return { pid, comm: st.comm, cmdline, uid: statusNumber(pid, 'Uid') ?? -1, ppid: st.ppid, ...(nsPids.length ? { nsPids } : {}) };
}

/** The processes on the system, as /proc lists them now (its other entries are not numbers). */
export function processIds(): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (Number.isInteger(pid) && pid > 0) out.push(pid);
  }
  return out;
}

/**
 * The processes on the system that map each of `objects` (given as maps prints them: `dev inode`), from every
 * process's maps; with `writable`, only those with a shared mapping of it they may write through. Processes whose
 * maps cannot be read (without root) are listed apart: they may map any of them.
 */
export function processesMapping(objects: readonly string[], writable = false): { mapping: Map<string, number[]>; unreadable: number[] } {
  const mapping = new Map(objects.map((o) => [o, [] as number[]]));
  const unreadable: number[] = [];
  for (const pid of processIds()) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/maps`, 'utf8');
      // (empty for a kernel thread, and for a process whose main thread has exited: seen through a live one)
      if (text === '') text = readFileSync(procPath(pid, 'maps'), 'utf8');
    } catch (e) {
      if (isErrno(e, 'EACCES', 'EPERM')) unreadable.push(pid);
      continue; // (gone meanwhile)
    }
    for (const o of objectsMapped(text, mapping, writable)) mapping.get(o)!.push(pid);
  }
  return { mapping, unreadable };
}

/**
 * Which of `wanted` (objectKeys) maps `text` has a mapping of (with `writable`, a shared one it may write through).
 * Each line's `dev inode` is cut out and looked up: searching the text for each object cost objects × processes
 * searches, seconds for a process of a thousand memfds on a host of thousands of processes.
 */
function objectsMapped(text: string, wanted: ReadonlyMap<string, unknown>, writable: boolean): Set<string> {
  const found = new Set<string>();
  for (let at = 0; at < text.length; ) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    // start-end mode offset dev inode [name]
    const mode = text.indexOf(' ', at) + 1;
    if (!writable || (text[mode + 1] === 'w' && text[mode + 3] === 's')) {
      const dev = text.indexOf(' ', text.indexOf(' ', mode) + 1) + 1;
      const ino = text.indexOf(' ', dev) + 1;
      let inoEnd = text.indexOf(' ', ino);
      if (inoEnd < 0 || inoEnd > end) inoEnd = end;
      const key = text.slice(dev, inoEnd);
      if (wanted.has(key)) found.add(key);
    }
    at = end + 1;
  }
  return found;
}

/**
 * When a process started, in ms of the realtime clock (its start in clock ticks since boot, 100 a second as /proc
 * gives them, after the boot as the realtime clock now places it: a clock set since shifts this).
 */
export function startedAtMs(pid: number): number {
  return Date.now() - uptimeTicks() * 10 + readStat(pid).startTime * 10;
}

/** How many files this process may have open (its soft limit; Node raises it to the hard one as it starts). */
export function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m?.[1] === undefined || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** Now, in clock ticks since boot: the unit of a process's start time (ProcStat.startTime). */
export function uptimeTicks(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100);
}
