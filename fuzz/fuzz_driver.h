/* Shared by the virtio fuzz targets: the input read as a script, a fake
 * guest memory sized exactly (so ASan sees any access past it), and a fake
 * driver that programs the virtio-mmio registers and lays descriptor
 * chains and rings in guest memory the way Linux does, with every number
 * taken from the input.
 *
 * Script ops (one byte each, then their arguments) are decoded by
 * fz_driver_op(); device-specific ops are the target's. The seed generator
 * (fuzz/gen_seeds.py) writes the same format. */
#ifndef EMBER_FUZZ_DRIVER_H
#define EMBER_FUZZ_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/mmio.h"
#include "guest/guest_mem.h"

/* Register accesses as the unit tests' fake driver makes them. */
#include "../tests/unit/fake_mmio.h"

/* The input, consumed front to back; past its end everything reads 0. */
struct fz {
	const uint8_t *p;
	size_t len, off;
};

static inline bool fz_more(const struct fz *f)
{
	return f->off < f->len;
}

static inline uint8_t fz_u8(struct fz *f)
{
	return f->off < f->len ? f->p[f->off++] : 0;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t lo = fz_u8(f);
	return (uint16_t)(lo | fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint32_t lo = fz_u16(f);
	return lo | (uint32_t)fz_u16(f) << 16;
}

static inline uint64_t fz_u64(struct fz *f)
{
	uint64_t lo = fz_u32(f);
	return lo | (uint64_t)fz_u32(f) << 32;
}

/* Up to max bytes of the input, without copying. */
static inline size_t fz_bytes(struct fz *f, const uint8_t **out, size_t max)
{
	size_t n = f->len - f->off < max ? f->len - f->off : max;
	*out = f->p + f->off;
	f->off += n;
	return n;
}

/* Guest memory: FZ_LOW bytes at 0, then the MMIO gap, then FZ_HIGH bytes
 * at 4 GiB, so chains can also cross or miss a region boundary. */
#define FZ_LOW 0x10000ULL
#define FZ_HIGH 0x4000ULL
#define FZ_HIGH_GPA (1ULL << 32)
/* Where the driver puts queue q: desc, avail and used rings. */
#define FZ_RING(q) (0x1000ULL + (uint64_t)(q) * 0x2000)
#define FZ_AVAIL_OFF 0x1000
#define FZ_USED_OFF 0x1400
/* Buffers and indirect tables are handed out from here, wrapping. */
#define FZ_DATA 0x8000ULL

struct fz_mem {
	uint8_t *host;
	struct guest_mem gm;
};

static inline void fz_mem_init(struct fz_mem *m)
{
	m->host = calloc(1, FZ_LOW + FZ_HIGH);
	if (!m->host)
		abort();
	gm_init_from(&m->gm, m->host, FZ_LOW + FZ_HIGH, FZ_LOW);
}

static inline void fz_mem_free(struct fz_mem *m)
{
	free(m->host);
}

/* A guest-physical address: mostly inside memory, sometimes at or past
 * its edges, sometimes anything at all. */
static inline uint64_t fz_gpa(struct fz *f)
{
	uint8_t sel = fz_u8(f);
	switch (sel & 3) {
	case 0:
	case 1:
		return fz_u16(f);
	case 2:
		return FZ_HIGH_GPA + (fz_u16(f) & 0x7fff);
	default:
		return fz_u64(f);
	}
}

/* The fake driver of one device. */
struct fz_driver {
	struct virtio_mmio *m;
	const struct guest_mem *gm;
	uint16_t next_desc[VIRTIO_MMIO_MAX_QUEUES];
	uint64_t data; /* next free byte of the data area */
};

/* Linux's probe: reset, ACKNOWLEDGE, DRIVER, accept the offered features
 * masked by `mask`, FEATURES_OK, set up every queue with 2^size_log2
 * entries (capped at its maximum), DRIVER_OK. */
static inline void fz_bring_up(struct fz_driver *d, uint64_t mask, unsigned size_log2)
{
	struct virtio_mmio *m = d->m;
	mmio_w32(m, VIRTIO_MMIO_STATUS, 0);
	mmio_negotiate(m, mask);
	for (unsigned q = 0; q < m->ops->nr_queues && q < 2; q++) {
		mmio_w32(m, VIRTIO_MMIO_QUEUE_SEL, q);
		uint32_t max = mmio_r32(m, VIRTIO_MMIO_QUEUE_NUM_MAX);
		uint32_t num = 1u << (size_log2 % 9);
		mmio_queue(m, q, num < max ? num : max, FZ_RING(q), FZ_RING(q) + FZ_AVAIL_OFF,
			   FZ_RING(q) + FZ_USED_OFF);
		d->next_desc[q] = 0;
	}
	mmio_add_status(m, VIRTIO_STATUS_DRIVER_OK);
}

/* Writes descriptor i of the table at `table` (nothing if it is not in
 * guest memory: the driver may have pointed the queue anywhere). */
static inline void fz_desc(const struct guest_mem *gm, uint64_t table, uint16_t i, uint64_t addr,
			   uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t d[16];
	fake_desc_encode(d, addr, len, flags, next);
	gm_write(gm, table + 16ULL * i, d, 16);
}

/* Puts head on the available ring of queue q and publishes it. */
static inline void fz_offer(struct fz_driver *d, unsigned q, uint16_t head)
{
	struct virtq *vq = virtio_mmio_queue(d->m, q);
	if (!vq || !vq->size)
		return;
	uint16_t idx;
	if (gm_read(d->gm, vq->avail + 2, &idx, 2))
		return;
	gm_write(d->gm, vq->avail + 4 + 2ULL * (idx % vq->size), &head, 2);
	idx++;
	gm_write(d->gm, vq->avail + 2, &idx, 2);
}

/* A buffer of len bytes in the data area (wrapping). */
static inline uint64_t fz_alloc(struct fz_driver *d, uint32_t len)
{
	uint64_t room = FZ_LOW - FZ_DATA;
	if (len > room)
		return FZ_DATA;
	if (d->data < FZ_DATA || d->data + len > FZ_LOW)
		d->data = FZ_DATA;
	uint64_t at = d->data;
	d->data += len;
	return at;
}

#define FZ_MAX_CHAIN 16

/* A chain of 1..FZ_MAX_CHAIN buffers for queue q, then offered:
 *   u8 q_and_n: queue (bit 7; fz_chain_on: the caller's q), buffers - 1
 *     (low 4 bits), indirect (bit 4)
 *   per buffer: u8 flags (bit 0 device-writable, bit 1 filled from the
 *     input, bit 2 at a fuzzed address), u16 len, [gpa], [len bytes]. */
static inline void fz_chain_on(struct fz_driver *d, struct fz *f, unsigned q, uint8_t c)
{
	unsigned n = (c & 15) + 1;
	bool indirect = c & 16;
	struct virtq *vq = virtio_mmio_queue(d->m, q);
	if (!vq || !vq->size)
		return;
	uint64_t table = indirect ? fz_alloc(d, 16 * n) : vq->desc;
	uint16_t first = indirect ? 0 : d->next_desc[q] % vq->size;
	uint16_t i = first;
	for (unsigned k = 0; k < n; k++) {
		uint8_t fl = fz_u8(f);
		uint32_t len = fz_u16(f);
		uint64_t gpa = fl & 4 ? fz_gpa(f) : fz_alloc(d, len);
		if (fl & 2) {
			const uint8_t *src;
			size_t got = fz_bytes(f, &src, len);
			gm_write(d->gm, gpa, src, got);
		}
		uint16_t next = indirect ? (uint16_t)(i + 1) : (uint16_t)((i + 1) % vq->size);
		uint16_t flags = (fl & 1 ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
		fz_desc(d->gm, table, i, gpa, len, flags, next);
		i = next;
	}
	if (indirect) {
		uint16_t head = d->next_desc[q]++ % vq->size;
		fz_desc(d->gm, vq->desc, head, table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
		fz_offer(d, q, head);
	} else {
		d->next_desc[q] = i;
		fz_offer(d, q, first);
	}
}

static inline void fz_chain(struct fz_driver *d, struct fz *f)
{
	uint8_t c = fz_u8(f);
	fz_chain_on(d, f, c >> 7, c);
}

/* The generic ops; returns false if op is not one of them. */
enum {
	FZ_OP_WRITE = 0,    /* u16 offset, u8 size, u64 value: a register write */
	FZ_OP_READ = 1,	    /* u16 offset, u8 size: a register read */
	FZ_OP_MEM = 2,	    /* gpa, u8 n, n bytes: the guest writes memory */
	FZ_OP_DESC = 3,	    /* u8 q, u16 i, gpa, u32 len, u16 flags, u16 next */
	FZ_OP_OFFER = 4,    /* u8 q, u16 head */
	FZ_OP_CHAIN = 5,    /* see fz_chain */
	FZ_OP_BRING_UP = 6, /* u64 feature mask, u8 log2 queue size */
	FZ_OP_DEVICE = 7,   /* 7 and up: the target's own */
};

static inline bool fz_driver_op(struct fz_driver *d, uint8_t op, struct fz *f)
{
	switch (op) {
	case FZ_OP_WRITE:
	case FZ_OP_READ: {
		/* Offsets past the page and odd sizes are the transport's to refuse. */
		uint64_t off = fz_u16(f) & 0x1fff;
		uint8_t sz = fz_u8(f);
		uint32_t len = sz & 0x80 ? sz & 0xf : 1u << (sz & 3);
		uint8_t b[16] = {0};
		if (op == FZ_OP_WRITE) {
			uint64_t v = fz_u64(f);
			memcpy(b, &v, 8);
			virtio_mmio_write(d->m, off, b, len);
		} else {
			virtio_mmio_read(d->m, off, b, len);
		}
		return true;
	}
	case FZ_OP_MEM: {
		uint64_t gpa = fz_gpa(f);
		const uint8_t *src;
		size_t n = fz_bytes(f, &src, fz_u8(f));
		gm_write(d->gm, gpa, src, n);
		return true;
	}
	case FZ_OP_DESC: {
		unsigned q = fz_u8(f) & 1;
		uint16_t i = fz_u16(f);
		uint64_t gpa = fz_gpa(f);
		uint32_t len = fz_u32(f);
		uint16_t flags = fz_u16(f), next = fz_u16(f);
		struct virtq *vq = virtio_mmio_queue(d->m, q);
		if (vq)
			fz_desc(d->gm, vq->desc, i, gpa, len, flags, next);
		return true;
	}
	case FZ_OP_OFFER: {
		unsigned q = fz_u8(f) & 1;
		fz_offer(d, q, fz_u16(f));
		return true;
	}
	case FZ_OP_CHAIN:
		fz_chain(d, f);
		return true;
	case FZ_OP_BRING_UP: {
		uint64_t mask = fz_u64(f);
		fz_bring_up(d, mask, fz_u8(f));
		return true;
	}
	}
	return false;
}

#endif
