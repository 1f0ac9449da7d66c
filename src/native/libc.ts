/**
 * The libc entry points pagesnap calls, declared once. Everything that touches koffi lives in src/native.
 *
 * Kernel interfaces without a libc wrapper (and ioctl) go through syscall(2): glibc's syscall() is an assembly
 * stub, so declaring fixed prototypes for it is ABI-safe, unlike calling a C variadic function through one.
 */
import koffi from 'koffi';

export const libc = koffi.load('libc.so.6');

export const errno = (): number => koffi.errno();

export const fn = {
  mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  munmap: libc.func('int munmap(void *addr, size_t len)'),
  mprotect: libc.func('int mprotect(void *addr, size_t len, int prot)'),
  madvise: libc.func('int madvise(void *addr, size_t len, int advice)'),
  mincore: libc.func('int mincore(void *addr, size_t len, _Out_ uint8_t *vec)'),
  memfd_create: libc.func('int memfd_create(const char *name, unsigned int flags)'),
  lseek: libc.func('int64_t lseek(int fd, int64_t off, int whence)'),
  waitpid: libc.func('int waitpid(int pid, _Out_ int *status, int options)'),
  read: libc.func('long read(int fd, void *buf, size_t len)'),
  write: libc.func('long write(int fd, const void *buf, size_t len)'),
  close: libc.func('int close(int fd)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  fcntl: libc.func('int fcntl(int fd, int cmd, ...)'),
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  fallocate: libc.func('int fallocate(int fd, int mode, int64_t off, int64_t len)'),
  posix_fadvise: libc.func('int posix_fadvise(int fd, int64_t off, int64_t len, int advice)'),
  flock: libc.func('int flock(int fd, int op)'),
  socketpair: libc.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, unsigned int len)'),
  listen: libc.func('int listen(int fd, int backlog)'),
  chmod: libc.func('int chmod(const char *path, uint32_t mode)'),
  statx: libc.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, _Out_ uint8_t *buf)'),
  renameat2: libc.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)'),
  linkat: libc.func('int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)'),
  accept4: libc.func('int accept4(int fd, void *addr, void *len, int flags)'),
  send: libc.func('long send(int fd, const void *buf, size_t len, int flags)'),
  recv: libc.func('long recv(int fd, void *buf, size_t len, int flags)'),
  recvmsg: libc.func('long recvmsg(int fd, void *msg, int flags)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *val, _Inout_ unsigned int *len)'),
  // syscall(2) prototypes, one per argument shape.
  sys_ioctl: libc.func('long syscall(long nr, int fd, unsigned long req, void *arg)'),
  sys_ioctl_val: libc.func('long syscall(long nr, int fd, unsigned long req, unsigned long arg)'),
  sys_iii: libc.func('long syscall(long nr, long a, long b, long c)'),
  sys_swap: libc.func('long syscall(long nr, const char *path, int flags)'),
  sys_cachestat: libc.func('long syscall(long nr, int fd, void *range, _Out_ void *cstat, unsigned int flags)'),
  sys_pidfd_send_signal: libc.func('long syscall(long nr, int pidfd, int sig, void *info, unsigned int flags)'),
  sys_kcmp: libc.func('long syscall(long nr, int pid1, int pid2, int type, unsigned long idx1, unsigned long idx2)'),
  sys_ptrace: libc.func('long syscall(long nr, long req, int pid, void *addr, void *data)'),
  sys_process_madvise: libc.func('long syscall(long nr, int pidfd, void *iov, size_t vlen, int advice, unsigned int flags)'),
  sys_process_vm_rw: libc.func(
    'long syscall(long nr, int pid, void *liov, unsigned long liovcnt, void *riov, unsigned long riovcnt, unsigned long flags)',
  ),
};

/** Zero-copy access to memory we own (a mapping made with mmap). */
export function view(ptr: bigint, len: number): Buffer {
  return Buffer.from(koffi.view(ptr, len));
}

/** The address of a Node Buffer's bytes, for iovecs that point into it. */
export function addressOf(buf: Buffer | Uint8Array): bigint {
  return koffi.address(buf);
}
