/**
 * Typed wrappers for the system calls pagesnap needs that Node does not offer. Each throws NativeError
 * (errno name + call + subject) on failure. Addresses are bigint; lengths and fds are numbers.
 */
import { fn, errno, addressOf } from './libc.js';
import { NativeError } from './errors.js';
import { SYS, SEEK, PTRACE, AF_UNIX, SOCK, EFD, O_NONBLOCK } from './constants.js';
import { layout, pack, readField } from './struct.js';

export type Addr = bigint;

const MAP_FAILED = (1n << 64n) - 1n;

function check(call: string, rc: number | bigint, subject?: string): number {
  if (Number(rc) < 0) throw new NativeError(call, errno(), subject);
  return Number(rc);
}

const hex = (a: Addr) => `0x${a.toString(16)}`;
const range = (a: Addr, len: number) => `${hex(a)}+${len.toString(16)}`;

// ---- memory of our own process ---------------------------------------------------------------------------

export function mmap(len: number, prot: number, flags: number, fd = -1, offset = 0, addr: Addr = 0n): Addr {
  const p = fn.mmap(addr === 0n ? null : addr, len, prot, flags, fd, offset) as bigint;
  if (p === MAP_FAILED) throw new NativeError('mmap', errno(), `len=${len} flags=0x${flags.toString(16)}`);
  return p;
}

export function munmap(addr: Addr, len: number): void {
  check('munmap', fn.munmap(addr, len), range(addr, len));
}

export function mprotect(addr: Addr, len: number, prot: number): void {
  check('mprotect', fn.mprotect(addr, len, prot), range(addr, len));
}

export function madvise(addr: Addr, len: number, advice: number): void {
  check('madvise', fn.madvise(addr, len, advice), `${range(addr, len)} advice=${advice}`);
}

const AT_FDCWD = -100;
const RENAME_NOREPLACE = 1;

/** rename(2) that fails with EEXIST instead of replacing `to` (renameat2 RENAME_NOREPLACE): atomic, one call. */
export function renameNoReplace(from: string, to: string): void {
  check('renameat2', fn.renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE), to);
}

/**
 * open(2) flag for a file with no name in a directory (O_TMPFILE; O_DIRECTORY is part of it): it vanishes with its
 * last descriptor unless linkFd gives it a name first. Same value on every architecture pagesnap runs on.
 */
export const O_TMPFILE = 0o20200000;
const AT_SYMLINK_FOLLOW = 0x400;

/** Give the open file `fd` the name `to` (linkat of /proc/self/fd/FD); EEXIST if `to` exists: never replaces. */
export function linkFd(fd: number, to: string): void {
  check('linkat', fn.linkat(AT_FDCWD, `/proc/self/fd/${fd}`, AT_FDCWD, to, AT_SYMLINK_FOLLOW), to);
}

/** AT_STATX_DONT_SYNC: what the kernel has cached; a network or FUSE file system is not asked. */
export const AT_STATX_DONT_SYNC = 0x4000;
const STATX_BASIC_STATS = 0x7ff;
const STATX_MNT_ID = 0x1000;
export const STATX = layout('statx', 256, {
  mask: [0, 'u32'], ino: [32, 'u64'], size: [40, 'u64'], mtime_sec: [112, 's64'], mtime_nsec: [120, 'u32'],
  dev_major: [136, 'u32'], dev_minor: [140, 'u32'], mnt_id: [144, 'u64'],
});

export interface Statx {
  devMajor: number;
  devMinor: number;
  ino: number;
  size: number;
  mtimeNs: bigint;
  /** the mount the path was reached through (Linux 5.8+) */
  mntId?: number;
}

/** statx(2) of `path` (following links), with the mount id stat(2) does not give. */
export function statx(path: string, flags = 0): Statx {
  const b = Buffer.alloc(STATX.size);
  check('statx', fn.statx(AT_FDCWD, path, flags, STATX_BASIC_STATS | STATX_MNT_ID, b), path);
  const f = (name: keyof typeof STATX.fields) => readField(b, STATX.fields[name]);
  return {
    devMajor: Number(f('dev_major')), devMinor: Number(f('dev_minor')), ino: Number(f('ino')), size: Number(f('size')),
    mtimeNs: f('mtime_sec') * 1_000_000_000n + f('mtime_nsec'),
    mntId: Number(f('mask')) & STATX_MNT_ID ? Number(f('mnt_id')) : undefined,
  };
}

/** POSIX_FADV_WILLNEED: the kernel starts reading [off, off+len) of the file into the page cache and returns. */
export function willNeed(fd: number, off: number, len: number): void {
  const e = fn.posix_fadvise(fd, off, len, 3) as number; // returns the error number itself, not -1 + errno
  if (e !== 0) throw new NativeError('posix_fadvise', e, `fd ${fd} [${off}, ${off + len})`);
}

/** Residency of our own pages (mincore works only on the caller's address space). One byte per page, bit 0. */
export function mincore(addr: Addr, len: number, pageSize = 4096): Uint8Array {
  const vec = Buffer.alloc(Math.ceil(len / pageSize));
  check('mincore', fn.mincore(addr, len, vec), range(addr, len));
  return vec;
}

// ---- files --------------------------------------------------------------------------------------------------

export function memfdCreate(name: string, flags = 0): number {
  return check('memfd_create', fn.memfd_create(name, flags), name);
}

/** lseek(SEEK_DATA/SEEK_HOLE): null when there is no data (ENXIO) past `off`. */
export function seek(fd: number, off: number, whence: number): number | null {
  const rc = Number(fn.lseek(fd, off, whence));
  if (rc < 0) {
    const e = errno();
    if (e === 6 /* ENXIO */) return null;
    throw new NativeError('lseek', e, `fd ${fd} off=${off} whence=${whence}`);
  }
  return rc;
}
export const seekData = (fd: number, off: number) => seek(fd, off, SEEK.DATA);
export const seekHole = (fd: number, off: number) => seek(fd, off, SEEK.HOLE);

export const CACHESTAT_RANGE = layout('cachestat_range', 16, { off: [0, 'u64'], len: [8, 'u64'] });
export const CACHESTAT = layout('cachestat', 40, {
  nr_cache: [0, 'u64'], nr_dirty: [8, 'u64'], nr_writeback: [16, 'u64'], nr_evicted: [24, 'u64'],
  nr_recently_evicted: [32, 'u64'],
});

export interface CacheStat {
  cache: number;
  dirty: number;
  writeback: number;
  evicted: number;
  recentlyEvicted: number;
}

/** cachestat(2) over [off, off+len) of a file (len 0 = to EOF). For shmem `evicted` means swapped out. */
export function cachestat(fd: number, off: number, len: number): CacheStat {
  const r = pack(CACHESTAT_RANGE, { off, len });
  const out = Buffer.alloc(CACHESTAT.size);
  check('cachestat', fn.sys_cachestat(SYS.cachestat, fd, r, out, 0), `fd ${fd} ${off}+${len}`);
  const u = (i: number) => Number(out.readBigUInt64LE(i * 8));
  return { cache: u(0), dirty: u(1), writeback: u(2), evicted: u(3), recentlyEvicted: u(4) };
}

// ---- processes ----------------------------------------------------------------------------------------------

/**
 * kcmp(2): how two processes' kernel objects of `type` (KCMP) compare: 0 the same, 1 and 2 an order (of pointers the
 * kernel scrambles, but the same for every call until reboot), 3 different without an order.
 */
export function kcmp(pid1: number, pid2: number, type: number): number {
  return check('kcmp', fn.sys_kcmp(SYS.kcmp, pid1, pid2, type, 0, 0), `pids ${pid1} and ${pid2}`);
}

export function pidfdOpen(pid: number, flags = 0): number {
  return check('pidfd_open', fn.sys_iii(SYS.pidfd_open, pid, flags, 0), `pid ${pid}`);
}

export function pidfdGetfd(pidfd: number, targetFd: number): number {
  return check('pidfd_getfd', fn.sys_iii(SYS.pidfd_getfd, pidfd, targetFd, 0), `fd ${targetFd}`);
}

export function pidfdSendSignal(pidfd: number, signal: number): void {
  check('pidfd_send_signal', fn.sys_pidfd_send_signal(SYS.pidfd_send_signal, pidfd, signal, null, 0), `signal ${signal}`);
}

export function ptraceSeize(pid: number, options = 0): void {
  check('ptrace(SEIZE)', fn.sys_ptrace(SYS.ptrace, PTRACE.SEIZE, pid, null, BigInt(options) as never), `pid ${pid}`);
}

export function ptraceInterrupt(pid: number): void {
  check('ptrace(INTERRUPT)', fn.sys_ptrace(SYS.ptrace, PTRACE.INTERRUPT, pid, null, null), `pid ${pid}`);
}

/** Resume a thread in a ptrace stop; `signal`: the signal it was stopped on, delivered as it goes on (0: none). */
export function ptraceCont(tid: number, signal = 0): void {
  check('ptrace(CONT)', fn.sys_ptrace(SYS.ptrace, PTRACE.CONT, tid, null, BigInt(signal) as never), `thread ${tid}`);
}

export function ptraceDetach(pid: number, signal = 0): void {
  check('ptrace(DETACH)', fn.sys_ptrace(SYS.ptrace, PTRACE.DETACH, pid, null, BigInt(signal) as never), `pid ${pid}`);
}

/**
 * x86-64's struct user_regs_struct (27 words), as PTRACE_GETREGS gives it; `REG` names the words a system call uses,
 * and the code segment, which says whether the thread runs 64-bit code (USER_CS) or 32-bit code (USER32_CS).
 * (Other architectures have PTRACE_GETREGSET only, and other layouts: callers check process.arch.)
 */
const USER_REGS_SIZE = 27 * 8;
export const REG = { rax: 10, rdx: 12, rsi: 13, rdi: 14, origRax: 15, rip: 16, cs: 17 } as const;
export const USER_CS = 0x33n;

export function ptraceGetRegs(tid: number): Buffer {
  const regs = Buffer.alloc(USER_REGS_SIZE);
  check('ptrace(GETREGS)', fn.sys_ptrace(SYS.ptrace, PTRACE.GETREGS, tid, null, regs as never), `thread ${tid}`);
  return regs;
}

export function ptraceSetRegs(tid: number, regs: Buffer): void {
  check('ptrace(SETREGS)', fn.sys_ptrace(SYS.ptrace, PTRACE.SETREGS, tid, null, regs as never), `thread ${tid}`);
}

export function ptraceSingleStep(tid: number): void {
  check('ptrace(SINGLESTEP)', fn.sys_ptrace(SYS.ptrace, PTRACE.SINGLESTEP, tid, null, null), `thread ${tid}`);
}

/** The signals a stopped tracee blocks (a 64-bit sigset_t). */
export function ptraceGetSigmask(tid: number): bigint {
  const mask = Buffer.alloc(8);
  check('ptrace(GETSIGMASK)', fn.sys_ptrace(SYS.ptrace, PTRACE.GETSIGMASK, tid, 8n as never, mask as never), `thread ${tid}`);
  return mask.readBigUInt64LE(0);
}

export function ptraceSetSigmask(tid: number, blocked: bigint): void {
  const mask = Buffer.alloc(8);
  mask.writeBigUInt64LE(blocked, 0);
  check('ptrace(SETSIGMASK)', fn.sys_ptrace(SYS.ptrace, PTRACE.SETSIGMASK, tid, 8n as never, mask as never), `thread ${tid}`);
}

export interface WaitStatus {
  pid: number;
  raw: number;
  exited: boolean;
  exitCode?: number;
  signaled: boolean;
  termSignal?: number;
  stopped: boolean;
  stopSignal?: number;
  /** PTRACE_EVENT_* from a ptrace stop (status >> 16), e.g. PTRACE_EVENT_STOP = 128. */
  ptraceEvent: number;
}

/** waitpid(2); returns null with WNOHANG when nothing changed. */
export function waitpid(pid: number, options = 0): WaitStatus | null {
  const st = [0];
  const rc = check('waitpid', fn.waitpid(pid, st, options), `pid ${pid}`);
  if (rc === 0) return null;
  const s = st[0]!;
  const exited = (s & 0x7f) === 0;
  const stopped = (s & 0xff) === 0x7f;
  const signaled = !exited && !stopped;
  return {
    pid: rc, raw: s, exited, signaled, stopped,
    exitCode: exited ? (s >> 8) & 0xff : undefined,
    termSignal: signaled ? s & 0x7f : undefined,
    stopSignal: stopped ? (s >> 8) & 0xff : undefined,
    ptraceEvent: (s >> 16) & 0xff,
  };
}

export interface RemoteRange {
  addr: Addr;
  len: number;
}

/** struct iovec[] for the kernel. */
function packIovecs(ranges: readonly { base: Addr; len: number }[]): Buffer {
  const iov = Buffer.alloc(ranges.length * 16);
  ranges.forEach((r, i) => {
    iov.writeBigUInt64LE(r.base, i * 16);
    iov.writeBigUInt64LE(BigInt(r.len), i * 16 + 8);
  });
  return iov;
}

/** The kernel processes at most IOV_MAX (1024) iovecs per call on either side. */
export const IOV_MAX = 1024;

/** The local and remote iovec arrays of a process_vm_readv/writev call. */
export function processVmIovecs(call: string, local: readonly Buffer[], remote: readonly RemoteRange[]): { liov: Buffer; riov: Buffer } {
  if (local.length > IOV_MAX || remote.length > IOV_MAX) throw new RangeError(`${call}: more than ${IOV_MAX} iovecs`);
  return {
    liov: packIovecs(local.map((b) => ({ base: addressOf(b), len: b.length }))),
    riov: packIovecs(remote.map((r) => ({ base: r.addr, len: r.len }))),
  };
}

function processVm(call: 'process_vm_readv' | 'process_vm_writev', pid: number, local: readonly Buffer[], remote: readonly RemoteRange[]): number {
  const { liov, riov } = processVmIovecs(call, local, remote);
  const rc = fn.sys_process_vm_rw(SYS[call], pid, liov, local.length, riov, remote.length, 0);
  const first = remote[0];
  return check(call, rc, `pid ${pid}${first ? ` at ${hex(first.addr)}` : ''}`);
}

/**
 * process_vm_readv(2): read `remote` ranges of another process into `local` buffers, in order. Returns the bytes
 * read, which stops short at the first unreadable remote page (partial reads are not errors here).
 */
export const processVmReadv = (pid: number, local: readonly Buffer[], remote: readonly RemoteRange[]) => processVm('process_vm_readv', pid, local, remote);

/** process_vm_writev(2): write `local` buffers into `remote` ranges of another process. Returns the bytes written. */
export const processVmWritev = (pid: number, local: readonly Buffer[], remote: readonly RemoteRange[]) => processVm('process_vm_writev', pid, local, remote);

/** process_madvise(2) on another process's ranges (remote use allows only COLD, PAGEOUT, WILLNEED, COLLAPSE). */
export function processMadvise(pidfd: number, ranges: readonly RemoteRange[], advice: number): number {
  const iov = packIovecs(ranges.map((r) => ({ base: r.addr, len: r.len })));
  return check('process_madvise', fn.sys_process_madvise(SYS.process_madvise, pidfd, iov, ranges.length, advice, 0), `advice=${advice}`);
}

// ---- file descriptors -----------------------------------------------------------------------------------------

export function closeFd(fd: number): void {
  check('close', fn.close(fd), `fd ${fd}`);
}

/** read(2) into `buf`; returns bytes read, or -errno (hot loops branch on EAGAIN without an exception). */
export function readRaw(fd: number, buf: Buffer, len = buf.length): number {
  const rc = Number(fn.read(fd, buf, len));
  return rc < 0 ? -errno() : rc;
}

export function writeRaw(fd: number, buf: Buffer, len = buf.length): number {
  const rc = Number(fn.write(fd, buf, len));
  return rc < 0 ? -errno() : rc;
}

export function fallocate(fd: number, mode: number, off: number, len: number): void {
  check('fallocate', fn.fallocate(fd, mode, off, len), `fd ${fd} ${off}+${len}`);
}

/** flock(2): LOCK_EX (2) waits for an exclusive lock, LOCK_UN (8) releases it. */
export function flock(fd: number, op: number): void {
  check('flock', fn.flock(fd, op), `fd ${fd}`);
}

export function eventfd(initval = 0, flags = EFD.CLOEXEC): number {
  return check('eventfd', fn.eventfd(initval, flags));
}

const ONE = Buffer.from(new BigUint64Array([1n]).buffer);
/** Add 1 to an eventfd's counter: wakes whoever polls it. */
export function eventfdSignal(fd: number): void {
  if (writeRaw(fd, ONE, 8) < 0) throw new NativeError('write', errno(), `eventfd ${fd}`);
}

/**
 * Make `fd` non-blocking, or blocking again (fcntl F_SETFL). The flag lives in the open file description, which a
 * descriptor received over a socket, or inherited, shares with the sender.
 */
export function setNonblocking(fd: number, on = true): void {
  const F_GETFL = 3;
  const F_SETFL = 4;
  const flags = check('fcntl', fn.fcntl(fd, F_GETFL), `F_GETFL fd ${fd}`);
  const want = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (want !== flags) check('fcntl', fn.fcntl(fd, F_SETFL, 'int', want), `F_SETFL fd ${fd}`);
}

/**
 * poll(2) on `fds` (events per fd); returns each fd's revents. A timeout of -1 waits for ever: call it from a
 * worker thread, never from the main thread.
 *
 * An interrupted poll goes on for what is left of its timeout, not for all of it again: a signal that comes more
 * often than the timeout (a profiler's SIGPROF, every millisecond) would otherwise keep it from ever returning, and
 * a thread that looks for work between polls (the fork-events thread) never looked again.
 */
export function poll(fds: readonly { fd: number; events: number }[], timeoutMs: number, scratch?: Buffer): number[] {
  const b = scratch && scratch.length >= fds.length * 8 ? scratch : Buffer.alloc(fds.length * 8);
  fds.forEach((f, i) => {
    b.writeInt32LE(f.fd, i * 8);
    b.writeInt16LE(f.events, i * 8 + 4);
    b.writeInt16LE(0, i * 8 + 6);
  });
  const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : 0;
  for (let wait = timeoutMs; ; wait = timeoutMs > 0 ? Math.max(0, Math.ceil(deadline - performance.now())) : timeoutMs) {
    const rc = fn.poll(b, fds.length, wait) as number;
    if (rc >= 0) break;
    const e = errno();
    if (e !== 4 /* EINTR */) throw new NativeError('poll', e);
  }
  return fds.map((_, i) => b.readInt16LE(i * 8 + 6));
}

/** A connected pair of unix sockets (SOCK_SEQPACKET keeps message boundaries). */
export function socketpair(type: number = SOCK.SEQPACKET): [number, number] {
  const sv = [0, 0];
  check('socketpair', fn.socketpair(AF_UNIX, type | SOCK.CLOEXEC, 0, sv));
  return [sv[0]!, sv[1]!];
}

// ---- ioctl --------------------------------------------------------------------------------------------------

/** ioctl(fd, req, arg) where arg points at `buf`; the kernel may write results back into it. */
export function ioctl(fd: number, req: number, buf: Buffer | null, name = `ioctl 0x${req.toString(16)}`): number {
  return check(name, fn.sys_ioctl(SYS.ioctl, fd, req, buf), `fd ${fd}`);
}

/** ioctl whose argument is a plain integer (e.g. USERFAULTFD_IOC_NEW's flags). */
export function ioctlValue(fd: number, req: number, arg: number, name = `ioctl 0x${req.toString(16)}`): number {
  return check(name, fn.sys_ioctl_val(SYS.ioctl, fd, req, arg), `fd ${fd}`);
}

/** ioctl returning -errno instead of throwing: the uffd fill loops branch on EAGAIN/EEXIST in the hot path. */
export function ioctlRaw(fd: number, req: number, buf: Buffer): number {
  const rc = Number(fn.sys_ioctl(SYS.ioctl, fd, req, buf));
  return rc < 0 ? -errno() : rc;
}

export function userfaultfdSyscall(flags: number): number {
  return check('userfaultfd', fn.sys_iii(SYS.userfaultfd, flags, 0, 0));
}

export function swapon(path: string, flags = 0): void {
  check('swapon', fn.sys_swap(SYS.swapon, path, flags), path);
}

export function swapoff(path: string): void {
  check('swapoff', fn.sys_swap(SYS.swapoff, path, 0), path);
}

