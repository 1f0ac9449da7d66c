/*
 * pagesnap's native helpers for the dump: classify and hash a batch of pages in a single call (per page, a call
 * from JavaScript costs more than hashing 4 KiB does, so the dump hands over 8 MiB at a time), and a
 * process_vm_readv that returns -errno, so it can run on another thread (errno is per thread) while the previous
 * batch is scanned; preads of many pieces of a file in one call (an object's pages written here and there); and a
 * close(2) for another thread, where closing takes long (a userfaultfd's release walks its registered memory).
 * Built on install (native/Makefile) and loaded with koffi by src/native/pagescan.ts.
 */
#define _GNU_SOURCE /* process_vm_readv */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

/* from libxxhash (xxhash.h is not needed to call it) */
uint64_t XXH3_64bits_withSeed(const void *input, size_t length, uint64_t seed);

/*
 * For each of `pages` pages of `page_size` bytes at `buf`: zero[i] = 1 if every byte is zero, else 0 and
 * hashes[i] = XXH3-64 of the page with `seed`. Returns how many pages are not zero.
 */
size_t pagesnap_scan_pages(const uint8_t *buf, size_t pages, size_t page_size, uint64_t seed, uint64_t *hashes, uint8_t *zero)
{
	size_t nonzero = 0;
	for (size_t i = 0; i < pages; i++) {
		const uint8_t *p = buf + i * page_size;
		int z = p[0] == 0 && memcmp(p, p + 1, page_size - 1) == 0;
		zero[i] = (uint8_t)z;
		hashes[i] = z ? 0 : XXH3_64bits_withSeed(p, page_size, seed);
		nonzero += !z;
	}
	return nonzero;
}

/* process_vm_readv(2) with flags 0; the bytes read, or -errno. */
long pagesnap_vm_readv(int pid, const struct iovec *local, unsigned long nlocal, const struct iovec *remote, unsigned long nremote)
{
	ssize_t n = process_vm_readv(pid, local, nlocal, remote, nremote, 0);
	return n < 0 ? -errno : (long)n;
}

/*
 * pread(2) each of `n` pieces of `fd` (offset and length pairs in `pieces`) into `buf`, one after another, until
 * one comes back short (the end of the file, or an error: the caller reads that piece again to learn which).
 * Returns the bytes read.
 */
size_t pagesnap_pread_pieces(int fd, uint8_t *buf, const uint64_t *pieces, size_t n)
{
	size_t done = 0;
	for (size_t i = 0; i < n; i++) {
		const uint64_t off = pieces[2 * i], len = pieces[2 * i + 1];
		uint64_t got = 0;
		while (got < len) {
			ssize_t r = pread(fd, buf + done + got, len - got, (off_t)(off + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return done + got;
			got += (uint64_t)r;
		}
		done += len;
	}
	return done;
}

/* close(2); 0, or -errno. */
long pagesnap_close(int fd)
{
	return close(fd) < 0 ? -errno : 0;
}
