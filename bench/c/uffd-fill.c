/*
 * Baseline for an eager restore: UFFDIO_COPY of a file's bytes into fresh registered anonymous memory, in runs
 * of RUN bytes, from one thread. The bytes are read first (not timed). Prints the best of REPS, in GB/s.
 *   uffd-fill FILE [RUN_KIB=64] [REPS=3]
 */
#define _GNU_SOURCE
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "common.h"

int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	size_t run = (argc > 2 ? strtoul(argv[2], NULL, 0) : 64) << 10;
	int reps = argc > 3 ? atoi(argv[3]) : 3;
	int fd = open(argv[1], O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) return 1;
	size_t len = (size_t)st.st_size / run * run;
	char *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (size_t o = 0; o < len;) {
		ssize_t n = pread(fd, src + o, len - o, (off_t)o);
		if (n <= 0) return 1;
		o += (size_t)n;
	}
	double best = 1e9;
	for (int r = 0; r < reps; r++) {
		char *dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		madvise(dst, len, MADV_NOHUGEPAGE);
		int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		struct uffdio_api api = { .api = UFFD_API };
		struct uffdio_register reg = { .range = { (uint64_t)dst, len }, .mode = UFFDIO_REGISTER_MODE_MISSING };
		if (u < 0 || ioctl(u, UFFDIO_API, &api) || ioctl(u, UFFDIO_REGISTER, &reg)) return 1;
		double t = now();
		for (size_t o = 0; o < len; o += run) {
			struct uffdio_copy c = { .dst = (uint64_t)dst + o, .src = (uint64_t)src + o, .len = run };
			if (ioctl(u, UFFDIO_COPY, &c)) return 1;
		}
		double dt = now() - t;
		if (dt < best) best = dt;
		close(u);
		munmap(dst, len);
	}
	printf("%.3f\n", len / best / 1e9);
	return 0;
}
