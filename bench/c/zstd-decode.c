/*
 * Baseline for an eager restore: zstd decompression of a snapshot's frames, one thread, into one reused buffer.
 * The frames (an index of u64 offset, u32 size, u32 decoded size) are read first (not timed). Prints the best
 * of REPS, in GB/s of decoded bytes. Uses the system's libzstd.so.1 (declared here: no headers needed).
 *   zstd-decode SNAPSHOT INDEX [REPS=3]
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct ZSTD_DCtx_s ZSTD_DCtx;
ZSTD_DCtx *ZSTD_createDCtx(void);
size_t ZSTD_decompressDCtx(ZSTD_DCtx *, void *, size_t, const void *, size_t);
unsigned ZSTD_isError(size_t);

struct entry { uint64_t off; uint32_t size, raw; };

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) exit(1);
	char *b = malloc((size_t)st.st_size);
	for (size_t o = 0; o < (size_t)st.st_size;) {
		ssize_t n = pread(fd, b + o, (size_t)st.st_size - o, (off_t)o);
		if (n <= 0) exit(1);
		o += (size_t)n;
	}
	*len = (size_t)st.st_size;
	return b;
}

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	int reps = argc > 3 ? atoi(argv[3]) : 3;
	size_t slen, ilen;
	char *snap = slurp(argv[1], &slen);
	struct entry *ix = (struct entry *)slurp(argv[2], &ilen);
	size_t n = ilen / sizeof *ix, max = 0, total = 0;
	for (size_t i = 0; i < n; i++) {
		if (ix[i].raw > max) max = ix[i].raw;
		total += ix[i].raw;
	}
	char *out = malloc(max);
	ZSTD_DCtx *d = ZSTD_createDCtx();
	double best = 1e9;
	for (int r = 0; r < reps; r++) {
		double t = now();
		for (size_t i = 0; i < n; i++)
			if (ZSTD_isError(ZSTD_decompressDCtx(d, out, max, snap + ix[i].off, ix[i].size))) return 1;
		double dt = now() - t;
		if (dt < best) best = dt;
	}
	printf("%.3f\n", total / best / 1e9);
	return 0;
}
