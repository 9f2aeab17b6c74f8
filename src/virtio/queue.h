/* A split virtqueue (virtio 1.1 section 2.6) as the device sees it.
 *
 * The driver lays the three rings out in guest memory and tells the device
 * where they are through the transport; the device pops descriptor chains
 * from the available ring and pushes them back on the used ring. Everything
 * in guest memory is hostile: every descriptor is copied out once and then
 * checked, every chain is bounded, and every index is range-checked.
 *
 * A queue is not locked; its owner serialises calls (one device thread, or
 * the device's lock). */
#ifndef EMBER_VIRTIO_QUEUE_H
#define EMBER_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/err.h"
#include "vmm/guest_mem.h"

/* Feature bits the queue layer implements (offered by the transport). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* The largest queue the spec allows. */
#define VIRTQ_MAX_SIZE 32768

/* One buffer of a chain: guest-physical, already checked to lie inside guest
 * memory (gm_ptr(gm, gpa, len) is non-NULL). */
struct virtq_seg {
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/* Why a chain or a ring was rejected. */
enum virtq_error {
	VIRTQ_OK = 0,
	/* Ring-level: the queue can no longer be trusted (VIRTQ_BROKEN). */
	VIRTQ_ERR_AVAIL_JUMP,	 /* avail->idx moved by more than the queue size */
	VIRTQ_ERR_HEAD_RANGE,	 /* an available ring entry names no descriptor */
	VIRTQ_ERR_RING_ACCESS,	 /* a ring is not in guest memory any more */
	/* Chain-level: this request is bad (VIRTQ_BAD_CHAIN). */
	VIRTQ_ERR_NEXT_RANGE,	 /* NEXT names a descriptor outside the table */
	VIRTQ_ERR_CHAIN_LONG,	 /* more descriptors than the queue size: a loop */
	VIRTQ_ERR_INDIRECT_OFF,	 /* INDIRECT without VIRTIO_F_INDIRECT_DESC */
	VIRTQ_ERR_INDIRECT_NEST, /* INDIRECT inside an indirect table */
	VIRTQ_ERR_INDIRECT_NEXT, /* INDIRECT together with NEXT */
	VIRTQ_ERR_INDIRECT_LEN,	 /* table length zero or not a multiple of 16 */
	VIRTQ_ERR_INDIRECT_MEM,	 /* table not inside guest memory */
	VIRTQ_ERR_SEG_MEM,	 /* a buffer not inside guest memory */
	VIRTQ_ERR_ORDER,	 /* a device-readable buffer after a writable one */
	VIRTQ_ERR_TOO_MANY_SEGS, /* more buffers than the caller's array holds */
	VIRTQ_ERR_TOTAL_LEN,	 /* readable or writable bytes exceed 4 GiB - 1 */
};

const char *virtq_strerror(enum virtq_error err);

/* What virtq_pop() found. */
enum virtq_pop_result {
	/* Ring unusable (chain->err says why); every further pop says so too
	 * until the queue is reset. The device should set DEVICE_NEEDS_RESET
	 * (virtio_mmio_needs_reset). */
	VIRTQ_BROKEN = -2,
	/* The chain at chain->head is malformed (chain->err says why); it has
	 * been taken off the available ring and has no segments. Fail just this
	 * request with virtq_push(q, gm, chain->head, 0), or treat the driver as
	 * broken and set DEVICE_NEEDS_RESET. */
	VIRTQ_BAD_CHAIN = -1,
	VIRTQ_EMPTY = 0,
	VIRTQ_CHAIN = 1, /* a good chain is in *chain */
};

/* A popped chain. The caller owns the segment array: set segs and max_segs
 * once with virtq_chain_init() and reuse the chain for every pop. Device-
 * readable segments come first: segs[0, nr_read) are readable, segs[nr_read,
 * nr_segs) writable. Zero-length buffers are dropped. */
struct virtq_chain {
	struct virtq_seg *segs;
	uint16_t max_segs;
	uint16_t head; /* give this to virtq_push() */
	uint16_t nr_segs, nr_read;
	uint32_t read_len, write_len; /* bytes in the readable / writable part */
	enum virtq_error err;
};

struct virtq {
	/* Set by the driver through the transport. */
	uint16_t max_size; /* fixed by the device */
	uint16_t size;
	bool ready;
	uint64_t desc, avail, used; /* ring addresses (guest-physical) */
	/* Negotiated features that change how the rings are read. */
	bool event_idx, indirect;
	/* Device-side state. */
	uint16_t last_avail;	 /* next available ring slot to pop */
	uint16_t used_idx;	 /* the used->idx the device has published */
	uint16_t signalled_used; /* used_idx when virtq_should_notify last ran */
	bool broken;
	enum virtq_error broken_err;
};

/* Power-on state of a queue whose device allows max_size entries. */
void virtq_init(struct virtq *q, uint16_t max_size);
/* Back to power-on state (device reset), keeping max_size. */
void virtq_reset(struct virtq *q);
/* Checks the driver's configuration: size a power of two no larger than
 * max_size, each ring aligned (16/2/4) and wholly inside guest memory. The
 * transport calls this when the driver sets QueueReady. */
int virtq_validate(const struct virtq *q, const struct guest_mem *gm, ember_err *e);
/* Sets the ring features from the negotiated feature bits. */
void virtq_set_features(struct virtq *q, uint64_t features);

void virtq_chain_init(struct virtq_chain *c, struct virtq_seg *segs, uint16_t max_segs);

/* Takes the next chain off the available ring (see enum virtq_pop_result).
 * A queue that is not ready is empty. */
enum virtq_pop_result virtq_pop(struct virtq *q, const struct guest_mem *gm,
				struct virtq_chain *chain);
/* Returns a chain to the driver with `len` bytes written into its writable
 * buffers, and publishes it (used->idx) at once. -1 if the queue is not ready
 * or head is out of range. Follow with virtq_should_notify(). */
int virtq_push(struct virtq *q, const struct guest_mem *gm, uint16_t head, uint32_t len);
/* Whether the driver wants an interrupt for what was pushed since the last
 * call (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). */
bool virtq_should_notify(struct virtq *q, const struct guest_mem *gm);

/* Notification suppression, driver to device. While the device is working
 * through the ring it may ask the driver not to notify; before it goes idle
 * it must re-enable notifications (with EVENT_IDX this is what publishes
 * avail_event), and if buffers arrived meanwhile (true) pop again rather
 * than sleep:
 *	for (;;) {
 *		switch (virtq_pop(q, gm, &c)) {
 *		case VIRTQ_EMPTY:
 *			if (virtq_enable_notify(q, gm))
 *				continue;
 *			return;
 *		case VIRTQ_BROKEN: set DEVICE_NEEDS_RESET; return;
 *		case VIRTQ_BAD_CHAIN: virtq_push(q, gm, c.head, 0); break;
 *		case VIRTQ_CHAIN: handle c; virtq_push(q, gm, c.head, written); break;
 *		}
 *	}
 *	then, once: if (virtq_should_notify(q, gm)) raise the interrupt.
 * virtq_enable_notify() is false for a broken or not-ready queue. */
void virtq_disable_notify(struct virtq *q, const struct guest_mem *gm);
bool virtq_enable_notify(struct virtq *q, const struct guest_mem *gm);

/* Copies bytes from the chain's readable part, starting `off` bytes into it,
 * across segment boundaries (virtio 1.x lets the driver split a header over
 * several buffers). -1 if the readable part is shorter than off + len. */
int virtq_chain_read(const struct guest_mem *gm, const struct virtq_chain *c, uint64_t off,
		     void *dst, uint64_t len);
/* The same into the writable part. */
int virtq_chain_write(const struct guest_mem *gm, const struct virtq_chain *c, uint64_t off,
		      const void *src, uint64_t len);
/* Fills iov with host pointers for [off, off + len) of the readable (write
 * false) or writable (write true) part, for preadv/pwritev/io_uring straight
 * into guest memory. Returns the number of iovecs, or -1 if the part is too
 * short or more than max_iov would be needed. */
int virtq_chain_iov(const struct guest_mem *gm, const struct virtq_chain *c, bool write,
		    uint64_t off, uint64_t len, struct iovec *iov, int max_iov);

/* The EVENT_IDX rule: with the index moving from old to new_idx, has it
 * passed event? All arithmetic is modulo 2^16. */
static inline bool virtq_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

#endif
