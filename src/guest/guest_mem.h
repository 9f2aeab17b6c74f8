/* Guest physical memory. Every access to guest memory, by the loader, the
 * boot-time table builders and the devices, goes through gm_ptr() or, for
 * a write, gm_ptr_w() (or the read/write helpers built on them), which
 * check that the whole range lies inside one region and cannot overflow. */
#ifndef EMBER_GUEST_MEM_H
#define EMBER_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define GM_MAX_REGIONS 2

struct gm_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	/* With gm_track_writes: one bit per 4 KiB page of the region that
	 * this process wrote through gm_ptr_w (or gm_write) since the last
	 * gm_take_written; NULL otherwise. */
	uint64_t *written;
};

struct guest_mem {
	struct gm_region region[GM_MAX_REGIONS];
	int nr_regions;
	uint8_t *mapping; /* one mmap backs all regions */
	size_t mapping_size;
	/* The smallest unit gm_discard can give back: 0 for base pages, 2 MiB
	 * for hugetlbfs-backed memory. */
	uint64_t discard_unit;
};

/* Maps `size` bytes of anonymous memory and lays it out at guest physical 0,
 * split around the 32-bit MMIO gap [gap_start, 4 GiB). */
int gm_create(struct guest_mem *gm, uint64_t size, uint64_t gap_start, ember_err *e);
/* The same from 2 MiB hugetlbfs pages (guest_mem_hugetlb.c): all of them
 * reserved from the host's pool now, or an error that says the pool is
 * short. `size` must be a multiple of 2 MiB. */
int gm_create_hugetlb(struct guest_mem *gm, uint64_t size, uint64_t gap_start, ember_err *e);
/* The same layout over a private (copy-on-write) mapping of fd's first
 * `size` bytes: a snapshot's memory file, read by the guest on demand. */
int gm_create_from_file(struct guest_mem *gm, int fd, uint64_t size, uint64_t gap_start,
			ember_err *e);
/* Lays out caller-provided host memory the same way (unit tests). */
void gm_init_from(struct guest_mem *gm, uint8_t *host, uint64_t size, uint64_t gap_start);
void gm_destroy(struct guest_mem *gm);

/* Host pointer for [gpa, gpa+len) or NULL if any byte is outside guest RAM
 * or the range crosses a region boundary. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* The same for a range the caller is about to write (itself, or the
 * kernel on its behalf: a preadv into it): with write tracking on, its
 * pages are marked written. Every write by Ember into guest memory goes
 * through here, so that diff snapshots hold what the devices wrote, which
 * KVM's dirty log (the guest's own writes) never sees. */
void *gm_ptr_w(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len);
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len);
/* Starts tracking Ember's own writes (machine-config track_dirty_pages):
 * a bitmap per region, as Firecracker keeps of its devices' writes. */
int gm_track_writes(struct guest_mem *gm, ember_err *e);
/* ORs region i's written bits (one per 4 KiB page) into bits, if not NULL,
 * and clears them: a new interval starts. Nothing without tracking. */
void gm_take_written(const struct guest_mem *gm, int i, uint64_t *bits);
/* Gives guest RAM [gpa, gpa+len) back to the host (the balloon's inflated,
 * hinted and reported pages): the host frees what backs it, and the guest
 * reads zeros there the next time it touches it. The range must be 4 KiB
 * aligned and inside one region; -1 otherwise (nothing done), or if the
 * host refused. The one place that knows how guest memory is backed:
 * anonymous memory takes MADV_DONTNEED. */
int gm_discard(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* End of the RAM below the MMIO gap. */
uint64_t gm_lowmem_end(const struct guest_mem *gm);
uint64_t gm_total(const struct guest_mem *gm);

#endif
