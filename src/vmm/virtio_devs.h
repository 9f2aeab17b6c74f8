/* The VM's virtio-mmio devices: one 4 KiB window each from
 * X86_VIRTIO_MMIO_START, GSIs from 5 up. Each device has one lock, taken
 * around its register accesses (vCPU threads) and its queue, completion and
 * timer work (the VMM thread). Guest notifications arrive on an ioeventfd
 * per queue, interrupts leave through an irqfd. */
#ifndef EMBER_VIRTIO_DEVS_H
#define EMBER_VIRTIO_DEVS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/acpi.h"
#include "devices/drive_config.h"
#include "devices/net_config.h"
#include "devices/virtio_block.h"
#include "devices/virtio_net.h"
#include "mmds/config.h"
#include "mmds/http.h"
#include "mmds/netstack.h"
#include "vmm/event_loop.h"
#include "vmm/io_bus.h"
#include "vmm/metrics.h"
#include "vmm/vm.h"

/* GSIs 5..20; the IOAPIC has 24 pins and the legacy ones stay free. */
#define VIRTIO_DEVS_MAX 16
#define VIRTIO_FIRST_GSI 5

enum virtio_kind { VIRTIO_KIND_BLOCK, VIRTIO_KIND_NET };

struct virtio_slot {
	pthread_mutex_t lock;
	enum virtio_kind kind;
	struct virtio_mmio *mmio; /* the device's register file */
	struct virtio_block *blk;
	struct virtio_net *net;
	struct metrics *metrics;
	char id[65];
	uint64_t base;
	uint32_t gsi;
	int irq_fd;
	int notify_fd[2]; /* one ioeventfd per queue (block: one queue) */
	bool registered; /* holds a reference on its metrics set */
	/* MMDS on this interface (listed in mmds-config), else NULL/-1. */
	struct mmds_stack *mmds_stack;
	uint8_t *mmds_frame; /* one frame from the stack, on its way to the guest */
	int mmds_timer_fd;   /* the stack's next retransmission */
	bool mmds_blocked;   /* frames wait for room in the device's injection queue */
};

struct virtio_devs {
	struct virtio_slot slot[VIRTIO_DEVS_MAX];
	size_t n;
};

void virtio_devs_init(struct virtio_devs *d);
/* Creates the block device for a drive, with its irqfd, ioeventfd and MMIO
 * window. */
int virtio_devs_add_block(struct virtio_devs *d, struct vm *vm, struct io_bus *mmio,
			  const struct drive_config *drive, struct metrics *metrics, ember_err *e);
/* Creates the network device for an interface (opening its TAP). */
/* With mmds_cfg listing the interface, the guest reaches MMDS (the data in
 * *mmds, owned by the VMM thread) through it. */
int virtio_devs_add_net(struct virtio_devs *d, struct vm *vm, struct io_bus *mmio,
			const struct net_config *net, struct mmds *mmds,
			const struct mmds_config *mmds_cfg, struct metrics *metrics, ember_err *e);
struct virtio_slot *virtio_devs_find_net(struct virtio_devs *d, const char *iface_id);
/* PATCH /network-interfaces/{id} on a running interface. */
int virtio_devs_patch_net(struct virtio_devs *d, const struct net_patch *p, ember_err *e);
/* GET /vm/config's "network-interfaces", from the live devices. */
json_t *virtio_devs_net_json(struct virtio_devs *d);
/* Puts every device's fds into the VMM thread's event loop. */
int virtio_devs_listen(struct virtio_devs *d, struct event_loop *loop, ember_err *e);
/* " virtio_mmio.device=4K@0x...:5 ..." for every device, appended to buf. */
int virtio_devs_cmdline(const struct virtio_devs *d, char *buf, size_t size, ember_err *e);
/* The devices for the ACPI DSDT; returns how many. */
size_t virtio_devs_acpi(const struct virtio_devs *d, struct acpi_mmio_dev *out, size_t max);
struct virtio_slot *virtio_devs_find_block(struct virtio_devs *d, const char *drive_id);
/* PATCH /drives/{id} on a running drive. */
int virtio_devs_patch_block(struct virtio_devs *d, const struct drive_patch *p, ember_err *e);
/* GET /vm/config's "drives", from the live devices. */
json_t *virtio_devs_drives_json(struct virtio_devs *d);
void virtio_devs_destroy(struct virtio_devs *d);

#endif
