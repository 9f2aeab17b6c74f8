/* The fake virtio driver of the device tests (fake_driver.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "fake_driver.h"
#include "fake_mmio.h"

void fake_put16(const struct guest_mem *gm, uint64_t gpa, uint16_t v)
{
	assert_int_equal(gm_write(gm, gpa, &v, 2), 0);
}

uint16_t fake_get16(const struct guest_mem *gm, uint64_t gpa)
{
	uint16_t v;
	assert_int_equal(gm_read(gm, gpa, &v, 2), 0);
	return v;
}

uint32_t fake_get32(const struct guest_mem *gm, uint64_t gpa)
{
	uint32_t v;
	assert_int_equal(gm_read(gm, gpa, &v, 4), 0);
	return v;
}

void fake_desc(const struct guest_mem *gm, uint64_t table, uint16_t i, uint64_t addr,
	       uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t d[16];
	fake_desc_encode(d, addr, len, flags, next);
	assert_int_equal(gm_write(gm, table + 16ULL * i, d, 16), 0);
}

void fake_vq_init(struct fake_vq *q, const struct guest_mem *gm, uint64_t base, uint16_t size)
{
	*q = (struct fake_vq){.gm = gm, .desc = base, .avail = base + 0x1000,
			      .used = base + 0x2000, .size = size};
	void *rings = gm_ptr(gm, base, FAKE_VQ_SPAN);
	assert_non_null(rings);
	memset(rings, 0, FAKE_VQ_SPAN);
}

uint16_t fake_vq_chain(struct fake_vq *q, const struct fake_buf *bufs, unsigned n)
{
	uint16_t head = q->next_desc;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % q->size);
		uint16_t next = (uint16_t)((head + i + 1) % q->size);
		uint16_t flags = (uint16_t)((bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		fake_desc(q->gm, q->desc, idx, bufs[i].gpa, bufs[i].len, flags, next);
	}
	q->next_desc = (uint16_t)((head + n) % q->size);
	return head;
}

void fake_vq_push(struct fake_vq *q, uint16_t head)
{
	fake_put16(q->gm, q->avail + 4 + 2 * (q->avail_idx % q->size), head);
	q->avail_idx++;
}

void fake_vq_publish(const struct fake_vq *q)
{
	fake_put16(q->gm, q->avail + 2, q->avail_idx);
}

void fake_vq_offer(struct fake_vq *q, uint16_t head)
{
	fake_vq_push(q, head);
	fake_vq_publish(q);
}

uint16_t fake_vq_add(struct fake_vq *q, const struct fake_buf *bufs, unsigned n)
{
	uint16_t head = fake_vq_chain(q, bufs, n);
	fake_vq_offer(q, head);
	return head;
}

uint16_t fake_vq_used_idx(const struct fake_vq *q)
{
	return fake_get16(q->gm, q->used + 2);
}

void fake_vq_used_elem(const struct fake_vq *q, uint16_t slot, uint32_t *id, uint32_t *len)
{
	*id = fake_get32(q->gm, q->used + 4 + 8 * (slot % q->size));
	*len = fake_get32(q->gm, q->used + 8 + 8 * (slot % q->size));
}

uint32_t fake_vq_used_len(const struct fake_vq *q, uint16_t slot)
{
	return fake_get32(q->gm, q->used + 8 + 8 * (slot % q->size));
}

void fake_vq_set_used_event(const struct fake_vq *q, uint16_t v)
{
	fake_put16(q->gm, q->avail + 4 + 2 * q->size, v);
}

uint16_t fake_vq_avail_event(const struct fake_vq *q)
{
	return fake_get16(q->gm, q->used + 4 + 8 * q->size);
}

void fake_mmio_queue(struct virtio_mmio *m, unsigned index, const struct fake_vq *q)
{
	mmio_queue(m, index, q->size, q->desc, q->avail, q->used);
}

void fake_mmio_driver_ok(struct virtio_mmio *m)
{
	mmio_add_status(m, VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(mmio_r32(m, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
}
