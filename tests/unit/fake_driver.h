/* The driver side of split virtqueues (virtio 1.1, 2.7) for the device
 * tests: a fake driver lays a queue's rings out in fake guest memory, puts
 * descriptor chains in its table, offers them on the available ring and
 * reads the used ring back; and the end of Linux's probe through the
 * virtio-mmio registers (fake_mmio.h has the rest). Every guest-memory access asserts that it succeeded (cmocka). */
#ifndef EMBER_TEST_FAKE_DRIVER_H
#define EMBER_TEST_FAKE_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/guest_mem.h"
#include "virtio/mmio.h"

/* Little-endian loads and stores in guest memory. */
void fake_put16(const struct guest_mem *gm, uint64_t gpa, uint16_t v);
uint16_t fake_get16(const struct guest_mem *gm, uint64_t gpa);
uint32_t fake_get32(const struct guest_mem *gm, uint64_t gpa);

/* Descriptor i of the table at `table` (the queue's, or an indirect one). */
void fake_desc(const struct guest_mem *gm, uint64_t table, uint16_t i, uint64_t addr,
	       uint32_t len, uint16_t flags, uint16_t next);

/* One queue as the driver sees it. */
struct fake_vq {
	const struct guest_mem *gm;
	uint64_t desc, avail, used; /* the rings' guest-physical addresses */
	uint16_t size;
	uint16_t next_desc; /* where fake_vq_chain starts the next chain */
	uint16_t avail_idx; /* the driver's available index */
	uint16_t used_seen; /* used entries the test has taken */
};

/* The usual layout: the descriptor table at base, the available ring at
 * base + 0x1000, the used ring at base + 0x2000. The rings are zeroed. */
#define FAKE_VQ_SPAN 0x3000
void fake_vq_init(struct fake_vq *q, const struct guest_mem *gm, uint64_t base, uint16_t size);

/* One buffer of a chain. */
struct fake_buf {
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/* Lays a chain of n buffers in consecutive descriptors from q->next_desc
 * (wrapping around the table) and returns its head; not yet offered. */
uint16_t fake_vq_chain(struct fake_vq *q, const struct fake_buf *bufs, unsigned n);
/* Puts head in the next slot of the available ring, without publishing. */
void fake_vq_push(struct fake_vq *q, uint16_t head);
/* Publishes q->avail_idx as the available index. */
void fake_vq_publish(const struct fake_vq *q);
/* Push and publish. */
void fake_vq_offer(struct fake_vq *q, uint16_t head);
/* Chain and offer; returns the head. */
uint16_t fake_vq_add(struct fake_vq *q, const struct fake_buf *bufs, unsigned n);

uint16_t fake_vq_used_idx(const struct fake_vq *q);
/* Used ring entry `slot` (mod size): the chain's head and the length. */
void fake_vq_used_elem(const struct fake_vq *q, uint16_t slot, uint32_t *id, uint32_t *len);
uint32_t fake_vq_used_len(const struct fake_vq *q, uint16_t slot);

/* VIRTIO_F_EVENT_IDX: used_event at the end of the available ring,
 * avail_event at the end of the used ring. */
void fake_vq_set_used_event(const struct fake_vq *q, uint16_t v);
uint16_t fake_vq_avail_event(const struct fake_vq *q);

/* Linux's probe, with fake_mmio.h's mmio_negotiate() first: queue `index`
 * at q's rings and size, then READY. */
void fake_mmio_queue(struct virtio_mmio *m, unsigned index, const struct fake_vq *q);
/* DRIVER_OK, and asserts that the device took it without NEEDS_RESET. */
void fake_mmio_driver_ok(struct virtio_mmio *m);

#endif
