/**
 * The restore host process: spawning it, driving it over its control channel, and the userfaultfd it made (a
 * copy of which pagesnap takes with pidfd_getfd: every uffd ioctl but MOVE works from here on its mm).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import {
  nativeBuild, socketpair, closeFd, pidfdOpen, pidfdGetfd, pidfdSendSignal, PagesnapError, errnoName, atExit,
  poll, POLL, type Addr,
} from '../native/index.js';
import { parseMaps, type MapsEntry } from '../proc/index.js';
import { hostCall, hostBatch, hostValue, HostGoneError, type BatchCall, type HostOpName } from './host-protocol.js';

export type UffdKind = 'syscall' | '/dev/userfaultfd' | 'user-mode-only';
const KINDS: UffdKind[] = ['syscall', '/dev/userfaultfd', 'user-mode-only'];

export class RestoreHost {
  /** our copy of the host's userfaultfd */
  readonly uffd: number;
  readonly uffdKind: UffdKind;
  /** a pidfd of the host: readable once it has exited */
  readonly pidfd: number;
  private stderr = '';
  private detached = false;
  private readonly unregister: () => void;

  private constructor(
    private readonly child: ChildProcess,
    readonly pid: number,
    private readonly control: number,
    /** channel fds for fill workers (UFFDIO_MOVE), one each */
    readonly moveChannels: number[],
  ) {
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.pidfd = pidfdOpen(pid);
    this.unregister = atExit(() => this.kill());
    const hello = this.call('HELLO');
    const fd = Number(hello.words[0]!);
    const how = Number(hello.words[1]!);
    if (fd < 0) {
      this.kill();
      const code = errnoName(-how);
      throw new PagesnapError(`the restore host cannot create a userfaultfd: ${code}`, {
        code, hint: 'run as root, or allow it: sysctl vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd',
      });
    }
    this.uffdKind = KINDS[how]!;
    this.uffd = pidfdGetfd(this.pidfd, fd);
  }

  /**
   * Spawn a host with `moveChannels` extra channels for fill workers; `fixed`: its own mappings at the top of the
   * address space, without ASLR (see native/host.c).
   */
  static spawn(moveChannels = 0, fixed = false): RestoreHost {
    const bin = nativeBuild('pagesnap-host');
    if (!existsSync(bin)) {
      throw new PagesnapError(`${bin} is missing`, { code: 'ENOENT', hint: 'build the native parts: make -C native (needs cc and make)' });
    }
    const pairs = Array.from({ length: 1 + moveChannels }, () => socketpair());
    const child = spawn(bin, [String(process.pid), String(pairs.length), ...(fixed ? ['fixed'] : [])], {
      stdio: ['ignore', 'ignore', 'pipe', ...pairs.map((p) => p[1])],
    });
    for (const p of pairs) closeFd(p[1]);
    if (child.pid === undefined) {
      for (const p of pairs) closeFd(p[0]);
      throw new PagesnapError(`cannot start the restore host ${bin}`, { code: 'ENOEXEC' });
    }
    return new RestoreHost(child, child.pid, pairs[0]![0], pairs.slice(1).map((p) => p[0]));
  }

  private call(op: HostOpName, words: (number | bigint)[] = [], name?: string) {
    return this.checked(() => hostCall(this.control, op, words, name));
  }

  private checked<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof HostGoneError) throw this.gone(e.message);
      throw e;
    }
  }

  /** Why the host is gone, with what it printed. */
  gone(what: string): PagesnapError {
    const why = this.stderr.trim().split('\n').pop();
    return new PagesnapError(`${what}${why ? ` (${why})` : ''}`, { code: 'ESRCH' });
  }

  get alive(): boolean {
    return (poll([{ fd: this.pidfd, events: POLL.IN }], 0)[0]! & POLL.IN) === 0;
  }

  /**
   * Run `calls` in order, as many per message as fit (a round trip to the host costs tens of microseconds, and a
   * process has thousands of regions). Stops at the first failing call not marked optional. Returns the result
   * (>= 0, or -errno) of each call that ran: fewer than `calls` when one failed, and that one is the last.
   */
  batch(calls: readonly BatchCall[]): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < calls.length; ) {
      const from = i;
      const r = this.checked(() => hostBatch(this.control, calls, from));
      i = r.next;
      const ran = hostValue(r, 'a batch of calls');
      for (let k = 0; k < ran; k++) out.push(r.words[k]!);
      const last = ran > 0 ? from + ran - 1 : -1;
      if (ran < i - from || (last >= 0 && out[last]! < 0n && !calls[last]!.optional)) break;
    }
    return out;
  }

  /** mmap in the host; returns the address, or -errno (collisions are the caller's to explain). */
  mapRaw(addr: Addr, len: number, prot: number, flags: number, fd = -1, offset = 0n): bigint {
    return this.call('MAP', [addr, len, prot, flags, fd, offset]).result;
  }

  open(path: string, flags: number): number {
    return hostValue(this.call('OPEN', [flags], path), 'open', path);
  }

  memfd(name: string, flags: number): number {
    return hostValue(this.call('MEMFD', [flags], name), 'memfd_create', name);
  }

  ftruncate(fd: number, size: number): void {
    hostValue(this.call('FTRUNCATE', [fd, size]), 'ftruncate', `fd ${fd}`);
  }

  close(fd: number): void {
    hostValue(this.call('CLOSE', [fd]), 'close', `fd ${fd}`);
  }

  madvise(addr: Addr, len: number, advice: number): void {
    hostValue(this.call('MADVISE', [addr, len, advice]), 'madvise', `0x${addr.toString(16)}+${len.toString(16)} advice=${advice}`);
  }

  mprotect(addr: Addr, len: number, prot: number): void {
    hostValue(this.call('MPROTECT', [addr, len, prot]), 'mprotect', `0x${addr.toString(16)}`);
  }

  /** A 2 MiB-aligned, huge-page-advised, MADV_DONTFORK staging area of `len` bytes (MOVE sources). */
  stage(len: number): Addr {
    return BigInt(hostValue(this.call('STAGE', [len]), 'mmap (staging)'));
  }

  /** A copy of one of the host's fds in this process. */
  fd(hostFd: number): number {
    return pidfdGetfd(this.pidfd, hostFd);
  }

  maps(): MapsEntry[] {
    return parseMaps(readFileSync(`/proc/${this.pid}/maps`, 'utf8'));
  }

  /**
   * The restore is complete: the host outlives pagesnap from now on (--hold). It drops its userfaultfd, and we
   * release ours and the channels.
   */
  detach(): void {
    hostValue(this.call('DETACH'), 'detach');
    this.detached = true;
    this.release();
    this.child.unref();
  }

  /** End the host (unless detached) and release our fds. */
  kill(): void {
    if (this.released) return;
    if (!this.detached && this.alive) {
      try {
        pidfdSendSignal(this.pidfd, 9);
      } catch {
        /* already gone */
      }
    }
    this.release();
  }

  private released = false;
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.unregister();
    for (const fd of [this.control, ...this.moveChannels, this.uffd, this.pidfd]) {
      try {
        if (fd !== undefined) closeFd(fd);
      } catch {
        /* closing is best effort */
      }
    }
    this.child.stderr?.destroy();
  }

  /** Resolves when the host has exited (immediately if it has). */
  exited(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => this.child.once('exit', () => resolve()));
  }
}
