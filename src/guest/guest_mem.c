#include "guest/guest_mem.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
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

/* Guest RAM starts on a 2 MiB boundary of the host's address space: only
 * then can KVM map a guest 2 MiB page with one host huge page (THP), and a
 * guest touching fresh memory takes one nested fault per 2 MiB instead of
 * one per 4 KiB. bench/ measured the difference: a first buffered read in
 * the guest ran at 0.28x QEMU's speed (QEMU aligns its RAM) and at 1.03x
 * the second time. */
#define GM_ALIGN (2ULL << 20)

/* Reserves size + GM_ALIGN bytes of address space at *r (prot: PROT_NONE
 * when a file's mapping goes over it) and returns its first GM_ALIGN-aligned
 * byte, or NULL. */
static uint8_t *reserve_aligned(uint64_t size, int prot, uint8_t **r, ember_err *e)
{
	if (size > SIZE_MAX - GM_ALIGN) {
		err_set(e, "cannot map %llu MiB of guest memory: too large",
			(unsigned long long)(size >> 20));
		return NULL;
	}
	*r = mmap(NULL, (size_t)size + GM_ALIGN, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		  -1, 0);
	if (*r == MAP_FAILED) {
		err_set(e, "cannot map %llu MiB of guest memory: %s", (unsigned long long)(size >> 20),
			strerror(errno));
		return NULL;
	}
	return (uint8_t *)(((uintptr_t)*r + GM_ALIGN - 1) & ~(uintptr_t)(GM_ALIGN - 1));
}

/* Gives back what reserve_aligned() reserved at r around [p, p + size), and
 * makes [p, p + size) gm's memory. */
static void adopt_aligned(struct guest_mem *gm, uint8_t *r, uint8_t *p, uint64_t size,
			  uint64_t gap_start)
{
	size_t head = (size_t)(p - r), tail = GM_ALIGN - head;
	if (head)
		munmap(r, head);
	if (tail)
		munmap(p + size, tail);
	gm_init_from(gm, p, size, gap_start);
	gm->mapping = p;
	gm->mapping_size = size;
}

int gm_create(struct guest_mem *gm, uint64_t size, uint64_t gap_start, ember_err *e)
{
	uint8_t *r, *p = reserve_aligned(size, PROT_READ | PROT_WRITE, &r, e);
	if (!p)
		return -1;
	adopt_aligned(gm, r, p, size, gap_start);
	return 0;
}

int gm_create_from_file(struct guest_mem *gm, int fd, uint64_t size, uint64_t gap_start,
			ember_err *e)
{
	/* Reserve an aligned range, then put the file's private mapping over it. */
	uint8_t *r, *p = reserve_aligned(size, PROT_NONE, &r, e);
	if (!p)
		return -1;
	if (mmap(p, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
		 fd, 0) == MAP_FAILED) {
		int err = errno;
		munmap(r, (size_t)size + GM_ALIGN);
		return err_set(e, "cannot map the memory file: %s", strerror(err));
	}
	adopt_aligned(gm, r, p, size, gap_start);
	return 0;
}

void gm_destroy(struct guest_mem *gm)
{
	for (int i = 0; i < gm->nr_regions; i++)
		free(gm->region[i].written);
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

#define GM_PAGE 4096ULL

static uint64_t bitmap_words(const struct gm_region *r)
{
	return (r->size / GM_PAGE + 63) / 64;
}

int gm_track_writes(struct guest_mem *gm, ember_err *e)
{
	for (int i = 0; i < gm->nr_regions; i++) {
		struct gm_region *r = &gm->region[i];
		if (!r->written && !(r->written = calloc(bitmap_words(r), sizeof(uint64_t))))
			return err_set(e, "out of memory for the bitmap of written guest pages");
	}
	return 0;
}

void *gm_ptr_w(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gm_ptr(gm, gpa, len);
	if (!p || !len)
		return p;
	for (int i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->region[i];
		if (!r->written || p < r->host || p >= r->host + r->size)
			continue;
		/* Device threads write concurrently: atomic ORs. */
		uint64_t first = (uint64_t)(p - r->host) / GM_PAGE;
		uint64_t last = ((uint64_t)(p - r->host) + len - 1) / GM_PAGE;
		for (uint64_t pg = first; pg <= last; pg++)
			__atomic_fetch_or(&r->written[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
		break;
	}
	return p;
}

void gm_take_written(const struct guest_mem *gm, int i, uint64_t *bits)
{
	const struct gm_region *r = &gm->region[i];
	if (!r->written)
		return;
	for (uint64_t w = 0; w < bitmap_words(r); w++) {
		uint64_t v = __atomic_exchange_n(&r->written[w], 0, __ATOMIC_RELAXED);
		if (bits)
			bits[w] |= v;
	}
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
	void *p = gm_ptr_w(gm, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}

int gm_discard(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	if (!len || (gpa | len) & (GM_PAGE - 1))
		return -1;
	uint8_t *p = gm_ptr(gm, gpa, len);
	if (!p || (uintptr_t)p & (GM_PAGE - 1))
		return -1;
	/* hugetlbfs-backed memory gives back whole huge pages only: the range
	 * shrinks inward to them, and a range inside one gives nothing back
	 * (Firecracker's balloon reclaims nothing there either). */
	if (gm->discard_unit > GM_PAGE) {
		uint64_t u = gm->discard_unit, off = (uint64_t)(p - gm->mapping);
		uint64_t start = (off + u - 1) / u * u, end = (off + len) / u * u;
		if (end <= start)
			return 0;
		p = gm->mapping + start;
		len = end - start;
	}
	/* Private memory: the pages are freed; anonymous ones read back as
	 * zeros, a snapshot's file-backed ones as the file's contents. */
	return madvise(p, (size_t)len, MADV_DONTNEED) ? -1 : 0;
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
