/* The VMM's view of a virtio device. src/vmm/virtio_devs.c runs any device
 * through this table without knowing its kind: it gives each device an MMIO
 * window, a GSI and its irqfd, one ioeventfd per queue, a lock, and puts the
 * device's own fds into the VMM thread's event loop. Everything else (the
 * device model, its config, metrics, backend fds and state) stays in the
 * device's own files. Adding a device kind: write its ops and create
 * function, list it below, and create it from its config in the builder. */
#ifndef EMBER_DEVICES_DEVICE_H
#define EMBER_DEVICES_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mmds/config.h"
#include "mmds/http.h"
#include "util/err.h"
#include "virtio/mmio.h"
#include "guest/guest_mem.h"
#include "mmds/metrics.h"
#include "util/metrics.h"

/* What the VM offers a device being created. */
struct device_env {
	const struct guest_mem *gm;
	/* Interrupt and queue-notify hooks into the device's slot. */
	struct virtio_mmio_hooks hooks;
	/* Where the device registers its counter set; NULL: it counts
	 * privately. */
	struct metrics_devices *metrics;
	/* The "mmds" group, for network devices' MMDS stacks (or NULL). */
	struct mmds_metrics *mmds_metrics;
	/* The MMDS data store (owned by the VMM thread) and mmds-config, for
	 * network devices; NULL when MMDS is not configured. */
	struct mmds *mmds;
	const struct mmds_config *mmds_cfg;
};

/* An fd of the device's own for the VMM thread to watch. */
struct device_event {
	int fd;
	uint32_t events; /* EPOLLIN, EPOLLET, ... */
	void (*handle)(void *dev);
};

/* Up to this many fds of its own per device (beyond its queue ioeventfds). */
#define DEVICE_MAX_EVENTS 8

/* When a kind's request may run (the same bits as vmm/routes.h's). */
#define DEVICE_BEFORE_START 1u
#define DEVICE_AFTER_START 2u

enum device_body {
	DEVICE_BODY_NONE,     /* no body is read */
	DEVICE_BODY_JSON,     /* a JSON object, required */
	DEVICE_BODY_OPTIONAL, /* a JSON object, or no body at all */
};

/* A request of a kind's own beyond PUT /<key>, as GET /balloon/statistics
 * or PATCH /balloon: the API thread parses its body (parse), the VMM thread
 * runs it on the kind's config before InstanceStart (run_config) or on the
 * device after it (run). Messages are whole: Firecracker's prefix ("Balloon
 * update error: ...") is the kind's to write, since it differs by request. */
struct device_request {
	const char *method; /* "GET" or "PATCH" */
	const char *path;   /* below /<key>: "" or "/statistics" */
	unsigned when;	    /* DEVICE_BEFORE_START and/or DEVICE_AFTER_START */
	enum device_body body;
	/* The body (NULL if none) into a new *arg (may stay NULL); -1 and e
	 * set if it is refused. NULL: no argument. */
	int (*parse)(json_t *j, void **arg, ember_err *e);
	void (*free_arg)(void *arg);
	/* Before start, on the kind's config (NULL: none configured). *out
	 * is the 200 body, or stays NULL for a 204. -1 and e set on failure. */
	int (*run_config)(const void *cfg, const void *arg, json_t **out, ember_err *e);
	/* After start, on the device (NULL: the VM has none), under its lock. */
	int (*run)(void *dev, const void *arg, json_t **out, ember_err *e);
};

/* How a kind is configured when it has a config-file section, GET
 * /vm/config key and API route (PUT /<key>, before boot) of its own, one
 * device per VM, as Firecracker's entropy, vsock and balloon devices. The
 * VMM then needs no line of its own for the kind: the config file, the
 * API, GET /vm/config and the builder all go through this table. */
struct device_config_ops {
	const char *key; /* "entropy" */
	/* A new config from its JSON object; -1 and e set if it is refused. */
	int (*parse)(json_t *j, void **cfg, ember_err *e);
	void (*free)(void *cfg);
	json_t *(*to_json)(const void *cfg);
	/* NULL, or whether cfg fits a VM of mem_size_mib: -1 with e set (whole
	 * message) if not. mem_changed: the check is for a new machine-config
	 * (else for a new device config). */
	int (*check_mem)(const void *cfg, uint64_t mem_size_mib, bool mem_changed, ember_err *e);
	/* NULL, or run on the VMM thread when PUT /<key> is about to take cfg
	 * in place of old (NULL if none): what the kind must hold from the
	 * PUT on, as Firecracker (vsock binds uds_path). -1 and e set (whole
	 * message) refuse the PUT, old still in place. free releases it. */
	int (*acquire)(void *cfg, void *old, ember_err *e);
	/* The kind's requests beyond PUT /<key>, ended by one with a NULL
	 * method; NULL for none. */
	const struct device_request *requests;
};

/* Every callback but create and destroy runs under the device's lock,
 * which also serialises the vCPU threads' register accesses. */
struct device_ops {
	const char *kind; /* "block", "net": for messages */
	/* Its per-device counter set ("<name>_<id>", summed into "<name>"). */
	const struct metrics_group *metrics_group;
	/* NULL for kinds the VMM configures by its own rules (drives and
	 * network interfaces: lists with ids, a root drive, MMDS). */
	const struct device_config_ops *config;
	/* cfg is the kind's config struct (struct drive_config, ...). */
	int (*create)(const void *cfg, const struct device_env *env, void **dev, ember_err *e);
	void (*destroy)(void *dev);
	struct virtio_mmio *(*mmio)(void *dev);
	const char *(*id)(const void *dev);
	/* The guest notified queue `queue` (its ioeventfd fired). */
	void (*queue_event)(void *dev, unsigned queue);
	/* The device's own fds (fd -1 entries are skipped); returns how many. */
	size_t (*events)(void *dev, struct device_event *out, size_t max);
	/* Its entry in GET /vm/config. */
	json_t *(*config_json)(const void *dev);
	/* PATCH on a running device, with the kind's parsed patch; NULL if the
	 * kind has none. */
	int (*patch)(void *dev, const void *patch, ember_err *e);
	/* Snapshots (docs/snapshot-format.md). The virtio transport and its
	 * queues are saved and restored by the VMM (vmm/virtio_devs.c); these
	 * hooks carry only what the kind keeps besides.
	 * save: on the VMM thread, the VM paused (no vCPU runs), before guest
	 * memory is written out. First finish whatever the device has in
	 * flight into guest memory (completions pushed to the used ring, the
	 * driver interrupted), so the memory file holds it; then set *state to
	 * a JSON object of the kind's own state ({} if none).
	 * restore: on a device just created from the same config (a restore
	 * rebuilds every device from the saved VM config, with any overrides
	 * such as network_overrides applied), after its transport state has
	 * been restored and, if the driver had set DRIVER_OK, activate called
	 * again. Check every field (the file is untrusted, even checksummed);
	 * -1 and e set fail the whole load, which then destroys the VM. What
	 * the driver must learn of the restore is sent from here (vsock's
	 * transport-reset event, for instance); its interrupt is held back
	 * until the irqchip and vCPU state are restored (which would
	 * overwrite it), then raised before the vCPUs run.
	 * A kind with save NULL cannot be snapshotted: PUT /snapshot/create
	 * refuses while such a device exists, as Firecracker. */
	int (*save)(void *dev, json_t **state, ember_err *e);
	int (*restore)(void *dev, json_t *state, ember_err *e);
};

/* The device kinds: each is listed here and in device_kinds (device.c). */
extern const struct device_ops block_device_ops;
extern const struct device_ops net_device_ops;
extern const struct device_ops entropy_device_ops;
extern const struct device_ops vsock_device_ops;
extern const struct device_ops balloon_device_ops;
/* Every kind, NULL-terminated: their metrics groups are in every flush. */
extern const struct device_ops *const device_kinds[];
/* The kind configured by section/route `key`, or NULL. */
const struct device_ops *device_kind_by_key(const char *key);

#endif
