#include "vmm/guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define GIB_4 (1ULL << 32)

void gm_init_from(struct guest_mem *gm, uint8_t *host, uint64_t size, uint64_t gap_start)
{
	memset(gm, 0, sizeof(*gm));
	uint64_t low = size < gap_start ? size : gap_start;
	gm->region[0] = (struct gm_region){.gpa = 0, .size = low, .host = host};
	gm->nr_regions = 1;
	if (size > low) {
		gm->region[1] = (struct gm_region){.gpa = GIB_4, .size = size - low, .host = host + low};
		gm->nr_regions = 2;
	}
}

int gm_create(struct guest_mem *gm, uint64_t size, uint64_t gap_start, ember_err *e)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return err_set(e, "cannot map %llu MiB of guest memory: %s",
			       (unsigned long long)(size >> 20), strerror(errno));
	gm_init_from(gm, p, size, gap_start);
	gm->mapping = p;
	gm->mapping_size = size;
	return 0;
}

void gm_destroy(struct guest_mem *gm)
{
	if (gm->mapping)
		munmap(gm->mapping, gm->mapping_size);
	memset(gm, 0, sizeof(*gm));
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->region[i];
		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		/* Written so that no sum can overflow. */
		if (off >= r->size || len > r->size - off)
			continue;
		return r->host + off;
	}
	return NULL;
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}

uint64_t gm_lowmem_end(const struct guest_mem *gm)
{
	return gm->region[0].size;
}

uint64_t gm_total(const struct guest_mem *gm)
{
	uint64_t t = 0;
	for (int i = 0; i < gm->nr_regions; i++)
		t += gm->region[i].size;
	return t;
}
