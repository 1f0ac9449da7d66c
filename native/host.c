/*
 * pagesnap-host: the restore host. An otherwise empty process whose address space receives a snapshot's
 * regions. pagesnap drives it over SOCK_SEQPACKET channels (fd 3 is the control channel; fds 4.. serve
 * UFFDIO_MOVE for the fill workers), one request per message, one reply per request:
 *
 *   request  u32 op, u32 zero, then op-specific u64 words (and for OPEN/MEMFD a NUL-terminated name)
 *   reply    i64 result (>= 0, or -errno), then op-specific i64 words
 *
 * BATCH carries many simple calls (MAP, FTRUNCATE, CLOSE, MADVISE, MPROTECT, MSEAL) in one message, so mapping a
 * process of thousands of regions costs a few round trips instead of thousands: each call is a u64 header
 * (op | words << 32 | OPTIONAL << 63) and its words. They run in order until one that is not OPTIONAL fails; the
 * reply's result is how many ran, followed by each one's result.
 *
 * The host creates the userfaultfd (it binds to the creator's mm); pagesnap takes a copy with pidfd_getfd
 * and does everything else through it except UFFDIO_MOVE, which only a thread of this process may issue.
 * Until DETACH the host dies with pagesnap (PR_SET_PDEATHSIG) or when its control channel closes, so a
 * half-restored address space never outlives the streamer that would fill it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFDIO_MOVE
struct uffdio_move { uint64_t dst, src, len, mode; int64_t move; };
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

enum op { HELLO = 1, MAP, OPEN, MEMFD, FTRUNCATE, CLOSE, MADVISE, MPROTECT, MOVE, STAGE, DETACH, BATCH, MSEAL };

#define MAX_MSG (64 << 10)
#define MAX_CHANNELS 16

static int uffd = -1;
/* how the userfaultfd was made (0 syscall, 1 /dev/userfaultfd, 2 user-mode only), or -errno of the last attempt */
static int64_t uffd_how;

/* The userfaultfd, by the first way this process is allowed: how = 0 syscall, 1 /dev/userfaultfd, 2 user-mode only. */
static int make_uffd(int64_t *how)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) { *how = 0; return fd; }
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0) { *how = 1; return fd; }
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd >= 0) { *how = 2; return fd; }
	*how = -errno;
	return -1;
}

static int64_t result(long rc) { return rc < 0 ? -errno : rc; }

/* Move each (dst, src, len) in turn, carrying on past partial progress; stop an entry at its first error. */
static size_t do_move(const uint64_t *w, size_t words, int64_t *out)
{
	uint64_t mode = w[0], n = w[1];
	if (words < 2 + 3 * n) return 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t dst = w[2 + 3 * i], src = w[3 + 3 * i], len = w[4 + 3 * i], done = 0;
		int64_t err = 0;
		while (done < len) {
			struct uffdio_move m = { .dst = dst + done, .src = src + done, .len = len - done, .mode = mode };
			int rc = ioctl(uffd, UFFDIO_MOVE, &m);
			if (m.move > 0) done += (uint64_t)m.move;
			if (rc == 0) continue;
			if (errno == EAGAIN && m.move > 0) continue;
			err = errno;
			break;
		}
		out[2 * i] = (int64_t)done;
		out[2 * i + 1] = err;
	}
	return 2 * n;
}

/* A call that takes only words and returns one value; -ENOSYS for any other op. */
static int64_t simple(uint32_t op, const uint64_t *w, size_t words)
{
	switch (op) {
	case MAP: {
		if (words < 6) return -EINVAL;
		void *p = mmap((void *)(uintptr_t)w[0], w[1], (int)w[2], (int)w[3], (int)(int64_t)w[4], (off_t)w[5]);
		return p == MAP_FAILED ? -errno : (int64_t)(uintptr_t)p;
	}
	case FTRUNCATE: return words < 2 ? -EINVAL : result(ftruncate((int)w[0], (off_t)w[1]));
	case CLOSE: return words < 1 ? -EINVAL : result(close((int)w[0]));
	case MADVISE: return words < 3 ? -EINVAL : result(madvise((void *)(uintptr_t)w[0], w[1], (int)w[2]));
	case MPROTECT: return words < 3 ? -EINVAL : result(mprotect((void *)(uintptr_t)w[0], w[1], (int)w[2]));
	case MSEAL: return words < 2 ? -EINVAL : result((int)syscall(462 /* mseal, Linux 6.10 */, (uintptr_t)w[0], (size_t)w[1], 0UL));
	default: return -ENOSYS;
	}
}

#define OPTIONAL (1ULL << 63)

/* Run the calls of a BATCH (see the top of this file); returns how many ran, their results in out. */
static int64_t do_batch(const uint64_t *w, size_t words, int64_t *out, size_t *outs)
{
	size_t at = 0, n = 0;
	while (at < words) {
		uint64_t head = w[at++];
		uint32_t op = (uint32_t)head;
		size_t len = (size_t)((head & ~OPTIONAL) >> 32);
		if (len > words - at) return -EINVAL;
		int64_t r = simple(op, w + at, len);
		at += len;
		out[n++] = r;
		if (r < 0 && !(head & OPTIONAL)) break;
	}
	*outs = n;
	return (int64_t)n;
}

/* A 2 MiB-aligned, huge-page-backed, fork-excluded staging area for MOVE sources. */
static int64_t stage(uint64_t len)
{
	size_t huge = 2 << 20;
	char *p = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) return -errno;
	char *a = (char *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
	if (a > p) munmap(p, (size_t)(a - p));
	munmap(a + len, (size_t)(p + len + huge - (a + len)));
	madvise(a, len, MADV_HUGEPAGE);
	madvise(a, len, MADV_DONTFORK);
	return (int64_t)(uintptr_t)a;
}

static void serve(int ch, int control)
{
	static __thread uint64_t req[MAX_MSG / 8 + 1];
	static __thread int64_t rep[MAX_MSG / 8 + 1];
	for (;;) {
		ssize_t got = recv(ch, req, MAX_MSG, 0);
		if (got <= 0) {
			if (got < 0 && errno == EINTR) continue;
			/* pagesnap is gone or done: a control channel EOF ends the host */
			if (control) _exit(0);
			return;
		}
		((char *)req)[got] = 0;
		uint32_t op = (uint32_t)req[0];
		const uint64_t *w = req + 1;
		size_t words = ((size_t)got - 8) / 8, out = 0;
		int64_t r;
		if (!control && op != MOVE) { r = -EPERM; goto reply; }
		switch (op) {
		case HELLO:
			r = getpid();
			rep[1] = uffd;
			rep[2] = uffd_how;
			out = 2;
			break;
		case MAP: case FTRUNCATE: case CLOSE: case MADVISE: case MPROTECT: case MSEAL: r = simple(op, w, words); break;
		case BATCH: r = do_batch(w, words, rep + 1, &out); break;
		case OPEN: r = result(open((const char *)(w + 1), (int)w[0] | O_CLOEXEC)); break;
		case MEMFD: r = result(memfd_create((const char *)(w + 1), (unsigned)w[0] | MFD_CLOEXEC)); break;
		case MOVE: out = do_move(w, words, rep + 1); r = (int64_t)(out / 2); break;
		case STAGE: r = stage(w[0]); break;
		case DETACH:
			/*
			 * The restore is complete: live on without pagesnap, out of its session (a Ctrl-C there is not
			 * ours), holding the restored memory until killed.
			 */
			prctl(PR_SET_PDEATHSIG, 0);
			if (uffd >= 0) close(uffd);
			uffd = -1;
			setsid();
			rep[0] = 0;
			send(ch, rep, 8, MSG_NOSIGNAL);
			close(ch);
			for (;;) pause();
		default: r = -ENOSYS;
		}
	reply:
		rep[0] = r;
		if (send(ch, rep, (out + 1) * 8, MSG_NOSIGNAL) < 0 && control) _exit(0);
	}
}

static void *serve_thread(void *arg)
{
	serve((int)(intptr_t)arg, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	/* argv: pagesnap-host PARENT_PID CHANNELS [fixed] */
	if (argc < 3) { fprintf(stderr, "pagesnap-host is started by `pagesnap restore`\n"); return 2; }
	/* "fixed": the host's own mappings (libraries, stack) at the top of the address space, without ASLR, which a
	 * process's mmap seldom reaches (its base lies a random distance below): its largest reservations, right under
	 * that base, then miss the host. The personality applies from the next exec: re-exec before mapping anything. */
	int persona = personality(0xffffffff);
	if (argc > 3 && !strcmp(argv[3], "fixed") && persona != -1 && !(persona & ADDR_NO_RANDOMIZE) &&
	    personality(persona | ADDR_NO_RANDOMIZE) != -1)
		execv("/proc/self/exe", argv); /* if it fails, the host runs with ASLR: no worse than before */
	pid_t parent = (pid_t)atoi(argv[1]);
	int channels = atoi(argv[2]);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) return 1; /* pagesnap died before we could tie our life to it */
	if (channels < 1 || channels > MAX_CHANNELS) return 2;
	uffd = make_uffd(&uffd_how); /* a failure is reported by HELLO, so pagesnap can name it */
	for (int i = 1; i < channels; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, serve_thread, (void *)(intptr_t)(3 + i))) return 1;
		pthread_detach(t);
	}
	serve(3, 1);
	return 0;
}
