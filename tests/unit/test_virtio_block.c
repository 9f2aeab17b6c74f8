/* The virtio-block device, driven by a fake driver: the rings live in a host
 * buffer laid out as guest memory, the device is set up through its
 * virtio-mmio registers as Linux does, and a temporary file is the disk.
 * Every I/O test runs on both engines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio_block.h"
#include "fake_driver.h"
#include "fake_mmio.h"
#include "guest/guest_mem.h"

#define MEM_SIZE (4 << 20)
#define DESC 0x1000 /* the queue's rings (fake_vq_init) */
#define TABLES 0x8000	/* indirect tables, 0x100 apart */
#define HDRS 0x40000	/* request headers, 16 bytes apart */
#define STATUS 0x50000	/* status bytes, one apart */
#define DATA 0x100000	/* data buffers */
#define DISK_SECTORS 64

static uint8_t backing[MEM_SIZE] __attribute__((aligned(4096)));

/* The test bench: the fake driver's state and the device under test. */
struct tb {
	enum drive_io_engine engine;
	char path[64];
	struct drive_config cfg;
	struct guest_mem gm;
	struct virtio_block *b;
	struct virtio_mmio *m;
	struct fake_vq vq; /* queue 0 */
	unsigned nreq; /* requests built, for header and status slots */
	int irqs;
	int notifies; /* the device's own queue notifications, not yet run */
	uint64_t clock_ns;
};

static void hook_irq(void *ctx)
{
	((struct tb *)ctx)->irqs++;
}

/* The device notifying its own queue: the VMM would run the queue at the
 * device's next turn; the tests do it in wait_used and run_notified. */
static void hook_notify(void *ctx, uint32_t queue)
{
	(void)queue;
	((struct tb *)ctx)->notifies++;
}

static uint64_t fake_clock(void *ctx)
{
	return ((struct tb *)ctx)->clock_ns;
}

/* Linux's probe: accept every offered feature, one queue of qsize. */
static void bring_up(struct tb *t, uint16_t qsize)
{
	memset(backing, 0, 0x10000);
	fake_vq_init(&t->vq, &t->gm, DESC, qsize);
	w32(t, VIRTIO_MMIO_STATUS, 0);
	mmio_negotiate(t->m, ~0ULL);
	fake_mmio_queue(t->m, 0, &t->vq);
	fake_mmio_driver_ok(t->m);
}

static void write_disk_pattern(const char *path, uint8_t seed, unsigned sectors)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	uint8_t buf[VIRTIO_BLK_SECTOR_SIZE];
	for (unsigned s = 0; s < sectors; s++) {
		for (unsigned i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)(seed + s * 7 + i);
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	close(fd);
}

static uint8_t pattern(uint8_t seed, uint64_t sector, unsigned i)
{
	return (uint8_t)(seed + sector * 7 + i);
}

static struct tb *tb_new_cfg(enum drive_io_engine engine, bool ro, enum drive_cache_type cache,
			     const struct rate_limiter_config *rl, bool up)
{
	struct tb *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->engine = engine;
	snprintf(t->path, sizeof(t->path), "/tmp/ember-blk-XXXXXX");
	int fd = mkstemp(t->path);
	assert_true(fd >= 0);
	close(fd);
	write_disk_pattern(t->path, 1, DISK_SECTORS);
	memset(backing, 0, sizeof(backing));
	gm_init_from(&t->gm, backing, MEM_SIZE, 1ULL << 31);
	t->cfg = (struct drive_config){.drive_id = "vdtest", .path_on_host = t->path,
				       .is_read_only = ro, .cache_type = cache, .io_engine = engine};
	if (rl)
		t->cfg.rate_limiter = *rl;
	t->clock_ns = 1000000000;
	struct virtio_block_params p = {
		.drive = &t->cfg, .gm = &t->gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t},
		.now_ns = fake_clock, .clock_ctx = t,
	};
	ember_err e = {{0}};
	if (virtio_block_create(&t->b, &p, &e))
		fail_msg("virtio_block_create: %s", e.msg);
	t->m = virtio_block_mmio(t->b);
	if (up)
		bring_up(t, 16);
	return t;
}

static struct tb *tb_new(void **state)
{
	enum drive_io_engine engine = *(enum drive_io_engine *)*state;
	return tb_new_cfg(engine, false, DRIVE_CACHE_WRITEBACK, NULL, true);
}

static void tb_free(struct tb *t)
{
	virtio_block_destroy(t->b);
	unlink(t->path);
	free(t);
}

/* Runs the queue for each notification the device gave itself, as the
 * VMM's event loop does. Returns how many turns that took. */
static int run_notified(struct tb *t)
{
	int turns = 0;
	while (t->notifies) {
		t->notifies = 0;
		virtio_block_process_queue(t->b);
		turns++;
	}
	return turns;
}

/* Waits (for the Async engine) until the used ring has reached n. */
static void wait_used(struct tb *t, uint16_t n)
{
	run_notified(t);
	for (int tries = 0; (uint16_t)(fake_vq_used_idx(&t->vq) - n) > 0x8000; tries++) {
		if (run_notified(t))
			continue;
		int fd = virtio_block_completion_fd(t->b);
		if (fd < 0 || tries > 200)
			fail_msg("used->idx is %u, expected %u", fake_vq_used_idx(&t->vq), n);
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		poll(&pfd, 1, 50);
		virtio_block_process_completions(t->b);
	}
}

/* A request in the usual three-part layout (header, data, status), with the
 * data split in nseg buffers. Returns its head; status at status_gpa. */
static uint16_t request(struct tb *t, uint32_t type, uint64_t sector, uint64_t data,
			uint32_t len, unsigned nseg, uint64_t *status_gpa)
{
	uint64_t hdr = HDRS + 16ULL * (t->nreq % 4096);
	uint64_t st = STATUS + (t->nreq % 4096);
	t->nreq++;
	struct virtio_blk_outhdr h = {.type = type, .sector = sector};
	assert_int_equal(gm_write(&t->gm, hdr, &h, sizeof(h)), 0);
	uint8_t poison = 0xee;
	assert_int_equal(gm_write(&t->gm, st, &poison, 1), 0);
	struct fake_buf bufs[10];
	unsigned n = 0;
	bufs[n++] = (struct fake_buf){hdr, 16, false};
	bool w = type != VIRTIO_BLK_T_OUT;
	for (unsigned i = 0; i < nseg; i++)
		bufs[n++] = (struct fake_buf){data + i * (len / nseg), len / nseg, w};
	bufs[n++] = (struct fake_buf){st, 1, true};
	*status_gpa = st;
	uint16_t head = fake_vq_chain(&t->vq, bufs, n);
	fake_vq_offer(&t->vq, head);
	return head;
}

static uint8_t status_at(struct tb *t, uint64_t gpa)
{
	uint8_t s;
	assert_int_equal(gm_read(&t->gm, gpa, &s, 1), 0);
	return s;
}

/* Submits one request, runs the device, and returns its status; *used_len
 * gets the used element's length. */
static uint8_t run1(struct tb *t, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
		    unsigned nseg, uint32_t *used_len)
{
	uint64_t st;
	uint16_t head = request(t, type, sector, data, len, nseg, &st);
	uint16_t before = fake_vq_used_idx(&t->vq);
	virtio_block_process_queue(t->b);
	wait_used(t, (uint16_t)(before + 1));
	uint32_t id, ulen;
	fake_vq_used_elem(&t->vq, before, &id, &ulen);
	assert_int_equal(id, head);
	if (used_len)
		*used_len = ulen;
	return status_at(t, st);
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* ---- Tests ---- */

static void identity_and_config(void **state)
{
	struct tb *t = tb_new(state);
	assert_int_equal(r32(t, VIRTIO_MMIO_DEVICE_ID), 2);
	uint64_t f = device_features(t);
	assert_true(f & (1ULL << VIRTIO_BLK_F_FLUSH));
	assert_true(f & (1ULL << VIRTIO_BLK_F_SEG_MAX));
	assert_false(f & (1ULL << VIRTIO_BLK_F_RO));
	assert_true(f & (1ULL << VIRTIO_F_VERSION_1));
	w32(t, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(r32(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
	/* capacity (as two 32-bit halves) and seg_max */
	assert_int_equal(r32(t, VIRTIO_MMIO_CONFIG), DISK_SECTORS);
	assert_int_equal(r32(t, VIRTIO_MMIO_CONFIG + 4), 0);
	assert_int_equal(r32(t, VIRTIO_MMIO_CONFIG + 12), VIRTIO_BLK_SEG_MAX);
	assert_int_equal(virtio_block_capacity(t->b), DISK_SECTORS);
	/* The config space is read-only. */
	w32(t, VIRTIO_MMIO_CONFIG, 5);
	assert_int_equal(r32(t, VIRTIO_MMIO_CONFIG), DISK_SECTORS);
	assert_int_equal(metric_count(&virtio_block_metrics(t->b)->cfg_fails), 1);
	tb_free(t);

	/* Read-only and Unsafe: RO offered, FLUSH not. */
	t = tb_new_cfg(DRIVE_IO_SYNC, true, DRIVE_CACHE_UNSAFE, NULL, false);
	f = device_features(t);
	assert_true(f & (1ULL << VIRTIO_BLK_F_RO));
	assert_false(f & (1ULL << VIRTIO_BLK_F_FLUSH));
	tb_free(t);
}

static void read_write_round_trip(void **state)
{
	struct tb *t = tb_new(state);
	struct block_metrics *m = virtio_block_metrics(t->b);
	uint32_t used;
	/* Read sectors 3..4 into two buffers. */
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 3, DATA, 1024, 2, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1025);
	uint8_t buf[1024];
	assert_int_equal(gm_read(&t->gm, DATA, buf, sizeof(buf)), 0);
	for (unsigned i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], pattern(1, 3 + i / 512, i % 512));
	assert_int_equal(metric_count(&m->read_count), 1);
	assert_int_equal(metric_count(&m->read_bytes), 1024);

	/* Write three sectors at 10 from three buffers, then read them back
	 * from the file and through the device. */
	uint8_t out[1536];
	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 13 + 5);
	assert_int_equal(gm_write(&t->gm, DATA + 0x10000, out, sizeof(out)), 0);
	assert_int_equal(run1(t, VIRTIO_BLK_T_OUT, 10, DATA + 0x10000, 1536, 3, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	uint8_t back[1536];
	file_read(t->path, 10 * 512, back, sizeof(back));
	assert_memory_equal(back, out, sizeof(out));
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 10, DATA + 0x20000, 1536, 1, &used),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(gm_read(&t->gm, DATA + 0x20000, back, sizeof(back)), 0);
	assert_memory_equal(back, out, sizeof(out));
	assert_int_equal(metric_count(&m->write_count), 1);
	assert_int_equal(metric_count(&m->write_bytes), 1536);
	assert_int_equal(metric_count(&m->read_count), 2);
	/* The last sector, and the driver was interrupted. */
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, DATA, 512, 1, NULL),
			 VIRTIO_BLK_S_OK);
	assert_true(t->irqs > 0);
	assert_int_equal(metric_count(&m->execute_fails), 0);
	assert_int_equal(metric_count(&m->invalid_reqs_count), 0);
	tb_free(t);
}

static void flush_and_get_id(void **state)
{
	struct tb *t = tb_new(state);
	struct block_metrics *m = virtio_block_metrics(t->b);
	uint32_t used;
	assert_int_equal(run1(t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 1);
	assert_int_equal(metric_count(&m->flush_count), 1);

	/* GET_ID: the drive_id. */
	const char *want = "vdtest";
	memset(backing + DATA, 0xaa, 64);
	assert_int_equal(run1(t, VIRTIO_BLK_T_GET_ID, 0, DATA, 32, 1, &used), VIRTIO_BLK_S_OK);
	assert_int_equal(used, 21);
	char id[21] = {0};
	memcpy(id, backing + DATA, 20);
	assert_string_equal(id, want);
	assert_int_equal(backing[DATA + 20], 0xaa); /* only 20 bytes written */
	/* Too small a buffer for the ID. */
	assert_int_equal(run1(t, VIRTIO_BLK_T_GET_ID, 0, DATA, 19, 1, &used),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(used, 1);
	tb_free(t);

	/* Unsafe: a FLUSH is acknowledged without syncing. */
	t = tb_new_cfg(*(enum drive_io_engine *)*state, false, DRIVE_CACHE_UNSAFE, NULL, true);
	assert_int_equal(run1(t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(metric_count(&virtio_block_metrics(t->b)->flush_count), 1);
	tb_free(t);
}

static void read_only_refuses_writes(void **state)
{
	struct tb *t = tb_new_cfg(*(enum drive_io_engine *)*state, true, DRIVE_CACHE_UNSAFE, NULL,
				  true);
	memset(backing + DATA, 0x55, 512);
	assert_int_equal(run1(t, VIRTIO_BLK_T_OUT, 0, DATA, 512, 1, NULL), VIRTIO_BLK_S_IOERR);
	uint8_t b[512];
	file_read(t->path, 0, b, sizeof(b));
	assert_int_equal(b[0], pattern(1, 0, 0));
	assert_int_equal(metric_count(&virtio_block_metrics(t->b)->invalid_reqs_count), 1);
	/* Reads still work. */
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 0, DATA, 512, 1, NULL), VIRTIO_BLK_S_OK);
	tb_free(t);
}

static void out_of_range_and_bad_lengths(void **state)
{
	struct tb *t = tb_new(state);
	struct block_metrics *m = virtio_block_metrics(t->b);
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, DISK_SECTORS, DATA, 512, 1, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, DATA, 1024, 1, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(t, VIRTIO_BLK_T_OUT, UINT64_MAX, DATA, 512, 1, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(t, VIRTIO_BLK_T_OUT, UINT64_MAX / 512, DATA, 1024, 1, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 0, DATA, 513, 1, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(t, VIRTIO_BLK_T_OUT, 0, DATA, 100, 1, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(metric_count(&m->execute_fails), 6);
	assert_int_equal(metric_count(&m->read_count) + metric_count(&m->write_count), 0);
	/* A zero-length read at the end is fine and moves nothing. */
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, DISK_SECTORS, DATA, 0, 0, NULL),
			 VIRTIO_BLK_S_OK);
	tb_free(t);
}

static void header_and_status_layout(void **state)
{
	struct tb *t = tb_new(state);
	struct block_metrics *m = virtio_block_metrics(t->b);
	uint32_t id, len;

	/* A header split across two buffers (ANY_LAYOUT), data and status in
	 * one writable buffer: the status is its last byte. */
	struct virtio_blk_outhdr h = {.type = VIRTIO_BLK_T_IN, .sector = 5};
	gm_write(&t->gm, HDRS, &h, 16);
	backing[DATA + 512] = 0xee;
	struct fake_buf split[] = {{HDRS, 8, false}, {HDRS + 8, 8, false}, {DATA, 513, true}};
	uint16_t head = fake_vq_chain(&t->vq, split, 3);
	fake_vq_offer(&t->vq, head);
	virtio_block_process_queue(t->b);
	wait_used(t, 1);
	fake_vq_used_elem(&t->vq, 0, &id, &len);
	assert_int_equal(len, 513);
	assert_int_equal(backing[DATA + 512], VIRTIO_BLK_S_OK);
	assert_int_equal(backing[DATA], pattern(1, 5, 0));

	/* A header of 8 bytes: IOERR in the status byte. */
	backing[STATUS + 4000] = 0xee;
	struct fake_buf short_hdr[] = {{HDRS, 8, false}, {STATUS + 4000, 1, true}};
	fake_vq_offer(&t->vq, fake_vq_chain(&t->vq, short_hdr, 2));
	virtio_block_process_queue(t->b);
	wait_used(t, 2);
	assert_int_equal(backing[STATUS + 4000], VIRTIO_BLK_S_IOERR);

	/* No writable byte at all: returned with length 0. */
	struct fake_buf no_status[] = {{HDRS, 16, false}, {DATA, 512, false}};
	head = fake_vq_chain(&t->vq, no_status, 2);
	fake_vq_offer(&t->vq, head);
	virtio_block_process_queue(t->b);
	wait_used(t, 3);
	fake_vq_used_elem(&t->vq, 2, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 0);

	/* A read whose data buffer is device-readable. */
	h.sector = 0;
	gm_write(&t->gm, HDRS, &h, 16);
	struct fake_buf wrong_dir[] = {
		{HDRS, 16, false}, {DATA, 512, false}, {STATUS + 4001, 1, true}};
	fake_vq_offer(&t->vq, fake_vq_chain(&t->vq, wrong_dir, 3));
	virtio_block_process_queue(t->b);
	wait_used(t, 4);
	assert_int_equal(backing[STATUS + 4001], VIRTIO_BLK_S_IOERR);
	assert_int_equal(metric_count(&m->execute_fails), 3);

	/* An unknown request type. */
	assert_int_equal(run1(t, 42, 0, DATA, 512, 1, &len), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(len, 1);
	assert_int_equal(metric_count(&m->invalid_reqs_count), 1);
	tb_free(t);
}

static void hostile_chains(void **state)
{
	struct tb *t = tb_new(state);
	struct block_metrics *m = virtio_block_metrics(t->b);
	uint32_t id, len;
	/* A descriptor loop: the chain is refused with length 0. */
	fake_desc(&t->gm, DESC, 0, HDRS, 16, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&t->gm, DESC, 1, HDRS, 16, VIRTQ_DESC_F_NEXT, 0);
	fake_vq_offer(&t->vq, 0);
	/* A buffer outside guest memory. */
	fake_desc(&t->gm, DESC, 2, MEM_SIZE - 8, 16, 0, 0);
	fake_vq_offer(&t->vq, 2);
	virtio_block_process_queue(t->b);
	assert_int_equal(fake_vq_used_idx(&t->vq), 2);
	fake_vq_used_elem(&t->vq, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 0);
	fake_vq_used_elem(&t->vq, 1, &id, &len);
	assert_int_equal(id, 2);
	assert_int_equal(metric_count(&m->execute_fails), 2);
	assert_int_equal(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);

	/* avail->idx jumping ahead breaks the ring: DEVICE_NEEDS_RESET and a
	 * config interrupt. */
	t->vq.next_desc = 3;
	fake_put16(&t->gm, t->vq.avail + 2, (uint16_t)(t->vq.avail_idx + 100));
	int irqs = t->irqs;
	virtio_block_process_queue(t->b);
	assert_true(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(r32(t, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_true(t->irqs > irqs);
	/* A reset brings it back. */
	bring_up(t, 16);
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 0, DATA, 512, 1, NULL), VIRTIO_BLK_S_OK);
	tb_free(t);
}

static void throttled_by_rate_limiter(void **state)
{
	/* Two ops per second. */
	struct rate_limiter_config rl = {.has_ops = true, .ops = {.size = 2, .refill_time_ms = 1000}};
	struct tb *t = tb_new_cfg(*(enum drive_io_engine *)*state, false, DRIVE_CACHE_WRITEBACK,
				  &rl, true);
	struct block_metrics *m = virtio_block_metrics(t->b);
	uint64_t st[4];
	for (int i = 0; i < 4; i++)
		request(t, VIRTIO_BLK_T_IN, (uint64_t)i, DATA + 0x1000ULL * i, 512, 1, &st[i]);
	virtio_block_process_queue(t->b);
	wait_used(t, 2);
	assert_int_equal(fake_vq_used_idx(&t->vq), 2);
	assert_int_equal(metric_count(&m->rate_limiter_throttled_events), 1);
	/* A notification while blocked is counted, not processed. */
	virtio_block_process_queue(t->b);
	assert_int_equal(fake_vq_used_idx(&t->vq), 2);
	assert_int_equal(metric_count(&m->rate_limiter_throttled_events), 2);
	/* The timer, early: nothing moves. */
	t->clock_ns += 100000000;
	virtio_block_rate_limiter_event(t->b);
	assert_int_equal(fake_vq_used_idx(&t->vq), 2);
	/* A second later the bucket holds two ops again. */
	t->clock_ns += 900000000;
	virtio_block_rate_limiter_event(t->b);
	wait_used(t, 4);
	assert_int_equal(metric_count(&m->rate_limiter_event_count), 2);
	for (int i = 0; i < 4; i++)
		assert_int_equal(status_at(t, st[i]), VIRTIO_BLK_S_OK);

	/* A PATCH that removes the limit lets a blocked queue go at once. */
	for (int i = 0; i < 3; i++)
		request(t, VIRTIO_BLK_T_IN, 0, DATA, 512, 1, &st[0]);
	virtio_block_process_queue(t->b);
	wait_used(t, 4);
	struct rate_limiter_config off = {.has_ops = true};
	ember_err e;
	assert_int_equal(virtio_block_update_rate_limiter(t->b, &off, &e), 0);
	wait_used(t, 7);
	json_t *j = virtio_block_config_json(t->b);
	assert_true(json_is_null(json_object_get(j, "rate_limiter")));
	json_decref(j);
	tb_free(t);
}

static void bandwidth_limit_counts_bytes(void **state)
{
	/* 4 KiB per second: a 4 KiB read passes, the next waits a second. */
	struct rate_limiter_config rl = {.has_bandwidth = true,
					 .bandwidth = {.size = 4096, .refill_time_ms = 1000}};
	struct tb *t = tb_new_cfg(*(enum drive_io_engine *)*state, false, DRIVE_CACHE_WRITEBACK,
				  &rl, true);
	uint64_t st;
	request(t, VIRTIO_BLK_T_IN, 0, DATA, 4096, 1, &st);
	request(t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, &st); /* no bytes: passes */
	request(t, VIRTIO_BLK_T_IN, 8, DATA, 512, 1, &st);
	virtio_block_process_queue(t->b);
	wait_used(t, 2);
	assert_int_equal(fake_vq_used_idx(&t->vq), 2);
	t->clock_ns += 125000000; /* 512 bytes' worth */
	virtio_block_rate_limiter_event(t->b);
	wait_used(t, 3);
	assert_int_equal(status_at(t, st), VIRTIO_BLK_S_OK);
	tb_free(t);
}

static void path_update(void **state)
{
	struct tb *t = tb_new(state);
	struct block_metrics *m = virtio_block_metrics(t->b);
	char other[64];
	snprintf(other, sizeof(other), "/tmp/ember-blk2-XXXXXX");
	int fd = mkstemp(other);
	assert_true(fd >= 0);
	close(fd);
	write_disk_pattern(other, 99, 8);
	/* A ragged tail is not visible: capacity rounds down. */
	fd = open(other, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "xyz", 3), 3);
	close(fd);

	uint32_t gen = r32(t, VIRTIO_MMIO_CONFIG_GENERATION);
	int irqs = t->irqs;
	ember_err e;
	assert_int_equal(virtio_block_update_path(t->b, other, &e), 0);
	assert_int_equal(virtio_block_capacity(t->b), 8);
	assert_int_equal(r32(t, VIRTIO_MMIO_CONFIG), 8);
	assert_int_not_equal(r32(t, VIRTIO_MMIO_CONFIG_GENERATION), gen);
	assert_true(r32(t, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(t->irqs, irqs + 1);
	assert_int_equal(metric_count(&m->update_count), 1);
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 7, DATA, 512, 1, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(backing[DATA + 3], pattern(99, 7, 3));
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 8, DATA, 512, 1, NULL), VIRTIO_BLK_S_IOERR);
	json_t *j = virtio_block_config_json(t->b);
	assert_string_equal(json_string_value(json_object_get(j, "path_on_host")), other);
	json_decref(j);

	/* A missing file: refused, the current one stays. */
	assert_int_equal(virtio_block_update_path(t->b, "/nonexistent/disk", &e), -1);
	assert_non_null(strstr(e.msg, "vdtest"));
	assert_non_null(strstr(e.msg, "/nonexistent/disk"));
	assert_int_equal(metric_count(&m->update_fails), 1);
	assert_int_equal(virtio_block_capacity(t->b), 8);
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 0, DATA, 512, 1, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(backing[DATA], pattern(99, 0, 0));
	/* Not a file or block device. */
	assert_int_equal(virtio_block_update_path(t->b, "/dev/null", &e), -1);
	assert_non_null(strstr(e.msg, "neither a regular file nor a block device"));

	/* PATCH with both a path and a limiter. */
	struct drive_patch p = {.drive_id = "vdtest", .path_on_host = t->path};
	assert_int_equal(virtio_block_patch(t->b, &p, &e), 0);
	assert_int_equal(virtio_block_capacity(t->b), DISK_SECTORS);
	unlink(other);
	tb_free(t);
}

/* Request i: a read of sector i % DISK_SECTORS into data buffer i, in an
 * indirect table of its own (header, data, status) in descriptor i. */
static void offer_indirect_read(struct tb *t, unsigned i)
{
	uint64_t table = TABLES + 0x40ULL * i;
	uint64_t hdr = HDRS + 16ULL * i;
	struct virtio_blk_outhdr h = {.type = VIRTIO_BLK_T_IN, .sector = i % DISK_SECTORS};
	gm_write(&t->gm, hdr, &h, 16);
	fake_desc(&t->gm, table, 0, hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	fake_desc(&t->gm, table, 1, DATA + 512ULL * i, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
		  2);
	fake_desc(&t->gm, table, 2, STATUS + i, 1, VIRTQ_DESC_F_WRITE, 0);
	fake_desc(&t->gm, DESC, (uint16_t)i, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
	fake_vq_offer(&t->vq, (uint16_t)i);
}

/* More requests than the engine takes at once: the queue stops when every
 * slot is busy and resumes from the completions. Indirect descriptors let
 * 200 requests sit in a 256-entry queue. */
static void engine_full_resumes(void **state)
{
	(void)state;
	struct tb *t = tb_new_cfg(DRIVE_IO_ASYNC, false, DRIVE_CACHE_WRITEBACK, NULL, false);
	bring_up(t, 256);
	struct block_metrics *m = virtio_block_metrics(t->b);
	enum { N = 200 };
	for (unsigned i = 0; i < N; i++)
		offer_indirect_read(t, i);
	virtio_block_process_queue(t->b);
	run_notified(t); /* the device's next turns, until every slot is busy */
	virtio_block_process_queue(t->b); /* while full: counted only */
	assert_true(metric_count(&m->io_engine_throttled_events) >= 1);
	wait_used(t, N);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(backing[STATUS + i], VIRTIO_BLK_S_OK);
		assert_int_equal(backing[DATA + 512 * i + 1], pattern(1, i % DISK_SECTORS, 1));
	}
	assert_int_equal(metric_count(&m->read_count), N);
	tb_free(t);
}

/* A driver that keeps the queue full gets VIRTIO_BLK_WORK_BUDGET requests
 * per call: then the device notifies its own queue and returns, so the
 * VMM thread serves the others between its turns; each turn takes the
 * next budget until the ring is empty. */
static void work_per_pass_is_bounded(void **state)
{
	enum drive_io_engine engine = *(enum drive_io_engine *)*state;
	struct tb *t = tb_new_cfg(engine, false, DRIVE_CACHE_WRITEBACK, NULL, false);
	bring_up(t, 256);
	enum { N = 200 };
	for (unsigned i = 0; i < N; i++)
		offer_indirect_read(t, i);
	virtio_block_process_queue(t->b);
	/* One turn took one budget and asked for another turn. */
	assert_int_equal(t->notifies, 1);
	uint16_t first = engine == DRIVE_IO_SYNC ? fake_vq_used_idx(&t->vq) : 0;
	if (engine == DRIVE_IO_SYNC)
		assert_int_equal(first, VIRTIO_BLK_WORK_BUDGET);
	int turns = run_notified(t);
	/* Async stops earlier, once its 128 slots are busy; completions
	 * resume it. */
	if (engine == DRIVE_IO_SYNC)
		assert_int_equal(turns,
				 (N + VIRTIO_BLK_WORK_BUDGET - 1) / VIRTIO_BLK_WORK_BUDGET - 1);
	wait_used(t, N);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(backing[STATUS + i], VIRTIO_BLK_S_OK);
	/* Empty now: a turn finds nothing and asks for no other. */
	virtio_block_process_queue(t->b);
	assert_int_equal(t->notifies, 0);
	tb_free(t);
}

/* A reset with I/O in flight returns only when the I/O is done, and
 * nothing reaches the used ring afterwards. */
static void reset_waits_for_io(void **state)
{
	struct tb *t = tb_new(state);
	uint64_t st;
	for (int i = 0; i < 5; i++) /* 15 of the 16 descriptors */
		request(t, VIRTIO_BLK_T_IN, (uint64_t)i, DATA + 0x1000ULL * i, 4096, 1, &st);
	virtio_block_process_queue(t->b);
	w32(t, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(r32(t, VIRTIO_MMIO_STATUS), 0);
	virtio_block_process_completions(t->b);
	virtio_block_process_queue(t->b); /* not active: nothing happens */
	/* Sync finished them before the reset; Async's were dropped. */
	assert_int_equal(fake_vq_used_idx(&t->vq), t->engine == DRIVE_IO_SYNC ? 5 : 0);
	bring_up(t, 16);
	t->nreq = 0;
	assert_int_equal(fake_vq_used_idx(&t->vq), 0);
	assert_int_equal(run1(t, VIRTIO_BLK_T_IN, 1, DATA, 512, 1, NULL), VIRTIO_BLK_S_OK);
	tb_free(t);
}

static void activation_needs_a_queue(void **state)
{
	(void)state;
	struct tb *t = tb_new_cfg(DRIVE_IO_SYNC, false, DRIVE_CACHE_UNSAFE, NULL, false);
	add_status(t, VIRTIO_STATUS_ACKNOWLEDGE);
	add_status(t, VIRTIO_STATUS_DRIVER);
	w32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	w32(t, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	add_status(t, VIRTIO_STATUS_FEATURES_OK);
	add_status(t, VIRTIO_STATUS_DRIVER_OK);
	assert_true(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(metric_count(&virtio_block_metrics(t->b)->activate_fails), 1);
	tb_free(t);
}

static void create_errors(void **state)
{
	(void)state;
	struct guest_mem gm;
	gm_init_from(&gm, backing, MEM_SIZE, 1ULL << 31);
	struct drive_config cfg = {.drive_id = "bad", .path_on_host = "/nonexistent/x"};
	struct virtio_block_params p = {.drive = &cfg, .gm = &gm};
	struct virtio_block *b = NULL;
	ember_err e;
	assert_int_equal(virtio_block_create(&b, &p, &e), -1);
	assert_non_null(strstr(e.msg, "drive bad: cannot open /nonexistent/x"));
	cfg.path_on_host = "/dev/null";
	assert_int_equal(virtio_block_create(&b, &p, &e), -1);
	assert_non_null(strstr(e.msg, "neither a regular file"));

	/* A FIFO (read-only: a plain open would wait for a writer forever; the
	 * alarm turns that hang into a failure) and a directory are refused,
	 * by name. */
	char dir[] = "/tmp/ember-test-blk-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char fifo[64];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	alarm(10);
	cfg.path_on_host = fifo;
	cfg.is_read_only = true;
	assert_int_equal(virtio_block_create(&b, &p, &e), -1);
	assert_non_null(strstr(e.msg, fifo));
	assert_non_null(strstr(e.msg, "FIFO"));
	cfg.is_read_only = false;
	assert_int_equal(virtio_block_create(&b, &p, &e), -1);
	assert_non_null(strstr(e.msg, "FIFO"));
	cfg.path_on_host = dir;
	cfg.is_read_only = true;
	assert_int_equal(virtio_block_create(&b, &p, &e), -1);
	assert_non_null(strstr(e.msg, "directory"));
	alarm(0);
	unlink(fifo);
	rmdir(dir);
}

static enum drive_io_engine sync_engine = DRIVE_IO_SYNC, async_engine = DRIVE_IO_ASYNC;

#define BOTH(f)                                                                                  \
	cmocka_unit_test_prestate(f, &sync_engine), cmocka_unit_test_prestate(f, &async_engine)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(identity_and_config),
		BOTH(read_write_round_trip),
		BOTH(flush_and_get_id),
		BOTH(read_only_refuses_writes),
		BOTH(out_of_range_and_bad_lengths),
		BOTH(header_and_status_layout),
		BOTH(hostile_chains),
		BOTH(throttled_by_rate_limiter),
		BOTH(bandwidth_limit_counts_bytes),
		BOTH(path_update),
		BOTH(reset_waits_for_io),
		cmocka_unit_test(engine_full_resumes),
		BOTH(work_per_pass_is_bounded),
		cmocka_unit_test(activation_needs_a_queue),
		cmocka_unit_test(create_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
