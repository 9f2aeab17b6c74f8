/* The VM's virtio-mmio devices, of any kind (devices/device.h): one 4 KiB
 * window each from X86_VIRTIO_MMIO_START, GSIs from 5 up. Each device has
 * one lock, taken around its register accesses (vCPU threads) and its
 * queue, completion and timer work (the VMM thread). Guest notifications
 * arrive on an ioeventfd per queue, interrupts leave through an irqfd. */
#ifndef EMBER_VIRTIO_DEVS_H
#define EMBER_VIRTIO_DEVS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/acpi.h"
#include "devices/device.h"
#include "util/event_loop.h"
#include "guest/io_bus.h"
#include "vmm/metrics.h"
#include "vmm/vm.h"

/* GSIs 5..20; the IOAPIC has 24 pins and the legacy ones stay free. */
#define VIRTIO_DEVS_MAX 16
#define VIRTIO_FIRST_GSI 5

struct virtio_slot;

/* An fd handler's context: the slot and what to call under its lock. */
struct virtio_slot_event {
	struct virtio_slot *slot;
	int fd;
	unsigned queue;		  /* for a queue's ioeventfd */
	void (*handle)(void *dev); /* NULL for a queue's ioeventfd */
	uint32_t events;
};

struct virtio_slot {
	pthread_mutex_t lock;
	const struct device_ops *ops;
	void *dev;
	struct virtio_mmio *mmio; /* the device's register file */
	struct metrics *metrics;
	uint64_t base;
	uint32_t gsi;
	int irq_fd;
	/* During a restore: interrupts are held back (irq_held) until the
	 * irqchip and vCPU state are in (virtio_devs_restore_done), which
	 * would overwrite an interrupt raised before them. */
	bool restoring, irq_held;
	unsigned nr_queues;
	int notify_fd[VIRTIO_MMIO_MAX_QUEUES]; /* one ioeventfd per queue */
	/* The queues' ioeventfds, then the device's own fds. */
	struct virtio_slot_event ev[VIRTIO_MMIO_MAX_QUEUES + DEVICE_MAX_EVENTS];
	size_t nr_ev;
};

struct virtio_devs {
	struct virtio_slot slot[VIRTIO_DEVS_MAX];
	size_t n;
};

void virtio_devs_init(struct virtio_devs *d);
/* Creates a device of kind `ops` from its config `cfg` in the next slot,
 * with its irqfd, queue ioeventfds and MMIO window. env's hooks are set
 * here; its other fields are the caller's. metrics (or NULL) counts the
 * device's interrupts. */
int virtio_devs_add(struct virtio_devs *d, struct vm *vm, struct io_bus *mmio,
		    struct metrics *metrics, const struct device_ops *ops, const void *cfg,
		    struct device_env env, ember_err *e);
/* The device of this kind and id, or NULL. */
struct virtio_slot *virtio_devs_find(struct virtio_devs *d, const struct device_ops *ops,
				     const char *id);
/* The first device of this kind, or NULL. */
struct virtio_slot *virtio_devs_find_kind(struct virtio_devs *d, const struct device_ops *ops);
/* A kind's own request (device_request.run) on the device of slot s (NULL:
 * the VM has none), under its lock. */
int virtio_slot_request(struct virtio_slot *s, const struct device_request *r, const void *arg,
			json_t **out, ember_err *e);
/* ops->patch on the device, under its lock. */
int virtio_slot_patch(struct virtio_slot *s, const void *patch, ember_err *e);
/* GET /vm/config's list of this kind, from the live devices. */
json_t *virtio_devs_json(struct virtio_devs *d, const struct device_ops *ops);
/* How many fds virtio_devs_listen adds to an event loop. */
size_t virtio_devs_nr_fds(const struct virtio_devs *d);
/* Puts every device's fds into the VMM thread's event loop. */
int virtio_devs_listen(struct virtio_devs *d, struct event_loop *loop, ember_err *e);
/* " virtio_mmio.device=4K@0x...:5 ..." for every device, appended to buf. */
int virtio_devs_cmdline(const struct virtio_devs *d, char *buf, size_t size, ember_err *e);
/* The devices for the ACPI DSDT; returns how many. */
size_t virtio_devs_acpi(const struct virtio_devs *d, struct acpi_mmio_dev *out, size_t max);
/* Snapshots: every device's transport, queues and own state (its
 * device_ops hooks), in slot order, each named by kind and id. restore
 * takes a state saved from a VM with the same devices in the same order. */
json_t *virtio_devs_save(struct virtio_devs *d, ember_err *e);
int virtio_devs_restore(struct virtio_devs *d, json_t *state, ember_err *e);
/* After the irqchip and the vCPUs are restored: raises the interrupts the
 * devices' restore hooks raised (vsock's transport reset). */
void virtio_devs_restore_done(struct virtio_devs *d);
/* -1 (Firecracker's words) if some device's kind has no save/restore. */
int virtio_devs_snapshottable(const struct virtio_devs *d, ember_err *e);
void virtio_devs_destroy(struct virtio_devs *d);

#endif
