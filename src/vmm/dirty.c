#include "vmm/dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/log.h"

#define PM_SWAPPED (1ULL << 62)
#define PM_PRESENT (1ULL << 63)

/* Reads the KVM log of slot `slot` into bits (cleared in KVM as read). */
static int kvm_log(struct vm *vm, int slot, uint64_t *bits, ember_err *e)
{
	struct kvm_dirty_log log = {.slot = (uint32_t)slot, .dirty_bitmap = bits};
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return err_set(e, "Cannot get dirty bitmap: KVM_GET_DIRTY_LOG: %s", strerror(errno));
	return 0;
}

int dirty_reset(struct vm *vm, ember_err *e)
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		uint64_t pages = vm->mem.region[i].size / DIRTY_PAGE_SIZE;
		uint64_t *bits = calloc((pages + 63) / 64, 8);
		if (!bits)
			return err_set(e, "out of memory");
		int rc = kvm_log(vm, i, bits, e);
		free(bits);
		if (rc)
			return -1;
		gm_take_written(&vm->mem, i, NULL);
	}
	return 0;
}

/* ORs the pages of [host, host + pages pages) whose pagemap entry has any
 * of `mask` into bits. Without /proc (a jail has none: the jailer mounts
 * nothing there, as Firecracker's), every page: the snapshot then holds all
 * of guest memory, as Firecracker's full snapshots do. */
static int pagemap_bits(const uint8_t *host, uint64_t pages, uint64_t mask, uint64_t *bits,
			ember_err *e)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0 && (errno == ENOENT || errno == EACCES || errno == EPERM)) {
		LOG_I("/proc/self/pagemap: %s: the snapshot holds every page of guest memory",
		      strerror(errno));
		memset(bits, 0xff, (pages + 63) / 64 * 8);
		if (pages % 64)
			bits[pages / 64] = (1ULL << (pages % 64)) - 1;
		return 0;
	}
	if (fd < 0)
		return err_set(e, "/proc/self/pagemap: %s", strerror(errno));
	enum { CHUNK = 4096 };
	uint64_t *buf = malloc(CHUNK * sizeof(uint64_t));
	int rc = buf ? 0 : err_set(e, "out of memory");
	uint64_t first = (uint64_t)(uintptr_t)host / DIRTY_PAGE_SIZE;
	for (uint64_t p = 0; !rc && p < pages; p += CHUNK) {
		uint64_t n = pages - p < CHUNK ? pages - p : CHUNK;
		ssize_t got = pread(fd, buf, n * 8, (off_t)((first + p) * 8));
		if (got != (ssize_t)(n * 8)) {
			rc = err_set(e, "/proc/self/pagemap: short read");
			break;
		}
		for (uint64_t k = 0; k < n; k++)
			if (buf[k] & mask)
				bits[(p + k) / 64] |= 1ULL << ((p + k) % 64);
	}
	free(buf);
	close(fd);
	return rc;
}

/* A map of every region's pages: those in KVM's dirty log and Ember's own
 * bitmap of its writes (kvm_dirty), or those the pagemap says hold
 * anything (not kvm_dirty). */
static int collect(struct vm *vm, struct dirty_map *out, bool kvm_dirty, ember_err *e)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct gm_region *r = &vm->mem.region[i];
		out->pages[i] = r->size / DIRTY_PAGE_SIZE;
		out->bits[i] = calloc((out->pages[i] + 63) / 64, 8);
		out->nr_regions = i + 1;
		if (!out->bits[i] || (kvm_dirty && kvm_log(vm, i, out->bits[i], e)) ||
		    (!kvm_dirty && pagemap_bits(r->host, out->pages[i], PM_PRESENT | PM_SWAPPED,
						out->bits[i], e))) {
			if (!out->bits[i])
				err_set(e, "out of memory");
			dirty_map_free(out);
			return -1;
		}
		if (kvm_dirty)
			gm_take_written(&vm->mem, i, out->bits[i]);
	}
	return 0;
}

int dirty_collect(struct vm *vm, struct dirty_map *out, ember_err *e)
{
	return collect(vm, out, true, e);
}

int dirty_touched(struct vm *vm, struct dirty_map *out, ember_err *e)
{
	return collect(vm, out, false, e);
}

void dirty_map_free(struct dirty_map *d)
{
	for (int i = 0; i < d->nr_regions; i++)
		free(d->bits[i]);
	memset(d, 0, sizeof(*d));
}
