/*
 * Baseline for an eager restore: zstd decompression of a snapshot's frames, one thread, into one reused buffer.
 * The frames (an index of u64 offset, u32 size, u32 decoded size) are read first (not timed). Prints the best
 * of REPS, in GB/s of decoded bytes. Uses the system's libzstd.so.1.
 *   zstd-decode SNAPSHOT INDEX [REPS=3]
 */
#include <stdio.h>

#include "common.h"

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
