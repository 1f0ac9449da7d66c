/**
 * userfaultfd: creation (syscall or /dev/userfaultfd), the UFFDIO_* ioctls and uffd_msg decoding.
 * Layouts and numbers are the x86_64/arm64 values (identical on both), checked by tests against the reference.
 */
import { openSync, closeSync } from 'node:fs';
import { layout, pack, type StructValues, type Layout } from './struct.js';
import { ioctl, ioctlRaw, ioctlValue, userfaultfdSyscall, type Addr } from './syscalls.js';
import { NativeError, fromNodeError, isErrno } from './errors.js';
import { O_CLOEXEC, O_NONBLOCK } from './constants.js';

export const UFFD_API = 0xaa;
export const UFFD_USER_MODE_ONLY = 1;
export const USERFAULTFD_IOC_NEW = 0x0000aa00;

export const UFFDIO = {
  API: 0xc018aa3f,
  REGISTER: 0xc020aa00,
  UNREGISTER: 0x8010aa01,
  WAKE: 0x8010aa02,
  COPY: 0xc028aa03,
  ZEROPAGE: 0xc020aa04,
  MOVE: 0xc028aa05,
  WRITEPROTECT: 0xc018aa06,
  CONTINUE: 0xc020aa07,
  POISON: 0xc020aa08,
} as const;

export const UFFD_FEATURE = {
  PAGEFAULT_FLAG_WP: 1 << 0,
  EVENT_FORK: 1 << 1,
  EVENT_REMAP: 1 << 2,
  EVENT_REMOVE: 1 << 3,
  MISSING_HUGETLBFS: 1 << 4,
  MISSING_SHMEM: 1 << 5,
  EVENT_UNMAP: 1 << 6,
  SIGBUS: 1 << 7,
  THREAD_ID: 1 << 8,
  MINOR_HUGETLBFS: 1 << 9,
  MINOR_SHMEM: 1 << 10,
  EXACT_ADDRESS: 1 << 11,
  WP_HUGETLBFS_SHMEM: 1 << 12,
  WP_UNPOPULATED: 1 << 13,
  POISON: 1 << 14,
  WP_ASYNC: 1 << 15,
  MOVE: 1 << 16,
} as const;

export const UFFDIO_REGISTER_MODE = { MISSING: 1, WP: 2, MINOR: 4 } as const;
export const UFFDIO_COPY_MODE = { DONTWAKE: 1, WP: 2 } as const;
export const UFFDIO_ZEROPAGE_MODE = { DONTWAKE: 1 } as const;
export const UFFDIO_WRITEPROTECT_MODE = { WP: 1, DONTWAKE: 2 } as const;
export const UFFDIO_CONTINUE_MODE = { DONTWAKE: 1, WP: 2 } as const;
export const UFFDIO_POISON_MODE = { DONTWAKE: 1 } as const;
export const UFFDIO_MOVE_MODE = { DONTWAKE: 1, ALLOW_SRC_HOLES: 2 } as const;
/** Bits of the `ioctls` masks returned by UFFDIO_API / UFFDIO_REGISTER. */
export const UFFDIO_BIT = {
  REGISTER: 0, UNREGISTER: 1, WAKE: 2, COPY: 3, ZEROPAGE: 4, MOVE: 5, WRITEPROTECT: 6, CONTINUE: 7, POISON: 8,
  API: 0x3f,
} as const;

export const UFFD_EVENT = { PAGEFAULT: 0x12, FORK: 0x13, REMAP: 0x14, REMOVE: 0x15, UNMAP: 0x16 } as const;
export const UFFD_PAGEFAULT_FLAG = { WRITE: 1, WP: 2, MINOR: 4 } as const;

export const L = {
  api: layout('uffdio_api', 24, { api: [0, 'u64'], features: [8, 'u64'], ioctls: [16, 'u64'] }),
  register: layout('uffdio_register', 32, { start: [0, 'u64'], len: [8, 'u64'], mode: [16, 'u64'], ioctls: [24, 'u64'] }),
  range: layout('uffdio_range', 16, { start: [0, 'u64'], len: [8, 'u64'] }),
  copy: layout('uffdio_copy', 40, { dst: [0, 'u64'], src: [8, 'u64'], len: [16, 'u64'], mode: [24, 'u64'], copy: [32, 's64'] }),
  zeropage: layout('uffdio_zeropage', 32, { start: [0, 'u64'], len: [8, 'u64'], mode: [16, 'u64'], zeropage: [24, 's64'] }),
  move: layout('uffdio_move', 40, { dst: [0, 'u64'], src: [8, 'u64'], len: [16, 'u64'], mode: [24, 'u64'], move: [32, 's64'] }),
  writeprotect: layout('uffdio_writeprotect', 24, { start: [0, 'u64'], len: [8, 'u64'], mode: [16, 'u64'] }),
  continue: layout('uffdio_continue', 32, { start: [0, 'u64'], len: [8, 'u64'], mode: [16, 'u64'], mapped: [24, 's64'] }),
  poison: layout('uffdio_poison', 32, { start: [0, 'u64'], len: [8, 'u64'], mode: [16, 'u64'], updated: [24, 's64'] }),
  msg: layout('uffd_msg', 32, {
    event: [0, 'u8'], pf_flags: [8, 'u64'], pf_address: [16, 'u64'], pf_ptid: [24, 'u32'], fork_ufd: [8, 'u32'],
    remap_from: [8, 'u64'], remap_to: [16, 'u64'], remap_len: [24, 'u64'], remove_start: [8, 'u64'], remove_end: [16, 'u64'],
  }),
} as const;

/** A userfaultfd from the syscall (needs CAP_SYS_PTRACE unless user-mode-only) or from /dev/userfaultfd. */
export function createUffd(opts: { nonblock?: boolean; userModeOnly?: boolean; via?: 'syscall' | 'dev' } = {}): number {
  const flags = O_CLOEXEC | (opts.nonblock ? O_NONBLOCK : 0) | (opts.userModeOnly ? UFFD_USER_MODE_ONLY : 0);
  if (opts.via === 'dev') {
    let dev: number;
    try {
      dev = openSync('/dev/userfaultfd', 'r+');
    } catch (e) {
      throw fromNodeError(e, 'open', '/dev/userfaultfd');
    }
    try {
      return ioctlValue(dev, USERFAULTFD_IOC_NEW, flags, 'ioctl(USERFAULTFD_IOC_NEW)');
    } finally {
      closeSync(dev);
    }
  }
  return userfaultfdSyscall(flags);
}

export interface ApiResult {
  features: bigint;
  ioctls: bigint;
}

/** UFFDIO_API handshake; asks for `features` (0 to learn what the kernel offers on a throwaway fd). */
export function uffdApi(fd: number, features: bigint | number = 0): ApiResult {
  const b = pack(L.api, { api: UFFD_API, features });
  ioctl(fd, UFFDIO.API, b, 'ioctl(UFFDIO_API)');
  return { features: b.readBigUInt64LE(8), ioctls: b.readBigUInt64LE(16) };
}

/**
 * The features this kernel offers, learned from a throwaway user-mode-only userfaultfd (which anyone may make;
 * UFFDIO_API can be asked only once per fd).
 */
export function kernelUffdFeatures(): bigint {
  const fd = createUffd({ userModeOnly: true });
  try {
    return uffdApi(fd, 0).features;
  } finally {
    closeSync(fd);
  }
}

export function uffdRegister(fd: number, start: Addr, len: number, mode: number): bigint {
  const b = pack(L.register, { start, len, mode });
  ioctl(fd, UFFDIO.REGISTER, b, 'ioctl(UFFDIO_REGISTER)');
  return b.readBigUInt64LE(24);
}

export function uffdUnregister(fd: number, start: Addr, len: number): void {
  ioctl(fd, UFFDIO.UNREGISTER, pack(L.range, { start, len }), 'ioctl(UFFDIO_UNREGISTER)');
}

export function uffdWake(fd: number, start: Addr, len: number): void {
  ioctl(fd, UFFDIO.WAKE, pack(L.range, { start, len }), 'ioctl(UFFDIO_WAKE)');
}

export function uffdWriteprotect(fd: number, start: Addr, len: number, mode: number): void {
  ioctl(fd, UFFDIO.WRITEPROTECT, pack(L.writeprotect, { start, len, mode }), 'ioctl(UFFDIO_WRITEPROTECT)');
}

/**
 * Whether the process a userfaultfd serves has let its memory go (exited, or exec'd): an ioctl that needs the memory
 * answers ESRCH then. Asked as write protection removed from the top page of the x86-64 user address space: where
 * nothing is registered (nearly always: nothing is mapped there) the answer is ENOENT and nothing changes; were it
 * registered, the page would only read as written since.
 */
export function uffdMemoryGone(fd: number): boolean {
  try {
    uffdWriteprotect(fd, TOP_PAGE, 4096, 0);
  } catch (e) {
    return isErrno(e, 'ESRCH');
  }
  return false;
}

const TOP_PAGE = (1n << 47n) - 8192n;

/**
 * Outcome of a filling ioctl (COPY, ZEROPAGE, MOVE, CONTINUE, POISON). The kernel reports progress in the
 * struct's last field, which it leaves untouched on early validation errors and on ESRCH: we preset it to 0.
 * `errno` 0 means complete; EAGAIN with bytes > 0 means partial progress (retry the rest).
 */
export interface FillResult {
  bytes: number;
  errno: number;
  code: string;
}

function fill<F extends string>(name: string, fd: number, req: number, l: Layout<F>, v: StructValues<NoInfer<F>>, field: NoInfer<F>): FillResult {
  const b = pack(l, v);
  const rc = ioctlRaw(fd, req, b);
  const done = Number(b.readBigInt64LE(l.fields[field][0]));
  if (rc >= 0) return { bytes: done, errno: 0, code: 'OK' };
  const e = -rc;
  const err = new NativeError(name, e);
  return { bytes: Math.max(done, 0), errno: e, code: err.code };
}

export const uffdCopy = (fd: number, dst: Addr, src: Addr, len: number, mode = 0) =>
  fill('ioctl(UFFDIO_COPY)', fd, UFFDIO.COPY, L.copy, { dst, src, len, mode }, 'copy');
export const uffdZeropage = (fd: number, start: Addr, len: number, mode = 0) =>
  fill('ioctl(UFFDIO_ZEROPAGE)', fd, UFFDIO.ZEROPAGE, L.zeropage, { start, len, mode }, 'zeropage');
export const uffdMove = (fd: number, dst: Addr, src: Addr, len: number, mode = 0) =>
  fill('ioctl(UFFDIO_MOVE)', fd, UFFDIO.MOVE, L.move, { dst, src, len, mode }, 'move');
export const uffdContinue = (fd: number, start: Addr, len: number, mode = 0) =>
  fill('ioctl(UFFDIO_CONTINUE)', fd, UFFDIO.CONTINUE, L.continue, { start, len, mode }, 'mapped');
export const uffdPoison = (fd: number, start: Addr, len: number, mode = 0) =>
  fill('ioctl(UFFDIO_POISON)', fd, UFFDIO.POISON, L.poison, { start, len, mode }, 'updated');

/**
 * The filling ioctls with their argument structs allocated once, for hot loops (one instance per thread):
 * after each call `bytes` is the progress and `errno` 0 (complete) or the error, as FillResult has them.
 */
export class UffdFiller {
  private readonly copyArg = Buffer.alloc(40);
  private readonly rangeArg = Buffer.alloc(32);
  bytes = 0;
  errno = 0;

  constructor(private readonly fd: number) {}

  private finish(rc: number, b: Buffer, at: number): void {
    const done = Number(b.readBigInt64LE(at));
    this.bytes = Math.max(done, 0);
    this.errno = rc >= 0 ? 0 : -rc;
  }

  copy(dst: Addr, src: Addr, len: number, mode = 0): void {
    const b = this.copyArg;
    b.writeBigUInt64LE(dst, 0);
    b.writeBigUInt64LE(src, 8);
    b.writeBigUInt64LE(BigInt(len), 16);
    b.writeBigUInt64LE(BigInt(mode), 24);
    b.writeBigInt64LE(0n, 32);
    this.finish(ioctlRaw(this.fd, UFFDIO.COPY, b), b, 32);
  }

  /** ZEROPAGE or POISON: both take {start, len, mode} and report progress at offset 24. */
  private range(req: number, start: Addr, len: number, mode: number): void {
    const b = this.rangeArg;
    b.writeBigUInt64LE(start, 0);
    b.writeBigUInt64LE(BigInt(len), 8);
    b.writeBigUInt64LE(BigInt(mode), 16);
    b.writeBigInt64LE(0n, 24);
    this.finish(ioctlRaw(this.fd, req, b), b, 24);
  }

  zeropage(start: Addr, len: number, mode = 0): void {
    this.range(UFFDIO.ZEROPAGE, start, len, mode);
  }

  poison(start: Addr, len: number, mode = 0): void {
    this.range(UFFDIO.POISON, start, len, mode);
  }
}

export type UffdMsg =
  | { event: 'pagefault'; address: Addr; flags: number; write: boolean; wp: boolean; minor: boolean; ptid: number }
  | { event: 'fork'; ufd: number }
  | { event: 'remap'; from: Addr; to: Addr; len: number }
  | { event: 'remove' | 'unmap'; start: Addr; end: Addr }
  | { event: 'unknown'; code: number };

/** Decode one 32-byte uffd_msg at `off`. */
export function decodeUffdMsg(buf: Buffer, off = 0): UffdMsg {
  const code = buf.readUInt8(off);
  const u64 = (o: number) => buf.readBigUInt64LE(off + o);
  switch (code) {
    case UFFD_EVENT.PAGEFAULT: {
      const flags = Number(u64(8));
      return {
        event: 'pagefault', address: u64(16), flags, ptid: buf.readUInt32LE(off + 24),
        write: (flags & UFFD_PAGEFAULT_FLAG.WRITE) !== 0, wp: (flags & UFFD_PAGEFAULT_FLAG.WP) !== 0,
        minor: (flags & UFFD_PAGEFAULT_FLAG.MINOR) !== 0,
      };
    }
    case UFFD_EVENT.FORK: return { event: 'fork', ufd: buf.readUInt32LE(off + 8) };
    case UFFD_EVENT.REMAP: return { event: 'remap', from: u64(8), to: u64(16), len: Number(u64(24)) };
    case UFFD_EVENT.REMOVE: return { event: 'remove', start: u64(8), end: u64(16) };
    case UFFD_EVENT.UNMAP: return { event: 'unmap', start: u64(8), end: u64(16) };
    default: return { event: 'unknown', code };
  }
}
