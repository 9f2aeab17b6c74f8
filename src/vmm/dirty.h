/* Which guest pages changed since the last snapshot, for diff snapshots
 * (machine-config track_dirty_pages). Two sources, OR-ed, as Firecracker's:
 * KVM's dirty log of each memslot (the guest's own writes), and Ember's
 * bitmap of its own writes into guest memory (virtio used rings, block
 * reads, network frames: gm_ptr_w), which KVM's log does not see. Both are
 * reset by dirty_reset. Neither needs /proc, which a jail lacks. (The
 * kernel's soft-dirty bits were a third until 2026-12: Linux reports them
 * per mapping on hugetlbfs, some kernels not at all, and they need /proc.) */
#ifndef EMBER_DIRTY_H
#define EMBER_DIRTY_H

#include <stdint.h>

#include "util/err.h"
#include "vmm/vm.h"

#define DIRTY_PAGE_SIZE 4096u

/* One bit per 4 KiB page of each region, in region order (gm_total / 4096
 * bits, rounded up to whole 64-bit words per region). */
struct dirty_map {
	uint64_t *bits[GM_MAX_REGIONS];
	uint64_t pages[GM_MAX_REGIONS];
	int nr_regions;
};

/* Starts a new interval: clears KVM's log and Ember's bitmap. */
int dirty_reset(struct vm *vm, ember_err *e);
/* The pages of anonymous guest memory that hold anything: those present
 * or swapped out (/proc/self/pagemap). A page never touched reads as
 * zero, so a full snapshot leaves it a hole. Only for anonymous memory: a
 * private file mapping's untouched pages are the file's. Without /proc (in
 * a jail), all pages. */
int dirty_touched(struct vm *vm, struct dirty_map *out, ember_err *e);
/* The pages written since the last reset (KVM's log is cleared as read). */
int dirty_collect(struct vm *vm, struct dirty_map *out, ember_err *e);
void dirty_map_free(struct dirty_map *d);

#endif
