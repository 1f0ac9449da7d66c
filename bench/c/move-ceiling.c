/*
 * The most UFFDIO_MOVE can gain over UFFDIO_COPY in a restore of a snapshot: one process decodes the snapshot's
 * frames in 2 MiB blocks and places them in registered transparent-huge-page memory, either
 *   copy: decoding into one reused buffer, then UFFDIO_COPY of the block, or
 *   move: decoding straight into a 2 MiB-aligned huge-page staging block, then UFFDIO_MOVE of the whole block.
 * Nothing crosses a process and nothing is copied into the staging area, so a restore through another process can
 * only do worse. Frames are placed back to back (zero pages and holes left out: both modes skip the same work); a
 * frame must not straddle a block, which frames of the default 64 pages never do.
 * The frames (an index of u64 offset, u32 size, u32 decoded size) are read first (not timed). One pass, as a fresh
 * process has fresh memory; prints its time in ms.
 *   move-ceiling SNAPSHOT INDEX copy|move
 */
#define _GNU_SOURCE
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "common.h"

/* declared here: older linux/userfaultfd.h headers lack it */
struct move_args { uint64_t dst, src, len, mode; int64_t move; };
#define MOVE_IOCTL _IOWR(UFFDIO, 0x05, struct move_args)
#define FEATURE_MOVE (1ULL << 16)
#define HUGE (2UL << 20)

/* `len` bytes of 2 MiB-aligned memory that faults in huge pages */
static char *huge_area(size_t len)
{
	char *raw = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) exit(1);
	char *a = (char *)(((uintptr_t)raw + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	madvise(a, len, MADV_HUGEPAGE);
	return a;
}

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int move = !strcmp(argv[3], "move");
	size_t slen, ilen, total = 0;
	char *snap = slurp(argv[1], &slen);
	struct entry *ix = (struct entry *)slurp(argv[2], &ilen);
	size_t n = ilen / sizeof *ix;
	for (size_t i = 0; i < n; i++) total += ix[i].raw;
	total &= ~(HUGE - 1);

	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API, .features = move ? FEATURE_MOVE : 0 };
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) return perror("userfaultfd"), 1;
	char *dst = huge_area(total);
	struct uffdio_register reg = { .range = { (uintptr_t)dst, total }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) return perror("UFFDIO_REGISTER"), 1;
	char *stage = huge_area(HUGE);
	char *buf = huge_area(HUGE);
	memset(buf, 1, HUGE);
	ZSTD_DCtx *d = ZSTD_createDCtx();

	double t = now();
	size_t f = 0;
	for (size_t o = 0; o < total; o += HUGE) {
		char *into = move ? stage : buf;
		for (size_t got = 0; got < HUGE; f++) {
			size_t r = ZSTD_decompressDCtx(d, into + got, HUGE - got, snap + ix[f].off, ix[f].size);
			if (ZSTD_isError(r)) return fprintf(stderr, "frame %zu: zstd error\n", f), 1;
			got += r;
		}
		if (move) {
			struct move_args m = { .dst = (uintptr_t)dst + o, .src = (uintptr_t)stage, .len = HUGE };
			if (ioctl(uffd, MOVE_IOCTL, &m)) return perror("UFFDIO_MOVE"), 1;
		} else {
			struct uffdio_copy c = { .dst = (uintptr_t)dst + o, .src = (uintptr_t)buf, .len = HUGE };
			if (ioctl(uffd, UFFDIO_COPY, &c)) return perror("UFFDIO_COPY"), 1;
		}
	}
	printf("%.1f\n", (now() - t) * 1e3);
	return 0;
}
