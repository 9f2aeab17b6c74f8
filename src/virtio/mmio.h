/* The virtio-mmio transport, version 2 (virtio 1.1 section 4.2): the
 * register file a guest driver programs to discover a device, negotiate
 * features and set up the device's virtqueues.
 *
 * One struct virtio_mmio per device. It owns the device's queues; the device
 * supplies its type, features, config space and activate/reset through
 * struct virtio_dev_ops. The owner wires two hooks: raise_irq (an irqfd
 * write) and queue_notify (QueueNotify written through the register path;
 * with an ioeventfd on QueueNotify, KVM swallows those writes instead).
 *
 * Not locked: the owner serialises every call on one device, register
 * accesses from vCPU threads and the device's own queue work alike (one
 * mutex per device). The ops and hooks are called with that lock held. The
 * interrupt status alone is also atomic, so a later lock-free
 * InterruptStatus/InterruptACK path stays possible. */
#ifndef EMBER_VIRTIO_MMIO_H
#define EMBER_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "virtio/queue.h"
#include "util/err.h"
#include "guest/guest_mem.h"
#include "guest/io_bus.h"

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VERSION 2
#define VIRTIO_MMIO_VENDOR_ID 0 /* as Firecracker */
/* Each device gets one page of MMIO space; config space is what is left. */
#define VIRTIO_MMIO_SIZE 0x1000
#define VIRTIO_MMIO_CONFIG 0x100
#define VIRTIO_MMIO_CONFIG_MAX (VIRTIO_MMIO_SIZE - VIRTIO_MMIO_CONFIG)
#define VIRTIO_MMIO_MAX_QUEUES 8

/* Register offsets. */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION_REG 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID_REG 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_SHM_SEL 0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW 0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH 0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW 0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH 0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING 1
#define VIRTIO_MMIO_INT_CONFIG 2

/* Device status bits (virtio 1.1 section 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Feature bits the transport and queue layer always offer. */
#define VIRTIO_TRANSPORT_FEATURES                                                                \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX) |                          \
	 (1ULL << VIRTIO_F_INDIRECT_DESC))

struct virtio_mmio;

struct virtio_dev_ops {
	uint32_t device_id; /* 2 = block, 1 = net, ... */
	unsigned nr_queues; /* up to VIRTIO_MMIO_MAX_QUEUES */
	uint16_t queue_max_size[VIRTIO_MMIO_MAX_QUEUES]; /* powers of two */
	uint32_t config_size; /* bytes of config space, up to VIRTIO_MMIO_CONFIG_MAX */
	/* Device-type feature bits offered; the transport adds
	 * VIRTIO_TRANSPORT_FEATURES. */
	uint64_t (*features)(void *dev);
	/* Config space access; offset + len <= config_size is already checked,
	 * len is 1, 2, 4 or 8. config_write may be NULL (writes are ignored). */
	void (*config_read)(void *dev, uint32_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(void *dev, uint32_t offset, const uint8_t *data, uint32_t len);
	/* The driver set DRIVER_OK: queues are configured and features
	 * negotiated (virtio_mmio_features). Returning -1 sets
	 * DEVICE_NEEDS_RESET. */
	int (*activate)(void *dev, struct virtio_mmio *m);
	/* The driver reset the device. On return the device must no longer
	 * touch its queues or their guest memory: the transport clears them. */
	void (*reset)(void *dev);
};

struct virtio_mmio_hooks {
	/* Pulse the device's interrupt line (write its irqfd). */
	void (*raise_irq)(void *ctx);
	/* The driver wrote QueueNotify for an existing queue of an activated
	 * device (typically: write the queue's ioeventfd, so both paths end
	 * in the same place). */
	void (*queue_notify)(void *ctx, uint32_t queue);
	void *ctx;
};

/* What a guest did wrong, counted; the first of each kind is logged. */
struct virtio_mmio_stats {
	uint64_t bad_access;	/* wrong size or unaligned register access */
	uint64_t bad_register;	/* no such register, or wrong direction */
	uint64_t queue_rejected; /* queue change while ready, after DRIVER_OK, bad QueueSel */
	uint64_t queue_invalid;	/* QueueReady with a bad size or ring */
	uint64_t status_rejected; /* status write clearing bits or out of order */
	uint64_t features_rejected; /* features written at the wrong time, or FEATURES_OK refused */
	uint64_t config_rejected; /* config access out of bounds or of a bad size */
	uint64_t bad_notify;	/* QueueNotify for a queue that does not exist */
	uint64_t activate_failed; /* DRIVER_OK refused: a bad queue, or the device said no */
};

struct virtio_mmio {
	const struct virtio_dev_ops *ops;
	void *dev;
	const struct guest_mem *gm;
	struct virtio_mmio_hooks hooks;
	struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];

	uint32_t status;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint64_t driver_features;
	bool driver_features_extra; /* nonzero write to a selector past 1 */
	uint32_t queue_failed;	    /* queues whose QueueReady was refused */
	bool activated;
	uint32_t config_generation;
	uint32_t interrupt_status; /* atomic */
	struct virtio_mmio_stats stats;
};

/* Checks ops (queue count and sizes, config size) and sets the device to
 * its power-on state. */
int virtio_mmio_init(struct virtio_mmio *m, const struct virtio_dev_ops *ops, void *dev,
		     const struct guest_mem *gm, const struct virtio_mmio_hooks *hooks,
		     ember_err *e);

/* Register accesses, offset relative to the device's base. */
void virtio_mmio_read(struct virtio_mmio *m, uint64_t offset, uint8_t *data, uint32_t len);
void virtio_mmio_write(struct virtio_mmio *m, uint64_t offset, const uint8_t *data, uint32_t len);
/* The same for io_bus_add(bus, base, VIRTIO_MMIO_SIZE, &virtio_mmio_io_ops, m),
 * for owners that need no lock around them. */
extern const struct io_device_ops virtio_mmio_io_ops;

/* For the device. */
struct virtq *virtio_mmio_queue(struct virtio_mmio *m, unsigned index);
/* The features the driver accepted (valid from FEATURES_OK on). */
uint64_t virtio_mmio_features(const struct virtio_mmio *m);
static inline bool virtio_mmio_has_feature(const struct virtio_mmio *m, unsigned bit)
{
	return bit < 64 && (virtio_mmio_features(m) >> bit) & 1;
}
/* After pushing used buffers on q: interrupts the driver if it wants it.
 * Returns whether it did. */
bool virtio_mmio_signal_used(struct virtio_mmio *m, struct virtq *q);
/* The same for the queues in `mask` (bit i: queue i got used buffers),
 * with one interrupt at most for all of them: a device that serves several
 * queues in one pass interrupts once. */
bool virtio_mmio_signal_used_queues(struct virtio_mmio *m, uint32_t mask);
/* The device changed its config space: bumps ConfigGeneration and sends a
 * configuration change interrupt. */
void virtio_mmio_config_changed(struct virtio_mmio *m);
/* The device cannot go on (a broken queue, a failed backend): sets
 * DEVICE_NEEDS_RESET and, once DRIVER_OK is set, tells the driver with a
 * configuration change interrupt (spec 2.1.2). */
void virtio_mmio_needs_reset(struct virtio_mmio *m);

/* The driver's InterruptStatus read and InterruptACK write (whole aligned
 * words at those offsets): they touch only the atomic interrupt_status, so
 * a caller may serve them without the lock that guards everything else
 * (vmm/virtio_devs.c). Returns false for any other access, done nothing. */
bool virtio_mmio_interrupt_read(struct virtio_mmio *m, uint64_t offset, uint8_t *data,
				uint32_t len);
bool virtio_mmio_interrupt_write(struct virtio_mmio *m, uint64_t offset, const uint8_t *data,
				 uint32_t len);
/* Snapshot state of the transport and its queues (mmio_state.c): registers,
 * negotiated features, each queue's rings and positions. restore checks
 * every value (queue rings against guest memory) and, for an activated
 * device, calls its activate op again; -1 leaves m unchanged unless the
 * device refused activation (m is then not activated). */
json_t *virtio_mmio_save(const struct virtio_mmio *m);
int virtio_mmio_restore(struct virtio_mmio *m, json_t *state, ember_err *e);

/* Writes the kernel command-line fragment
 * "virtio_mmio.device=<size>@<base>:<irq>" to buf. Returns its length, or -1
 * if it does not fit. */
int virtio_mmio_cmdline(char *buf, size_t size, uint64_t base, uint64_t len, uint32_t irq);

#endif
