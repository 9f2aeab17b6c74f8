/* PUT /snapshot/create and PUT /snapshot/load on the VMM thread, with
 * Firecracker's rules and words: create on a paused VM; load only into a
 * fresh process, before anything boot-specific was configured. A load
 * that fails leaves the process as it was: not started, configuration
 * untouched. */
#include "vmm/controller.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_vsock.h"
#include "util/host_file.h"
#include "util/log.h"
#include "vmm/snapshot.h"
#include "vmm/snapshot_file.h"

#define ERR_CREATE "Create snapshot error: "
#define ERR_LOAD "Load snapshot error: "

/* The configuration part of the state: what rebuilds the same VM. The
 * logger and metrics belong to the process that loads it. */
static json_t *saved_config(struct controller *c)
{
	json_t *j = controller_vm_config_json(c);
	json_object_set_new(j, "logger", json_null());
	json_object_set_new(j, "metrics", json_null());
	return j;
}

void controller_snapshot_create(struct controller *c, const struct snapshot_create_params *p,
				struct vmm_response *r)
{
	ember_err e = {{0}};
	if (c->state != VM_PAUSED) {
		vmm_response_fault(r, 400, ERR_CREATE "Cannot save the microVM state: Operation not "
				   "allowed: save/restore unavailable while running (pause the "
				   "microVM first)");
		return;
	}
	bool diff = p->type == SNAPSHOT_DIFF;
	if (diff && !c->cfg.machine.track_dirty_pages) {
		vmm_response_fault(r, 400, ERR_CREATE "Cannot get dirty bitmap: diff snapshots need "
				   "track_dirty_pages (machine-config, or snapshot load)");
		return;
	}
	if (virtio_devs_snapshottable(&c->vm.virtio, &e)) {
		vmm_response_fault(r, 400, ERR_CREATE "Cannot save the microVM state: %s", e.msg);
		return;
	}
	uint64_t t0 = metrics_mono_us();
	json_t *st = vmm_save_state(&c->vm, &e);
	if (!st) {
		vmm_response_fault(r, 400, ERR_CREATE "Cannot save the microVM state: %s", e.msg);
		return;
	}
	json_object_set_new(st, "config", saved_config(c));
	json_object_set_new(st, "ember_version", json_string(EMBER_VERSION));
	json_object_set_new(st, "snapshot_type", json_string(diff ? "Diff" : "Full"));
	/* Devices have finished their work (vmm_save_state): the dirty pages
	 * now include all of it. Memory first: a state file names a complete
	 * snapshot. After it, the next diff starts from here. */
	/* A full snapshot of anonymous memory skips the pages the guest never
	 * touched (holes, read back as zeros): its cost follows what the guest
	 * used, not its size. */
	struct dirty_map dm = {0};
	bool sparse = diff || !c->vm.vm.mem_from_file;
	if ((diff && dirty_collect(&c->vm.vm, &dm, &e)) ||
	    (!diff && sparse && dirty_touched(&c->vm.vm, &dm, &e)) ||
	    vmm_write_memory(&c->vm, p->mem_file_path, sparse ? &dm : NULL, &e) ||
	    snapshot_file_write(p->snapshot_path, st, &e) ||
	    (c->cfg.machine.track_dirty_pages && dirty_reset(&c->vm.vm, &e)))
		vmm_response_fault(r, 400, ERR_CREATE "%s", e.msg);
	dirty_map_free(&dm);
	json_decref(st);
	if (r->status < 300) {
		uint64_t us = metrics_mono_us() - t0;
		metric_set(diff ? &c->metrics->latencies_us.diff_create_snapshot
				: &c->metrics->latencies_us.full_create_snapshot, us);
		metric_set(diff ? &c->metrics->latencies_us.vmm_diff_create_snapshot
				: &c->metrics->latencies_us.vmm_full_create_snapshot, us);
		LOG_I("'create %s snapshot' VMM action took %llu us.", diff ? "diff" : "full",
		      (unsigned long long)us);
	}
}

/* The saved config, parsed as a config file is, with the load's overrides. */
static int load_config(json_t *st, const struct snapshot_load_params *p, struct vmm_config *cfg,
		       ember_err *e)
{
	json_t *j = json_object_get(st, "config");
	if (!json_is_object(j))
		return err_set(e, "Invalid snapshot state: no config");
	char *text = json_dumps(j, JSON_COMPACT);
	if (!text)
		return err_set(e, "out of memory");
	int rc = config_parse_text(text, strlen(text), cfg, e);
	free(text);
	if (rc)
		return err_prefix(e, "Invalid snapshot state");
	for (size_t i = 0; i < p->nr_net_overrides; i++) {
		const struct net_override *o = &p->net_overrides[i];
		int k = config_find_net(cfg, o->iface_id);
		if (k < 0)
			return err_set(e, "Failed to get snapshot state from file: Unknown Network "
				       "Device: %s", o->iface_id);
		char *name = strdup(o->host_dev_name);
		if (!name)
			return err_set(e, "out of memory");
		free(cfg->net[k].host_dev_name);
		cfg->net[k].host_dev_name = name;
	}
	if (p->vsock_uds_path) {
		/* Firecracker's word for a snapshot without vsock. */
		struct device_config *d = config_find_device(cfg, &vsock_device_ops);
		if (!d)
			return err_set(e, "Failed to get snapshot state from file: Unknown Vsock "
					  "Device");
		struct vsock_config *v = d->cfg;
		size_t n = strlen(p->vsock_uds_path);
		if (!n || n > VSOCK_UDS_PATH_MAX)
			return err_set(e, "vsock_override: uds_path must be 1 to %d bytes long",
				       VSOCK_UDS_PATH_MAX);
		memcpy(v->uds_path, p->vsock_uds_path, n + 1);
	}
	cfg->machine.track_dirty_pages = p->track_dirty_pages;
	if (p->has_huge_pages)
		cfg->machine.huge_pages = p->huge_pages;
	return 0;
}

/* The memory file, of exactly the snapshot's guest memory size. */
static int open_memory(const char *path, uint64_t bytes, ember_err *e)
{
	int fd = host_file_open(path, O_RDONLY, HOST_FILE_REGULAR, "memory file", e);
	if (fd < 0)
		return err_prefix(e, "Failed to load guest memory");
	struct stat st;
	if (fstat(fd, &st) || (uint64_t)st.st_size != bytes) {
		close(fd);
		return err_set(e, "Failed to load guest memory: the memory file %s is %lld bytes, "
			       "the snapshot's guest memory %llu", path, (long long)st.st_size,
			       (unsigned long long)bytes);
	}
	return fd;
}

void controller_snapshot_load(struct controller *c, const struct snapshot_load_params *p,
			      struct vmm_response *r)
{
	ember_err e = {{0}};
	if (c->boot_configured) {
		vmm_response_fault(r, 400, ERR_LOAD "Loading a microVM snapshot not allowed after "
				   "configuring boot-specific resources.");
		return;
	}
	uint64_t t0 = metrics_mono_us(), t_read = 0, t_built = 0;
	struct timespec cpu0;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
	/* KVM_CREATE_VM sleeps for most of its time; the state file is read
	 * and checked meanwhile. A failed load closes it: nothing is left. */
	struct vm_early early;
	vm_early_start(&early);
	json_t *st = NULL;
	struct vmm_config cfg;
	config_init(&cfg);
	int fd = -1;
	if (snapshot_file_read(p->snapshot_path, &st, NULL, &e)) {
		err_prefix(&e, "Failed to get snapshot state from file");
		goto fail;
	}
	if (load_config(st, p, &cfg, &e))
		goto fail;
	t_read = metrics_mono_us();
	/* A private mapping of the file cannot be hugetlbfs memory: 2M pages
	 * come from the pool and are filled by a page-fault handler (Uffd). */
	if (p->backend_type == MEM_BACKEND_FILE && cfg.machine.huge_pages == HUGE_PAGES_2M) {
		err_set(&e, "Failed to load guest memory: Error creating guest memory from file: "
			"Cannot restore hugetlbfs backed snapshot by mapping the memory file. "
			"Please use uffd.");
		goto fail;
	}
	if (p->backend_type == MEM_BACKEND_FILE) {
		fd = open_memory(p->backend_path, (uint64_t)cfg.machine.mem_size_mib << 20, &e);
		if (fd < 0)
			goto fail;
	}
	struct vmm_mem_source mem = {.fd = fd, .uffd_path = p->backend_path, .early_vm = &early};
	/* The VM is built from c->cfg, as at InstanceStart (devices keep
	 * pointers into it, MMDS's config for one); the old one comes back if
	 * the restore fails. */
	struct vmm_config old = c->cfg;
	c->cfg = cfg;
	config_init(&cfg);
	int rc = vmm_restore(&c->vm, &c->cfg, &c->opt, &mem, st, &e);
	vm_early_discard(&early);
	/* The loaded memory is the base the next diff snapshot builds on. */
	if (!rc && c->cfg.machine.track_dirty_pages && dirty_reset(&c->vm.vm, &e)) {
		vmm_destroy(&c->vm);
		rc = -1;
	}
	if (rc) {
		cfg = c->cfg; /* freed below */
		c->cfg = old;
		err_prefix(&e, "Failed to build microVM from snapshot");
		goto fail;
	}
	if (fd >= 0)
		close(fd);
	fd = -1;
	json_decref(st);
	st = NULL;
	/* The process's logger and metrics stay; the rest is the snapshot's. */
	c->cfg.has_logger = old.has_logger;
	c->cfg.logger = old.logger;
	c->cfg.has_metrics = old.has_metrics;
	c->cfg.metrics = old.metrics;
	memset(&old.logger, 0, sizeof(old.logger));
	memset(&old.metrics, 0, sizeof(old.metrics));
	config_free(&old);
	if (c->cfg.has_mmds)
		mmds_configure(&c->mmds, &c->cfg.mmds);
	t_built = metrics_mono_us();
	if (controller_run_vm(c, !p->resume_vm, &e)) {
		/* The VM is gone; the configuration stays the snapshot's. */
		vmm_response_fault(r, 400, ERR_LOAD "%s", e.msg);
		return;
	}
	uint64_t us = metrics_mono_us() - t0;
	metric_set(&c->metrics->latencies_us.load_snapshot, us);
	metric_set(&c->metrics->latencies_us.vmm_load_snapshot, us);
	LOG_I("'load snapshot' VMM action took %llu us.", (unsigned long long)us);
	/* The VMM thread's CPU time against the wall clock: what the load
	 * costs, apart from waiting for a busy host. */
	struct timespec cpu1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
	LOG_I("load snapshot: state file and config %llu us, VM %llu us, start %llu us; VMM "
	      "thread CPU %lld us", (unsigned long long)(t_read - t0),
	      (unsigned long long)(t_built - t_read), (unsigned long long)(t0 + us - t_built),
	      (long long)((cpu1.tv_sec - cpu0.tv_sec) * 1000000LL +
			  (cpu1.tv_nsec - cpu0.tv_nsec) / 1000));
	return;
fail:
	vm_early_discard(&early);
	if (fd >= 0)
		close(fd);
	json_decref(st);
	config_free(&cfg);
	vmm_response_fault(r, 400, ERR_LOAD "%s", e.msg);
}
