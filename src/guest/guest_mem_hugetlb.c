/* Guest memory from the host's pool of 2 MiB hugetlbfs pages
 * (machine-config huge_pages "2M"). Kept apart from guest_mem.c: only the
 * mapping differs; the layout and every accessor are the same. */
#include "guest/guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26) /* log2(2 MiB) << MAP_HUGE_SHIFT */
#endif

#define HUGE_2M (2ULL << 20)

int gm_create_hugetlb(struct guest_mem *gm, uint64_t size, uint64_t gap_start, ember_err *e)
{
	if (size == 0 || size % HUGE_2M)
		return err_set(e, "huge_pages 2M: guest memory (%llu KiB) is not a whole number "
			       "of 2 MiB pages", (unsigned long long)(size >> 10));
	/* No MAP_NORESERVE, unlike Firecracker: the kernel then reserves all
	 * the pages from the pool here, and a pool too small fails this call
	 * (ENOMEM) instead of a SIGBUS at the guest's first touch of a page
	 * the pool no longer has. The pages themselves are still taken (and
	 * zeroed) on first touch. */
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
	if (p == MAP_FAILED) {
		int err = errno;
		if (err == ENOMEM)
			return err_set(e, "huge_pages 2M: the host's pool of 2 MiB huge pages "
				       "cannot hold %llu MiB of guest memory (%llu pages): reserve "
				       "more in /proc/sys/vm/nr_hugepages (free: HugePages_Free in "
				       "/proc/meminfo)", (unsigned long long)(size >> 20),
				       (unsigned long long)(size / HUGE_2M));
		return err_set(e, "huge_pages 2M: cannot map %llu MiB of guest memory from "
			       "hugetlbfs: %s", (unsigned long long)(size >> 20), strerror(err));
	}
	gm_init_from(gm, p, size, gap_start);
	gm->mapping = p;
	gm->mapping_size = (size_t)size;
	gm->discard_unit = HUGE_2M;
	return 0;
}
