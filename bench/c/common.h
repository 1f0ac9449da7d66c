/* Shared by the C baselines: a monotonic clock, whole-file reads, and the snapshot frame index bench/restore.ts writes. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* one frame: its offset and size in the snapshot file, and its size decoded */
struct entry { uint64_t off; uint32_t size, raw; };

/* zstd from the system's libzstd.so.1, declared here: no headers needed */
typedef struct ZSTD_DCtx_s ZSTD_DCtx;
ZSTD_DCtx *ZSTD_createDCtx(void);
size_t ZSTD_decompressDCtx(ZSTD_DCtx *, void *, size_t, const void *, size_t);
unsigned ZSTD_isError(size_t);

static inline double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* the whole of `path` in memory; exits on failure */
static inline char *slurp(const char *path, size_t *len)
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
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}
