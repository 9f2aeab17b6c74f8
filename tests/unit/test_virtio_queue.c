/* The split virtqueue, driven by a fake driver that lays its rings out in a
 * fake guest memory, well-behaved first and then hostile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "fake_driver.h"
#include "guest/guest_mem.h"
#include "virtio/queue.h"

#define MEM_SIZE (1 << 20)
#define DESC 0x1000 /* the rings (fake_vq_init) */
#define AVAIL 0x2000
#define USED 0x3000
#define TABLE 0x8000 /* indirect tables */
#define DATA 0x10000

static uint8_t backing[MEM_SIZE] __attribute__((aligned(4096)));

/* The fake driver: its view of the rings, and the device's queue. */
struct drv {
	struct guest_mem gm;
	struct fake_vq vq;
	struct virtq q;
	struct virtq_seg segs[16];
	struct virtq_chain c;
};

/* Descriptor i of the queue's own table. */
static void desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	fake_desc(&d->gm, DESC, i, addr, len, flags, next);
}

static const uint64_t all_features =
	(1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_INDIRECT_DESC) | (1ULL << VIRTIO_F_EVENT_IDX);

static void drv_setup(struct drv *d, uint16_t size, uint64_t features)
{
	memset(backing, 0, sizeof(backing));
	memset(d, 0, sizeof(*d));
	gm_init_from(&d->gm, backing, MEM_SIZE, 1ULL << 31);
	fake_vq_init(&d->vq, &d->gm, DESC, size);
	virtq_init(&d->q, 256);
	d->q.size = size;
	d->q.desc = DESC;
	d->q.avail = AVAIL;
	d->q.used = USED;
	ember_err e;
	assert_int_equal(virtq_validate(&d->q, &d->gm, &e), 0);
	virtq_set_features(&d->q, features);
	d->q.ready = true;
	virtq_chain_init(&d->c, d->segs, 16);
}

static enum virtq_pop_result pop(struct drv *d)
{
	return virtq_pop(&d->q, &d->gm, &d->c);
}

static void validate_rejects_bad_rings(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 256, 0);
	ember_err e;
	static const uint16_t bad_sizes[] = {0, 3, 100, 512};
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		d.q.size = bad_sizes[i];
		assert_int_equal(virtq_validate(&d.q, &d.gm, &e), -1);
		assert_non_null(strstr(e.msg, "power of two"));
	}
	d.q.size = 1;
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), 0);
	d.q.size = 256;

	d.q.desc = DESC + 8;
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), -1);
	assert_non_null(strstr(e.msg, "aligned"));
	d.q.desc = DESC;
	d.q.avail = AVAIL + 1;
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), -1);
	d.q.avail = AVAIL;
	d.q.used = USED + 2;
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), -1);

	/* Every byte of each ring must be guest memory, used_event and
	 * avail_event included; no sum may wrap. */
	d.q.used = MEM_SIZE - 2052; /* 2054 bytes: two too many */
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), -1);
	assert_non_null(strstr(e.msg, "outside guest memory"));
	d.q.used = MEM_SIZE - 2056;
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), 0);
	d.q.used = USED;
	d.q.avail = MEM_SIZE - 516; /* 518 bytes */
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), -1);
	d.q.avail = AVAIL;
	d.q.desc = 0xfffffffffffffff0ULL;
	assert_int_equal(virtq_validate(&d.q, &d.gm, &e), -1);
}

/* A block request as Linux sends it: header, data, status. */
static void normal_chain(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 8, all_features);
	assert_int_equal(pop(&d), VIRTQ_EMPTY);

	uint8_t hdr[16] = {1, 0, 0, 0, 0, 0, 0, 0, 42};
	assert_int_equal(gm_write(&d.gm, DATA, hdr, sizeof(hdr)), 0);
	desc(&d, 5, DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	desc(&d, 2, DATA + 0x1000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 7);
	desc(&d, 7, DATA + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_offer(&d.vq, 5);

	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	assert_int_equal(d.c.head, 5);
	assert_int_equal(d.c.nr_segs, 3);
	assert_int_equal(d.c.nr_read, 1);
	assert_int_equal(d.c.read_len, 16);
	assert_int_equal(d.c.write_len, 513);
	assert_int_equal(d.segs[0].gpa, DATA);
	assert_false(d.segs[0].write);
	assert_int_equal(d.segs[1].gpa, DATA + 0x1000);
	assert_int_equal(d.segs[1].len, 512);
	assert_true(d.segs[1].write);
	assert_true(d.segs[2].write);

	uint8_t got[16];
	assert_int_equal(virtq_chain_read(&d.gm, &d.c, 0, got, 16), 0);
	assert_memory_equal(got, hdr, 16);
	assert_int_equal(virtq_chain_read(&d.gm, &d.c, 8, got, 9), -1);
	struct iovec iov[4];
	assert_int_equal(virtq_chain_iov(&d.gm, &d.c, true, 0, 512, iov, 4), 1);
	assert_ptr_equal(iov[0].iov_base, backing + DATA + 0x1000);
	assert_int_equal(iov[0].iov_len, 512);
	uint8_t status = 0;
	assert_int_equal(virtq_chain_write(&d.gm, &d.c, 512, &status, 1), 0);
	assert_int_equal(virtq_chain_write(&d.gm, &d.c, 513, &status, 1), -1);

	assert_int_equal(virtq_push(&d.q, &d.gm, d.c.head, 513), 0);
	assert_int_equal(fake_vq_used_idx(&d.vq), 1);
	uint32_t id, len;
	fake_vq_used_elem(&d.vq, 0, &id, &len);
	assert_int_equal(id, 5);
	assert_int_equal(len, 513);
	assert_int_equal(pop(&d), VIRTQ_EMPTY);

	/* Heads beyond the queue, or a queue not ready, cannot be pushed. */
	assert_int_equal(virtq_push(&d.q, &d.gm, 8, 0), -1);
	d.q.ready = false;
	assert_int_equal(virtq_push(&d.q, &d.gm, 0, 0), -1);
	fake_vq_offer(&d.vq, 5);
	assert_int_equal(pop(&d), VIRTQ_EMPTY); /* not ready: nothing to pop */
}

/* A header split over two buffers, data and status in one: virtio 1.x
 * allows any layout, and the chain helpers hide it. */
static void any_layout(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 8, all_features);
	uint8_t hdr[16];
	for (int i = 0; i < 16; i++)
		hdr[i] = (uint8_t)i;
	gm_write(&d.gm, DATA, hdr, 8);
	gm_write(&d.gm, DATA + 0x100, hdr + 8, 8);
	desc(&d, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	desc(&d, 1, DATA + 0x100, 8, VIRTQ_DESC_F_NEXT, 2);
	desc(&d, 2, 0xdead0000, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 3); /* empty: dropped */
	desc(&d, 3, DATA + 0x1000, 513, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_offer(&d.vq, 0);
	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	assert_int_equal(d.c.nr_segs, 3);
	assert_int_equal(d.c.nr_read, 2);
	uint8_t got[16];
	assert_int_equal(virtq_chain_read(&d.gm, &d.c, 0, got, 16), 0);
	assert_memory_equal(got, hdr, 16);
	struct iovec iov[2];
	assert_int_equal(virtq_chain_iov(&d.gm, &d.c, false, 4, 8, iov, 2), 2);
	assert_ptr_equal(iov[0].iov_base, backing + DATA + 4);
	assert_int_equal(iov[0].iov_len, 4);
	assert_ptr_equal(iov[1].iov_base, backing + DATA + 0x100);
	assert_int_equal(iov[1].iov_len, 4);
	assert_int_equal(virtq_chain_iov(&d.gm, &d.c, false, 0, 16, iov, 1), -1);
	uint8_t st = 0xaa;
	assert_int_equal(virtq_chain_write(&d.gm, &d.c, 512, &st, 1), 0);
	assert_int_equal(backing[DATA + 0x1000 + 512], 0xaa);
}

static void indirect_chains(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 8, all_features);
	/* A single descriptor pointing at a table of three; its WRITE flag
	 * means nothing. */
	fake_desc(&d.gm, TABLE, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&d.gm, TABLE, 1, DATA + 0x1000, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	fake_desc(&d.gm, TABLE, 2, DATA + 0x3000, 1, VIRTQ_DESC_F_WRITE, 0);
	desc(&d, 3, TABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	fake_vq_offer(&d.vq, 3);
	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	assert_int_equal(d.c.head, 3);
	assert_int_equal(d.c.nr_segs, 3);
	assert_int_equal(d.c.nr_read, 1);
	assert_int_equal(d.c.write_len, 4097);
	assert_int_equal(d.segs[1].gpa, DATA + 0x1000);

	/* Direct descriptors followed by an indirect one (virtio 1.1 2.6.5.3.2). */
	desc(&d, 0, DATA + 0x5000, 32, VIRTQ_DESC_F_NEXT, 6);
	desc(&d, 6, TABLE + 0x100, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	fake_desc(&d.gm, TABLE + 0x100, 0, DATA + 0x6000, 8, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&d.gm, TABLE + 0x100, 1, DATA + 0x7000, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_offer(&d.vq, 0);
	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	assert_int_equal(d.c.nr_segs, 3);
	assert_int_equal(d.c.nr_read, 2);
	assert_int_equal(d.c.read_len, 40);
	assert_int_equal(d.segs[2].gpa, DATA + 0x7000);

	/* Without VIRTIO_F_INDIRECT_DESC the flag is a driver bug. */
	virtq_set_features(&d.q, 1ULL << VIRTIO_F_VERSION_1);
	fake_vq_offer(&d.vq, 3);
	assert_int_equal(pop(&d), VIRTQ_BAD_CHAIN);
	assert_int_equal(d.c.err, VIRTQ_ERR_INDIRECT_OFF);
	assert_int_equal(d.c.head, 3);
	assert_int_equal(d.c.nr_segs, 0);
}

/* Offers a chain at head 0 and expects it refused for err. A bad chain is
 * off the ring, and the queue goes on working. */
static void expect_bad(struct drv *d, enum virtq_error err)
{
	fake_vq_offer(&d->vq, 0);
	assert_int_equal(pop(d), VIRTQ_BAD_CHAIN);
	assert_int_equal(d->c.err, err);
	assert_int_equal(d->c.head, 0);
	assert_int_equal(d->c.nr_segs, 0);
	assert_int_equal(d->c.read_len + d->c.write_len, 0);
	assert_int_equal(pop(d), VIRTQ_EMPTY);
	assert_int_equal(virtq_push(&d->q, &d->gm, d->c.head, 0), 0);
	assert_string_not_equal(virtq_strerror(err), "unknown error");
}

static void hostile_chains(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 4, all_features);

	/* Loops, direct and through an indirect table. */
	desc(&d, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 0);
	expect_bad(&d, VIRTQ_ERR_CHAIN_LONG);
	desc(&d, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 1);
	desc(&d, 1, DATA, 1, VIRTQ_DESC_F_NEXT, 0);
	expect_bad(&d, VIRTQ_ERR_CHAIN_LONG);
	desc(&d, 0, TABLE, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	fake_desc(&d.gm, TABLE, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&d.gm, TABLE, 1, DATA, 1, VIRTQ_DESC_F_NEXT, 0);
	expect_bad(&d, VIRTQ_ERR_CHAIN_LONG);

	/* Exactly the queue size is allowed, one more is too long. */
	for (uint16_t i = 0; i < 4; i++)
		desc(&d, i, DATA + i, 1, i < 3 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	fake_vq_offer(&d.vq, 0);
	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	assert_int_equal(d.c.nr_segs, 4);
	virtq_push(&d.q, &d.gm, 0, 0);
	desc(&d, 0, TABLE, 5 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	for (uint16_t i = 0; i < 5; i++)
		fake_desc(&d.gm, TABLE, i, DATA, 1, i < 4 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	expect_bad(&d, VIRTQ_ERR_CHAIN_LONG);

	/* NEXT out of range, in the ring and in a table. */
	desc(&d, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 4);
	expect_bad(&d, VIRTQ_ERR_NEXT_RANGE);
	desc(&d, 0, TABLE, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	fake_desc(&d.gm, TABLE, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 2);
	expect_bad(&d, VIRTQ_ERR_NEXT_RANGE);

	/* Indirect tables: nested, with NEXT, bad lengths, outside memory. */
	desc(&d, 0, TABLE, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	fake_desc(&d.gm, TABLE, 0, DATA, 1, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&d.gm, TABLE, 1, TABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_bad(&d, VIRTQ_ERR_INDIRECT_NEST);
	desc(&d, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	expect_bad(&d, VIRTQ_ERR_INDIRECT_NEXT);
	desc(&d, 0, TABLE, 0, VIRTQ_DESC_F_INDIRECT, 0);
	expect_bad(&d, VIRTQ_ERR_INDIRECT_LEN);
	desc(&d, 0, TABLE, 24, VIRTQ_DESC_F_INDIRECT, 0);
	expect_bad(&d, VIRTQ_ERR_INDIRECT_LEN);
	desc(&d, 0, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_bad(&d, VIRTQ_ERR_INDIRECT_MEM);
	desc(&d, 0, UINT64_MAX - 15, 32, VIRTQ_DESC_F_INDIRECT, 0);
	expect_bad(&d, VIRTQ_ERR_INDIRECT_MEM);

	/* Buffers outside guest memory, or wrapping around. */
	desc(&d, 0, MEM_SIZE - 4, 8, 0, 0);
	expect_bad(&d, VIRTQ_ERR_SEG_MEM);
	desc(&d, 0, UINT64_MAX, 2, VIRTQ_DESC_F_WRITE, 0);
	expect_bad(&d, VIRTQ_ERR_SEG_MEM);
	desc(&d, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(&d, 1, 1ULL << 40, 512, VIRTQ_DESC_F_WRITE, 0);
	expect_bad(&d, VIRTQ_ERR_SEG_MEM);

	/* Readable after writable. */
	desc(&d, 0, DATA, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc(&d, 1, DATA, 1, 0, 0);
	expect_bad(&d, VIRTQ_ERR_ORDER);

	/* More buffers than the device's array. */
	virtq_chain_init(&d.c, d.segs, 2);
	for (uint16_t i = 0; i < 3; i++)
		desc(&d, i, DATA, 1, i < 2 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	expect_bad(&d, VIRTQ_ERR_TOO_MANY_SEGS);
	assert_false(d.q.broken);
}

/* Readable bytes adding up past what a 32-bit length can hold. */
static void total_length_overflow(void **state)
{
	(void)state;
	struct guest_mem big;
	/* 3 GiB of address space, never touched beyond the rings. */
	if (gm_create(&big, 3ULL << 30, 4ULL << 30, NULL)) {
		skip();
		return;
	}
	struct virtq q;
	virtq_init(&q, 4);
	q.desc = DESC;
	q.avail = AVAIL;
	q.used = USED;
	assert_int_equal(virtq_validate(&q, &big, NULL), 0);
	q.ready = true;
	uint8_t b[16] = {0};
	uint32_t len = 0x80000000;
	uint16_t flags = VIRTQ_DESC_F_NEXT, next = 1;
	memcpy(b + 8, &len, 4);
	memcpy(b + 12, &flags, 2);
	memcpy(b + 14, &next, 2);
	gm_write(&big, DESC, b, 16);
	flags = 0;
	memcpy(b + 12, &flags, 2);
	gm_write(&big, DESC + 16, b, 16);
	uint16_t one = 1;
	gm_write(&big, AVAIL + 2, &one, 2);
	struct virtq_seg segs[4];
	struct virtq_chain c;
	virtq_chain_init(&c, segs, 4);
	assert_int_equal(virtq_pop(&q, &big, &c), VIRTQ_BAD_CHAIN);
	assert_int_equal(c.err, VIRTQ_ERR_TOTAL_LEN);
	gm_destroy(&big);
}

static void broken_rings(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 4, all_features);
	desc(&d, 0, DATA, 1, 0, 0);

	/* An avail index more than the queue size ahead. */
	fake_put16(&d.gm, AVAIL + 2, 5);
	assert_int_equal(pop(&d), VIRTQ_BROKEN);
	assert_int_equal(d.c.err, VIRTQ_ERR_AVAIL_JUMP);
	assert_true(d.q.broken);
	/* It stays broken, even if the index looks sane again. */
	fake_put16(&d.gm, AVAIL + 2, 1);
	assert_int_equal(pop(&d), VIRTQ_BROKEN);
	assert_false(virtq_enable_notify(&d.q, &d.gm));
	/* Exactly the queue size ahead is legal. */
	drv_setup(&d, 4, all_features);
	for (int i = 0; i < 4; i++) {
		desc(&d, (uint16_t)i, DATA, 1, 0, 0);
		fake_vq_offer(&d.vq, (uint16_t)i);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pop(&d), VIRTQ_CHAIN);
		assert_int_equal(d.c.head, i);
	}
	assert_int_equal(pop(&d), VIRTQ_EMPTY);
	/* An index that went backwards is a huge jump forwards. */
	fake_put16(&d.gm, AVAIL + 2, 3);
	assert_int_equal(pop(&d), VIRTQ_BROKEN);

	/* A head outside the table. */
	drv_setup(&d, 4, all_features);
	fake_vq_offer(&d.vq, 4);
	assert_int_equal(pop(&d), VIRTQ_BROKEN);
	assert_int_equal(d.c.err, VIRTQ_ERR_HEAD_RANGE);

	/* A reset makes the queue usable again. */
	virtq_reset(&d.q);
	assert_false(d.q.broken);
	assert_false(d.q.ready);
	assert_int_equal(d.q.size, 256);
	assert_int_equal(d.q.max_size, 256);
}

/* Tens of thousands of requests: the 16-bit indices wrap, on both rings. */
static void indices_wrap(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 4, all_features);
	for (uint16_t i = 0; i < 4; i++)
		desc(&d, i, DATA + 16 * i, 16, VIRTQ_DESC_F_WRITE, 0);
	unsigned offered = 0;
	for (unsigned n = 0; n < 70000; n++) {
		fake_vq_offer(&d.vq, (uint16_t)(n % 4));
		offered++;
		if (n % 3 == 0) { /* sometimes two in flight */
			fake_vq_offer(&d.vq, (uint16_t)((n + 1) % 4));
			offered++;
		}
		while (pop(&d) == VIRTQ_CHAIN)
			assert_int_equal(virtq_push(&d.q, &d.gm, d.c.head, 16), 0);
		assert_int_equal(d.c.err, VIRTQ_OK);
		assert_int_equal(fake_vq_used_idx(&d.vq), d.vq.avail_idx);
		uint32_t id, len;
		fake_vq_used_elem(&d.vq, (uint16_t)(d.vq.avail_idx - 1), &id, &len);
		assert_int_equal(len, 16);
	}
	assert_true(offered > 65536);
	assert_int_equal(d.q.last_avail, (uint16_t)offered);
}

static void notify_without_event_idx(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 8, 1ULL << VIRTIO_F_VERSION_1);
	desc(&d, 0, DATA, 1, 0, 0);
	assert_false(virtq_should_notify(&d.q, &d.gm)); /* nothing used yet */
	fake_vq_offer(&d.vq, 0);
	pop(&d);
	virtq_push(&d.q, &d.gm, 0, 0);
	assert_true(virtq_should_notify(&d.q, &d.gm));
	assert_false(virtq_should_notify(&d.q, &d.gm)); /* nothing new */
	fake_put16(&d.gm, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	fake_vq_offer(&d.vq, 0);
	pop(&d);
	virtq_push(&d.q, &d.gm, 0, 0);
	assert_false(virtq_should_notify(&d.q, &d.gm));

	/* Device-side suppression through used->flags. */
	virtq_disable_notify(&d.q, &d.gm);
	assert_int_equal(fake_get16(&d.gm, USED), VIRTQ_USED_F_NO_NOTIFY);
	assert_false(virtq_enable_notify(&d.q, &d.gm));
	assert_int_equal(fake_get16(&d.gm, USED), 0);
	virtq_disable_notify(&d.q, &d.gm);
	fake_vq_offer(&d.vq, 0);
	assert_true(virtq_enable_notify(&d.q, &d.gm)); /* arrived meanwhile */
}

static void notify_with_event_idx(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 8, all_features);
	for (uint16_t i = 0; i < 8; i++)
		desc(&d, i, DATA, 1, 0, 0);
	/* used_event 0: interrupt when used->idx passes 0. */
	fake_vq_offer(&d.vq, 0);
	pop(&d);
	virtq_push(&d.q, &d.gm, 0, 0);
	assert_true(virtq_should_notify(&d.q, &d.gm));
	fake_vq_offer(&d.vq, 1);
	pop(&d);
	virtq_push(&d.q, &d.gm, 1, 0);
	assert_false(virtq_should_notify(&d.q, &d.gm)); /* 0 already passed */

	/* A batch of three with used_event inside it, then beyond it. */
	fake_vq_set_used_event(&d.vq, 3);
	for (uint16_t i = 2; i < 5; i++) {
		fake_vq_offer(&d.vq, i);
		pop(&d);
		virtq_push(&d.q, &d.gm, i, 0);
	}
	assert_true(virtq_should_notify(&d.q, &d.gm));
	fake_vq_set_used_event(&d.vq, 10);
	fake_vq_offer(&d.vq, 5);
	pop(&d);
	virtq_push(&d.q, &d.gm, 5, 0);
	assert_false(virtq_should_notify(&d.q, &d.gm));
	/* NO_INTERRUPT means nothing with EVENT_IDX. */
	fake_put16(&d.gm, AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	fake_vq_set_used_event(&d.vq, 6);
	fake_vq_offer(&d.vq, 6);
	pop(&d);
	virtq_push(&d.q, &d.gm, 6, 0);
	assert_true(virtq_should_notify(&d.q, &d.gm));

	/* avail_event: published only when the device goes idle. */
	assert_int_equal(fake_vq_avail_event(&d.vq), 0);
	virtq_disable_notify(&d.q, &d.gm);
	assert_int_equal(fake_get16(&d.gm, USED), 0); /* flags untouched with EVENT_IDX */
	assert_false(virtq_enable_notify(&d.q, &d.gm));
	assert_int_equal(fake_vq_avail_event(&d.vq), 7);
	fake_vq_offer(&d.vq, 7);
	assert_true(virtq_enable_notify(&d.q, &d.gm));
}

static void event_idx_wraps(void **state)
{
	(void)state;
	assert_true(virtq_need_event(0, 1, 0));
	assert_false(virtq_need_event(1, 1, 0));
	assert_true(virtq_need_event(65535, 0, 65534));
	assert_true(virtq_need_event(65534, 1, 65534));
	assert_false(virtq_need_event(65533, 1, 65534));
	assert_true(virtq_need_event(0, 2, 65535));
	assert_false(virtq_need_event(2, 2, 65535));

	/* The same through a queue whose used index is about to wrap. */
	struct drv d;
	drv_setup(&d, 4, all_features);
	d.q.last_avail = d.q.used_idx = d.q.signalled_used = 65534;
	d.vq.avail_idx = 65534;
	for (uint16_t i = 0; i < 4; i++)
		desc(&d, i, DATA, 1, 0, 0);
	fake_vq_set_used_event(&d.vq, 65535);
	fake_vq_offer(&d.vq, 0);
	fake_vq_offer(&d.vq, 1);
	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	virtq_push(&d.q, &d.gm, d.c.head, 0);
	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	virtq_push(&d.q, &d.gm, d.c.head, 0);
	assert_int_equal(fake_vq_used_idx(&d.vq), 0);
	assert_true(virtq_should_notify(&d.q, &d.gm));
	fake_vq_set_used_event(&d.vq, 1);
	fake_vq_offer(&d.vq, 2);
	pop(&d);
	virtq_push(&d.q, &d.gm, d.c.head, 0);
	assert_false(virtq_should_notify(&d.q, &d.gm)); /* used->idx is 1: not past 1 */
	fake_vq_offer(&d.vq, 3);
	pop(&d);
	virtq_push(&d.q, &d.gm, d.c.head, 0);
	assert_true(virtq_should_notify(&d.q, &d.gm));
	uint32_t id, len;
	fake_vq_used_elem(&d.vq, 65535, &id, &len);
	assert_int_equal(id, 1);
	fake_vq_used_elem(&d.vq, 1, &id, &len);
	assert_int_equal(id, 3);
}

/* With write tracking (diff snapshots), what the device writes is marked:
 * the writable buffers it copies into or hands out as iovecs, the used
 * ring's element and index, avail_event; not what it only reads (the
 * header, the available ring, the descriptor table). */
static bool page_written(const uint64_t *bits, uint64_t gpa)
{
	return bits[gpa / 4096 / 64] >> (gpa / 4096 % 64) & 1;
}

static void device_writes_are_tracked(void **state)
{
	(void)state;
	struct drv d;
	drv_setup(&d, 8, all_features);
	ember_err e;
	assert_int_equal(gm_track_writes(&d.gm, &e), 0);
	uint64_t bits[MEM_SIZE / 4096 / 64];
	gm_take_written(&d.gm, 0, NULL); /* the driver's set-up writes */
	desc(&d, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(&d, 1, DATA + 0x1000, 0x2000, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	desc(&d, 2, DATA + 0x4000, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_vq_offer(&d.vq, 0);
	gm_take_written(&d.gm, 0, NULL);
	assert_int_equal(pop(&d), VIRTQ_CHAIN);
	uint8_t hdr[16];
	assert_int_equal(virtq_chain_read(&d.gm, &d.c, 0, hdr, 16), 0);
	memset(bits, 0, sizeof(bits));
	gm_take_written(&d.gm, 0, bits);
	for (size_t w = 0; w < sizeof(bits) / 8; w++)
		assert_int_equal(bits[w], 0); /* reading marks nothing */

	struct iovec iov[2];
	assert_int_equal(virtq_chain_iov(&d.gm, &d.c, true, 0x100, 0x100, iov, 2), 1);
	uint8_t status = 0;
	assert_int_equal(virtq_chain_write(&d.gm, &d.c, 0x2000, &status, 1), 0);
	assert_int_equal(virtq_push(&d.q, &d.gm, d.c.head, 0x2001), 0);
	assert_false(virtq_enable_notify(&d.q, &d.gm));
	memset(bits, 0, sizeof(bits));
	gm_take_written(&d.gm, 0, bits);
	assert_true(page_written(bits, DATA + 0x1000)); /* the iovec's page */
	assert_false(page_written(bits, DATA + 0x2000)); /* in the buffer, not handed out */
	assert_true(page_written(bits, DATA + 0x4000)); /* the status byte */
	assert_true(page_written(bits, USED));
	assert_false(page_written(bits, DATA));
	assert_false(page_written(bits, AVAIL));
	assert_false(page_written(bits, DESC));
	/* Taken: a new interval starts empty. */
	memset(bits, 0, sizeof(bits));
	gm_take_written(&d.gm, 0, bits);
	assert_false(page_written(bits, USED));
	for (int i = 0; i < d.gm.nr_regions; i++)
		free(d.gm.region[i].written);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(validate_rejects_bad_rings),
		cmocka_unit_test(device_writes_are_tracked),
		cmocka_unit_test(normal_chain),
		cmocka_unit_test(any_layout),
		cmocka_unit_test(indirect_chains),
		cmocka_unit_test(hostile_chains),
		cmocka_unit_test(total_length_overflow),
		cmocka_unit_test(broken_rings),
		cmocka_unit_test(indices_wrap),
		cmocka_unit_test(notify_without_event_idx),
		cmocka_unit_test(notify_with_event_idx),
		cmocka_unit_test(event_idx_wraps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
