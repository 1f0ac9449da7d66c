/*
 * Touch N GiB of fresh memory once and exit: on a VM whose free memory goes back to the hypervisor, this makes the
 * host back it again, so the next allocations (huge pages above all) do not pay for that.
 *   touch N
 */
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	size_t n = (size_t)(argc > 1 ? atol(argv[1]) : 1) << 30;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 1;
	for (size_t o = 0; o < n; o += 4096) p[o] = 1;
	return 0;
}
