/** Linux ABI constants (x86_64 and arm64 share all of these). Values from the kernel uapi headers. */

export const PAGE_SIZE = 4096;

export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;

export const MAP = {
  SHARED: 0x01,
  PRIVATE: 0x02,
  /** a mapping type of its own (Linux 6.11): anonymous memory the kernel may drop under pressure */
  DROPPABLE: 0x08,
  FIXED: 0x10,
  ANONYMOUS: 0x20,
  GROWSDOWN: 0x100,
  NORESERVE: 0x4000,
  POPULATE: 0x8000,
  HUGETLB: 0x40000,
  FIXED_NOREPLACE: 0x100000,
} as const;

export const MADV = {
  NORMAL: 0,
  RANDOM: 1,
  SEQUENTIAL: 2,
  WILLNEED: 3,
  DONTNEED: 4,
  FREE: 8,
  REMOVE: 9,
  DONTFORK: 10,
  DOFORK: 11,
  MERGEABLE: 12,
  UNMERGEABLE: 13,
  HUGEPAGE: 14,
  NOHUGEPAGE: 15,
  WIPEONFORK: 18,
  DONTDUMP: 16,
  DODUMP: 17,
  COLD: 20,
  PAGEOUT: 21,
  POPULATE_READ: 22,
  POPULATE_WRITE: 23,
  COLLAPSE: 25,
  GUARD_INSTALL: 102,
  GUARD_REMOVE: 103,
} as const;

export const MFD = { CLOEXEC: 1, ALLOW_SEALING: 2, HUGETLB: 4 } as const;

export const SEEK = { SET: 0, CUR: 1, END: 2, DATA: 3, HOLE: 4 } as const;

export const O_CLOEXEC = 0o2000000;
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;

export const PTRACE = {
  CONT: 7,
  SINGLESTEP: 9,
  GETREGS: 12,
  SETREGS: 13,
  DETACH: 17,
  SEIZE: 0x4206,
  INTERRUPT: 0x4207,
  LISTEN: 0x4208,
  GETSIGMASK: 0x420a,
  SETSIGMASK: 0x420b,
  O_TRACESYSGOOD: 1,
  O_EXITKILL: 0x100000,
  /** waitpid's status >> 16 for a stop PTRACE_INTERRUPT (or a group stop) made in a seized thread */
  EVENT_STOP: 128,
} as const;

export const AF_UNIX = 1;
export const SOCK = { STREAM: 1, SEQPACKET: 5, NONBLOCK: 0o4000, CLOEXEC: 0o2000000 } as const;
export const SOL_SOCKET = 1;
export const SO_PEERCRED = 17;
export const SCM_RIGHTS = 1;
export const MSG = { NOSIGNAL: 0x4000, DONTWAIT: 0x40, CTRUNC: 0x8, CMSG_CLOEXEC: 0x40000000 } as const;

export const POLL = { IN: 0x1, OUT: 0x4, ERR: 0x8, HUP: 0x10, NVAL: 0x20 } as const;
export const EFD = { CLOEXEC: 0o2000000, NONBLOCK: 0o4000 } as const;
export const FALLOC_FL_KEEP_SIZE = 1;

export const PR_SET_PDEATHSIG = 1;

/** kcmp(2) types */
export const KCMP = { VM: 1 } as const;

/** waitpid options */
export const WAIT = { NOHANG: 1, UNTRACED: 2, WALL: 0x40000000 } as const;

type Sysno = Record<
  | 'ioctl' | 'ptrace' | 'process_vm_readv' | 'process_vm_writev' | 'memfd_create' | 'userfaultfd' | 'pidfd_send_signal' | 'pidfd_open'
  | 'pidfd_getfd' | 'process_madvise' | 'cachestat' | 'swapon' | 'swapoff' | 'kcmp',
  number
>;

// Syscalls added since 5.x share one number on every architecture (424+); the older ones differ.
const SYSNO: Record<string, Sysno> = {
  x64: {
    ioctl: 16, ptrace: 101, process_vm_readv: 310, process_vm_writev: 311, memfd_create: 319, userfaultfd: 323, swapon: 167, swapoff: 168, kcmp: 312,
    pidfd_send_signal: 424, pidfd_open: 434, pidfd_getfd: 438, process_madvise: 440, cachestat: 451,
  },
  arm64: {
    ioctl: 29, ptrace: 117, process_vm_readv: 270, process_vm_writev: 271, memfd_create: 279, userfaultfd: 282, swapon: 224, swapoff: 225, kcmp: 272,
    pidfd_send_signal: 424, pidfd_open: 434, pidfd_getfd: 438, process_madvise: 440, cachestat: 451,
  },
};

export function sysno(arch: string = process.arch): Sysno {
  const table = SYSNO[arch];
  if (!table) throw new Error(`pagesnap supports x86_64 and arm64 Linux; this is ${arch}`);
  return table;
}
export const SYS = sysno();
