/* API requests, executed on the VMM thread with Firecracker's rules: which
 * are valid before InstanceStart, which after, and their error messages. */
#include "vmm/controller.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/stat.h>

#include "devices/virtio_net.h"
#include "mmds/json.h"
#include "util/host_file.h"
#include "util/log.h"
#include "vmm/routes.h"

static const char *const state_names[] = {"Not started", "Running", "Paused"};

#define ERR_AFTER_START "The requested operation is not supported after starting the microVM."
#define ERR_BEFORE_START "The requested operation is not supported before starting the microVM."
/* After start Firecracker takes PUT /drives and /network-interfaces as a
 * hotplug, which needs PCI; Ember's devices are virtio-mmio, as
 * Firecracker's without --enable-pci. */
#define ERR_NO_HOTPLUG "PCI is not enabled"
/* After start Firecracker's data store is the one on an MMDS-enabled
 * interface: without /mmds/config there is none. */
#define ERR_NO_MMDS "MMDS error: The MMDS data store is not initialized."
#define ERR_METRICS_INIT "Metrics error: Cannot initialize the metrics system due to bad user input: "

/* GET /vm/config in Firecracker's shape (its VmmConfig): every section,
 * null where a resource is not configured, and every optional field of a
 * device null where unset; the body is a valid config file for the same VM.
 * Unlike Firecracker, "logger" and "metrics" show their configuration once
 * set (Firecracker always shows null). */
json_t *controller_vm_config_json(struct controller *c)
{
	bool started = c->state != VM_NOT_STARTED;
	json_t *j = json_object();
	json_object_set_new(j, "drives", started ? virtio_devs_json(&c->vm.virtio, &block_device_ops)
						  : drive_list_json(&c->cfg.drives));
	if (c->cfg.has_boot_source)
		json_object_set_new(j, "boot-source", config_boot_source_json(&c->cfg.boot_source));
	json_object_set_new(j, "cpu-config", json_null());
	json_object_set_new(j, "logger", c->cfg.has_logger ? config_logger_json(&c->cfg.logger)
							   : json_null());
	json_object_set_new(j, "machine-config", config_machine_json(&c->cfg.machine));
	json_object_set_new(j, "metrics", c->cfg.has_metrics ? metrics_config_json(&c->cfg.metrics)
							     : json_null());
	json_object_set_new(j, "mmds-config", c->cfg.has_mmds ? mmds_config_json(&c->cfg.mmds)
							      : json_null());
	json_t *net;
	if (started) {
		net = virtio_devs_json(&c->vm.virtio, &net_device_ops);
	} else {
		net = json_array();
		for (size_t i = 0; i < c->cfg.nr_net; i++)
			json_array_append_new(net, net_config_json(&c->cfg.net[i]));
	}
	json_object_set_new(j, "network-interfaces", net);
	/* Kinds with their own section, then Firecracker's sections Ember has
	 * no kind for yet. */
	for (size_t i = 0; device_kinds[i]; i++) {
		const struct device_config_ops *dc = device_kinds[i]->config;
		if (!dc)
			continue;
		struct device_config *d = config_find_device(&c->cfg, device_kinds[i]);
		json_t *live = NULL;
		if (started && d) { /* its config as it is now (PATCH /balloon) */
			json_t *a = virtio_devs_json(&c->vm.virtio, device_kinds[i]);
			live = json_incref(json_array_get(a, 0));
			json_decref(a);
		}
		json_object_set_new(j, dc->key, live ? live : d ? dc->to_json(d->cfg) : json_null());
	}
	static const char *const absent[] = {"memory-hotplug"};
	for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
		if (!json_object_get(j, absent[i]))
			json_object_set_new(j, absent[i], json_null());
	json_object_set_new(j, "pmem", json_array());
	return j;
}

/* Firecracker checks at PUT time that the boot files can be opened; this
 * runs the loader's own checks (a regular, non-empty file it can map), so a
 * file PUT accepts is one InstanceStart can load. */
static int check_boot_file(const char *what, const char *path, struct vmm_response *r)
{
	ember_err e;
	if (!path)
		return 0;
	/* Never a blocking open: a FIFO named here used to park the VMM thread. */
	int fd = host_file_open(path, O_RDONLY, HOST_FILE_REGULAR, what, &e);
	if (fd < 0 && errno) { /* Firecracker's words, which its clients match */
		int err = errno;
		vmm_response_fault(r, 400, "Boot source error: %s %s (os error %d) (%s %s)",
				   strcmp(what, "initrd_path") ? "The kernel file cannot be opened:"
				   : "The initrd file cannot be opened due to invalid path or "
				     "invalid permissions.", strerror(err), err, what, path);
		return -1;
	}
	if (fd < 0) { /* opened, but not a regular file */
		vmm_response_fault(r, 400, "Boot source error: %s", e.msg);
		return -1;
	}
	/* What the loader would refuse later without reading the file: an
	 * empty one (its mmap). */
	struct stat st;
	int bad = fstat(fd, &st) ? errno : 0;
	close(fd);
	if (bad || st.st_size == 0) {
		vmm_response_fault(r, 400, "%s %s: %s", what, path,
				   bad ? strerror(bad) : "file is empty");
		return -1;
	}
	return 0;
}

/* Firecracker opens a drive's file at PUT time, so a path that cannot be
 * used is refused then, not at InstanceStart. */
static int check_drive_file(const struct drive_config *d, ember_err *e)
{
	int fd = host_file_open(d->path_on_host, d->is_read_only ? O_RDONLY : O_RDWR,
				HOST_FILE_REGULAR | HOST_FILE_BLOCK_DEVICE, NULL, e);
	if (fd < 0)
		return errno ? err_set(e, "Drive config error: Unable to create the virtio block "
				       "device: Virtio backend error: Error manipulating the "
				       "backing file: %s (os error %d) %s", strerror(errno), errno,
				       d->path_on_host)
			     : err_prefix(e, "Drive config error: Unable to create the virtio block "
					  "device: Virtio backend error: Error manipulating the "
					  "backing file");
	close(fd);
	return 0;
}

/* PUT /logger changes only the fields it names; GET /vm/config shows the
 * sum of all of them. */
static void merge_logger(struct vmm_config *cfg, struct logger_config *l)
{
	struct logger_config *m = &cfg->logger;
	if (l->log_path) {
		free(m->log_path);
		m->log_path = l->log_path;
		l->log_path = NULL;
	}
	if (l->module) {
		free(m->module);
		m->module = l->module;
		l->module = NULL;
	}
	if (l->has_level) {
		m->has_level = true;
		m->level = l->level;
	}
	if (l->has_show_level) {
		m->has_show_level = true;
		m->show_level = l->show_level;
	}
	if (l->has_show_log_origin) {
		m->has_show_log_origin = true;
		m->show_log_origin = l->show_log_origin;
	}
	cfg->has_logger = true;
}

static int check_mmds_ifaces(const struct controller *c, const struct mmds_config *m, ember_err *e)
{
	const char *ids[MAX_NET_IFACES];
	for (size_t i = 0; i < c->cfg.nr_net; i++)
		ids[i] = c->cfg.net[i].iface_id;
	return mmds_config_check_ifaces(m, ids, c->cfg.nr_net, e);
}

static int patch_device(struct controller *c, const struct device_ops *ops, const char *what,
			const char *id, const void *patch, ember_err *e)
{
	struct virtio_slot *s = virtio_devs_find(&c->vm.virtio, ops, id);
	if (!s)
		return err_set(e, "Invalid ID: no %s with id %s", what, id);
	return virtio_slot_patch(s, patch, e);
}

/* A kind's own request (GET /balloon/statistics, ...): on its config before
 * InstanceStart, on the device after. */
static void device_request(struct controller *c, struct vmm_request *q, struct vmm_response *r)
{
	ember_err e = {{0}};
	json_t *out = NULL;
	int rc;
	if (c->state == VM_NOT_STARTED) {
		struct device_config *d = config_find_device(&c->cfg, q->device_ops);
		rc = q->device_req->run_config(d ? d->cfg : NULL, q->device_arg, &out, &e);
	} else {
		struct virtio_slot *s = virtio_devs_find_kind(&c->vm.virtio, q->device_ops);
		rc = virtio_slot_request(s, q->device_req, q->device_arg, &out, &e);
	}
	if (rc)
		vmm_response_fault(r, 400, "%s", e.msg);
	else if (out)
		vmm_response_json(r, 200, out);
}

void controller_handle(struct controller *c, struct vmm_request *q, struct vmm_response *r)
{
	ember_err e = {{0}};
	bool started = c->state != VM_NOT_STARTED;
	*r = (struct vmm_response){.status = 204};
	unsigned when = q->kind == REQ_DEVICE_REQUEST ? q->device_req->when
						     : api_request_when(q->kind);
	if (started && (q->kind == REQ_PUT_DRIVE || q->kind == REQ_PUT_NET)) {
		vmm_response_fault(r, 400, ERR_NO_HOTPLUG);
		return;
	}
	if (started && !c->cfg.has_mmds &&
	    (q->kind == REQ_GET_MMDS || q->kind == REQ_PUT_MMDS || q->kind == REQ_PATCH_MMDS)) {
		vmm_response_fault(r, 400, ERR_NO_MMDS);
		return;
	}
	if (!(when & (started ? ROUTE_AFTER_START : ROUTE_BEFORE_START))) {
		vmm_response_fault(r, 400, started ? ERR_AFTER_START : ERR_BEFORE_START);
		return;
	}

	switch (q->kind) {
	case REQ_GET_INFO:
		vmm_response_json(r, 200, json_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "state",
						    state_names[c->state], "vmm_version",
						    EMBER_VERSION, "app_name", "Ember"));
		break;
	case REQ_GET_VERSION:
		vmm_response_json(r, 200, json_pack("{s:s}", "firecracker_version", EMBER_VERSION));
		break;
	case REQ_GET_VM_CONFIG:
		vmm_response_json(r, 200, controller_vm_config_json(c));
		break;
	case REQ_GET_MACHINE_CONFIG:
		vmm_response_json(r, 200, config_machine_json(&c->cfg.machine));
		break;
	case REQ_PUT_MACHINE_CONFIG:
	case REQ_PATCH_MACHINE_CONFIG:
		if (config_update_machine(&c->cfg, &q->patch, &e))
			vmm_response_fault(r, 400, "%s", e.msg);
		break;
	case REQ_PUT_CPU_CONFIG:
		config_set_cpu_custom(&c->cfg, q->cpu_template);
		q->cpu_template = NULL; /* moved */
		break;
	case REQ_PUT_BOOT_SOURCE:
		if (check_boot_file("kernel_image_path", q->boot_source.kernel_image_path, r) ||
		    check_boot_file("initrd_path", q->boot_source.initrd_path, r))
			break;
		boot_source_free(&c->cfg.boot_source);
		c->cfg.boot_source = q->boot_source;
		memset(&q->boot_source, 0, sizeof(q->boot_source)); /* moved */
		c->cfg.has_boot_source = true;
		break;
	case REQ_INSTANCE_START:
		if (!c->cfg.has_boot_source)
			vmm_response_fault(r, 400, "Start microvm error: Cannot start microvm without "
					   "kernel configuration.");
		else if (controller_start_vm(c, &e))
			vmm_response_fault(r, 400, "Start microvm error: %s", e.msg);
		break;
	case REQ_SEND_CTRL_ALT_DEL:
		if (i8042_ctrl_alt_del(&c->vm.i8042))
			vmm_response_fault(r, 400, "Cannot send Ctrl+Alt+Del: the guest's keyboard "
					   "is disabled or its input buffer is full");
		break;
	case REQ_FLUSH_METRICS:
		if (controller_flush_metrics(c, &e))
			vmm_response_fault(r, 400, "Failed to flush metrics: %s", e.msg);
		break;
	case REQ_PUT_LOGGER:
		if (config_apply_logger(&q->logger, &e))
			vmm_response_fault(r, 400, "%s", e.msg);
		else
			merge_logger(&c->cfg, &q->logger);
		break;
	case REQ_PUT_SERIAL:
		free(c->cfg.serial_out_path);
		c->cfg.serial_out_path = q->serial_out_path;
		q->serial_out_path = NULL;
		break;
	case REQ_PUT_METRICS:
		if (c->cfg.has_metrics) {
			vmm_response_fault(r, 400, ERR_METRICS_INIT "Reinitialization of metrics "
					   "not allowed.");
		} else if (metrics_sink_open(&c->sink, q->metrics.metrics_path, &e)) {
			vmm_response_fault(r, 400, ERR_METRICS_INIT "%s", e.msg);
		} else {
			metrics_apply_config(c->metrics, &q->metrics, c->id);
			c->cfg.metrics = q->metrics;
			memset(&q->metrics, 0, sizeof(q->metrics));
			c->cfg.has_metrics = true;
		}
		break;
	case REQ_GET_MMDS: {
		char *dump = mmds_store_dump(&c->mmds.store);
		if (!dump) {
			vmm_response_fault(r, 500, "out of memory");
			break;
		}
		r->status = 200;
		r->body = dump;
		break;
	}
	case REQ_PUT_MMDS:
	case REQ_PATCH_MMDS: {
		int rc = q->kind == REQ_PUT_MMDS ? mmds_store_put(&c->mmds.store, q->mmds_data, &e)
						 : mmds_store_patch(&c->mmds.store, q->mmds_data, &e);
		if (rc)
			vmm_response_fault(r, mmds_store_http_status(rc), "%s", e.msg);
		break;
	}
	case REQ_PUT_MMDS_CONFIG:
		if (check_mmds_ifaces(c, &q->mmds_config, &e)) {
			vmm_response_fault(r, 400, "%s", e.msg);
			break;
		}
		mmds_config_free(&c->cfg.mmds);
		c->cfg.mmds = q->mmds_config;
		memset(&q->mmds_config, 0, sizeof(q->mmds_config));
		c->cfg.has_mmds = true;
		mmds_configure(&c->mmds, &c->cfg.mmds);
		break;
	case REQ_PUT_NET: {
		if (config_check_device_count(&c->cfg, config_find_net(&c->cfg,
							q->net.iface_id) < 0, &e)) {
			vmm_response_fault(r, 400, "%s", e.msg);
			break;
		}
		/* As Firecracker: the TAP must open now, not at InstanceStart. */
		int tap = virtio_net_tap_open(q->net.host_dev_name, &e);
		if (tap < 0) {
			vmm_response_fault(r, 400, "%s", e.msg);
			break;
		}
		close(tap);
		if (config_put_net(&c->cfg, &q->net, &e))
			vmm_response_fault(r, 400, "%s", e.msg);
		break;
	}
	case REQ_PATCH_NET:
		if (patch_device(c, &net_device_ops, "network interface", q->net_patch.iface_id,
				      &q->net_patch, &e))
			vmm_response_fault(r, 400, "%s", e.msg);
		break;
	case REQ_PUT_DEVICE:
		if (q->device_ops->config->check_mem &&
		    q->device_ops->config->check_mem(q->device_cfg, c->cfg.machine.mem_size_mib,
						     false, &e)) {
			vmm_response_fault(r, 400, "%s", e.msg);
			break;
		}
		struct device_config *old = config_find_device(&c->cfg, q->device_ops);
		if ((!old && config_check_device_count(&c->cfg, true, &e)) ||
		    (q->device_ops->config->acquire &&
		     q->device_ops->config->acquire(q->device_cfg, old ? old->cfg : NULL, &e))) {
			vmm_response_fault(r, 400, "%s", e.msg);
			break;
		}
		if (config_put_device(&c->cfg, q->device_ops, q->device_cfg, &e))
			vmm_response_fault(r, 400, "%s", e.msg);
		q->device_cfg = NULL; /* taken, or freed */
		break;
	case REQ_DEVICE_REQUEST:
		device_request(c, q, r);
		break;
	case REQ_PUT_DRIVE:
		if (config_check_device_count(&c->cfg, !drive_list_find(&c->cfg.drives,
							q->drive.drive_id), &e) ||
		    check_drive_file(&q->drive, &e) || drive_list_put(&c->cfg.drives, &q->drive, &e))
			vmm_response_fault(r, 400, "%s", e.msg);
		break;
	case REQ_PATCH_DRIVE:
		if (patch_device(c, &block_device_ops, "drive", q->drive_patch.drive_id,
				 &q->drive_patch, &e)) {
			vmm_response_fault(r, 400, "%s", e.msg);
			break;
		}
		struct drive_config *d = drive_list_find(&c->cfg.drives, q->drive_patch.drive_id);
		if (d)
			drive_config_apply_patch(d, &q->drive_patch, &e);
		break;
	case REQ_SNAPSHOT_CREATE:
		controller_snapshot_create(c, &q->snapshot_create, r);
		break;
	case REQ_SNAPSHOT_LOAD:
		controller_snapshot_load(c, &q->snapshot_load, r);
		break;
	case REQ_PAUSE:
		if (c->state == VM_RUNNING) {
			uint64_t t0 = metrics_mono_us();
			vmm_pause(&c->vm);
			metric_set(&c->metrics->latencies_us.vmm_pause_vm, metrics_mono_us() - t0);
			c->state = VM_PAUSED;
		}
		break;
	case REQ_RESUME:
		if (c->state == VM_PAUSED) {
			uint64_t t0 = metrics_mono_us();
			vmm_resume(&c->vm);
			metric_set(&c->metrics->latencies_us.vmm_resume_vm, metrics_mono_us() - t0);
			c->state = VM_RUNNING;
		}
		break;
	}
	/* Firecracker's boot-specific resources: once one is set, a snapshot
	 * can no longer be loaded into this process. */
	switch (q->kind) {
	case REQ_PUT_MACHINE_CONFIG: case REQ_PATCH_MACHINE_CONFIG: case REQ_PUT_BOOT_SOURCE:
	case REQ_PUT_NET: case REQ_PUT_DRIVE: case REQ_PUT_DEVICE: case REQ_PUT_MMDS_CONFIG:
		if (r->status < 300)
			c->boot_configured = true;
		break;
	default:
		break;
	}
}
