/* A paused VM's state and memory to files, and back into a VM that
 * builder.c's vmm_restore has rebuilt from the saved config
 * (docs/snapshot-format.md). */
#include "vmm/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/kvm_state.h"
#include "arch/x86/layout.h"
#include "util/blob.h"
#include "util/log.h"

json_t *vmm_save_state(struct vmm *m, ember_err *e)
{
	json_t *vcpus = json_array(), *vm = NULL, *devs = NULL;
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		json_t *v;
		if (kvm_vcpu_save(m->vm.kvm_fd, m->vcpus[i].fd, &v, e)) {
			err_prefix(e, "Cannot save Vcpu state: vCPU %u", i);
			goto fail;
		}
		json_array_append_new(vcpus, v);
	}
	if (kvm_vm_save(m->vm.vm_fd, &vm, e)) {
		err_prefix(e, "Cannot save KvmVm state");
		goto fail;
	}
	/* Devices finish their work in flight here, before memory is saved. */
	devs = virtio_devs_save(&m->virtio, e);
	if (!devs) {
		err_prefix(e, "Cannot save devices");
		goto fail;
	}
	json_t *regions = json_array();
	for (int i = 0; i < m->vm.mem.nr_regions; i++)
		json_array_append_new(regions, json_pack("{s:I, s:I}", "gpa",
							 (json_int_t)m->vm.mem.region[i].gpa, "size",
							 (json_int_t)m->vm.mem.region[i].size));
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:{s:I, s:o}, s:{s:i}}", "vcpus", vcpus, "vm", vm,
			 "devices", devs, "serial", serial_save(&m->serial), "i8042",
			 i8042_save(&m->i8042), "memory", "size",
			 (json_int_t)gm_total(&m->vm.mem), "regions", regions, "vmgenid", "gsi",
			 X86_VMGENID_GSI);
fail:
	json_decref(vcpus);
	json_decref(vm);
	json_decref(devs);
	return NULL;
}

int vmm_restore_state(struct vmm *m, json_t *st, ember_err *e)
{
	json_t *vcpus = json_object_get(st, "vcpus");
	if (!json_is_array(vcpus) || json_array_size(vcpus) != m->nr_vcpus)
		return err_set(e, "the state holds %zu vCPUs, its machine config %u",
			       json_is_array(vcpus) ? json_array_size(vcpus) : 0, m->nr_vcpus);
	uint64_t size;
	if (json_get_u64(json_object_get(st, "memory"), "size", UINT64_MAX >> 1, &size, e))
		return err_prefix(e, "memory");
	if (size != gm_total(&m->vm.mem))
		return err_set(e, "memory: the state says %llu bytes, the VM has %llu",
			       (unsigned long long)size, (unsigned long long)gm_total(&m->vm.mem));
	if (virtio_devs_restore(&m->virtio, json_object_get(st, "devices"), e) ||
	    serial_restore(&m->serial, json_object_get(st, "serial"), e) ||
	    i8042_restore(&m->i8042, json_object_get(st, "i8042"), e))
		return -1;
	if (kvm_vm_restore(m->vm.vm_fd, json_object_get(st, "vm"), e))
		return err_prefix(e, "VM state");
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		if (kvm_vcpu_restore(m->vcpus[i].fd, json_array_get(vcpus, i), e))
			return err_prefix(e, "vCPU %u", i);
	/* What the devices raised while restored waits for the irqchip. */
	virtio_devs_restore_done(&m->virtio);
	/* Every restore is a new generation (a clone): a new ID, and the GED
	 * interrupt, latched by the IOAPIC until the guest runs. */
	if (json_object_get(st, "vmgenid") && vmm_new_generation(m, true, e))
		return -1;
	return 0;
}

static int write_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		ssize_t n = pwrite(fd, p, chunk, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* A temporary file next to path; renamed over it once complete, so a
 * mapping of the old file (a restored VM's own memory file) stays valid
 * and no reader ever sees half a file. */
int snapshot_tmp_create(const char *path, char *tmp, size_t size, ember_err *e)
{
	if ((size_t)snprintf(tmp, size, "%s.XXXXXX", path) >= size)
		return err_set(e, "%s: path too long", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return err_set(e, "cannot create a file next to %s: %s", path, strerror(errno));
	return fd;
}

int snapshot_tmp_commit(int fd, const char *tmp, const char *path, ember_err *e)
{
	int rc = 0;
	if (fsync(fd))
		rc = err_set(e, "%s: fsync: %s", path, strerror(errno));
	close(fd);
	if (!rc && rename(tmp, path))
		rc = err_set(e, "%s: rename: %s", path, strerror(errno));
	if (rc)
		unlink(tmp);
	return rc;
}

/* The runs of set bits in one region's map, each written at its offset. */
static int write_dirty(int fd, const struct gm_region *r, const uint64_t *bits, uint64_t pages,
		       uint64_t off, uint64_t *written)
{
	for (uint64_t p = 0; p < pages;) {
		if (!(bits[p / 64] >> (p % 64) & 1)) {
			p++;
			continue;
		}
		uint64_t end = p;
		while (end < pages && bits[end / 64] >> (end % 64) & 1)
			end++;
		uint64_t at = p * DIRTY_PAGE_SIZE, len = (end - p) * DIRTY_PAGE_SIZE;
		if (write_all(fd, r->host + at, len, off + at))
			return -1;
		*written += len;
		p = end;
	}
	return 0;
}

int vmm_write_memory(struct vmm *m, const char *path, const struct dirty_map *dirty,
		     ember_err *e)
{
	char tmp[4200];
	int fd = snapshot_tmp_create(path, tmp, sizeof(tmp), e);
	if (fd < 0)
		return err_prefix(e, "Cannot write memory file");
	uint64_t off = 0, written = 0;
	/* A diff is the memory's size, holes where nothing changed. */
	int rc = dirty && ftruncate(fd, (off_t)gm_total(&m->vm.mem)) ? -1 : 0;
	for (int i = 0; i < m->vm.mem.nr_regions && !rc; i++) {
		const struct gm_region *r = &m->vm.mem.region[i];
		if (dirty) {
			rc = write_dirty(fd, r, dirty->bits[i], dirty->pages[i], off, &written);
		} else {
			rc = write_all(fd, r->host, r->size, off);
			written += r->size;
		}
		off += r->size;
	}
	if (rc) {
		err_set(e, "Cannot write memory file: %s: %s", path, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (snapshot_tmp_commit(fd, tmp, path, e))
		return err_prefix(e, "Cannot write memory file");
	LOG_I("memory file %s: %llu of %llu bytes written", path, (unsigned long long)written,
	      (unsigned long long)gm_total(&m->vm.mem));
	return 0;
}
