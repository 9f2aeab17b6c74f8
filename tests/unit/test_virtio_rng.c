/* The virtio-rng device, driven by a fake driver whose rings live in a host
 * buffer laid out as guest memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "devices/virtio_rng.h"
#include "fake_driver.h"
#include "fake_mmio.h"
#include "guest/guest_mem.h"

#define MEM_SIZE (1 << 20)
#define RINGS 0x1000 /* fake_vq_init */
#define DATA 0x10000 /* buffers, 0x1000 apart */
#define QSIZE 128

static uint8_t backing[MEM_SIZE] __attribute__((aligned(4096)));

struct tb {
	struct guest_mem gm;
	struct virtio_rng *r;
	struct virtio_mmio *m;
	struct fake_vq vq;
	int irqs, notifies;
	uint64_t clock_ns;
};

static void hook_irq(void *ctx)
{
	((struct tb *)ctx)->irqs++;
}

static void hook_notify(void *ctx, uint32_t queue)
{
	assert_int_equal(queue, 0);
	((struct tb *)ctx)->notifies++;
}

static uint64_t fake_clock(void *ctx)
{
	return ((struct tb *)ctx)->clock_ns;
}

static struct tb *tb_new(const struct rate_limiter_config *rl)
{
	struct tb *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	memset(backing, 0, sizeof(backing));
	gm_init_from(&t->gm, backing, MEM_SIZE, 1ULL << 31);
	t->clock_ns = 1000000000;
	struct entropy_config cfg = {0};
	if (rl)
		cfg.rate_limiter = *rl;
	struct virtio_rng_params p = {
		.cfg = &cfg, .gm = &t->gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t},
		.now_ns = fake_clock, .clock_ctx = t,
	};
	ember_err e = {{0}};
	if (virtio_rng_create(&t->r, &p, &e))
		fail_msg("virtio_rng_create: %s", e.msg);
	t->m = virtio_rng_mmio(t->r);
	assert_int_equal(r32(t, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	mmio_negotiate(t->m, 1ULL << VIRTIO_F_VERSION_1);
	fake_vq_init(&t->vq, &t->gm, RINGS, QSIZE);
	fake_mmio_queue(t->m, 0, &t->vq);
	fake_mmio_driver_ok(t->m);
	return t;
}

/* One request of one buffer. */
static void offer(struct tb *t, uint64_t gpa, uint32_t len, bool write)
{
	fake_vq_add(&t->vq, &(struct fake_buf){gpa, len, write}, 1);
}

static bool all_zero(uint64_t gpa, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (backing[gpa + i])
			return false;
	return true;
}

static void fills_buffers(void **state)
{
	(void)state;
	struct tb *t = tb_new(NULL);
	offer(t, DATA, 64, true);
	offer(t, DATA + 0x1000, 4096, true);
	virtio_rng_process_queue(t->r);
	assert_int_equal(fake_vq_used_idx(&t->vq), 2);
	assert_int_equal(fake_vq_used_len(&t->vq, 0), 64);
	assert_int_equal(fake_vq_used_len(&t->vq, 1), 4096);
	assert_false(all_zero(DATA, 64));
	assert_false(all_zero(DATA + 0x1000, 4096));
	assert_true(all_zero(DATA + 64, 0x1000 - 64)); /* nothing past the buffer */
	assert_true(t->irqs >= 1);
	struct entropy_metrics *m = virtio_rng_metrics(t->r);
	assert_int_equal(metric_count(&m->entropy_bytes), 64 + 4096);
	assert_int_equal(metric_count(&m->entropy_event_count), 2);
	virtio_rng_destroy(t->r);
	free(t);
}

/* A readable buffer gets nothing and the device goes on; one outside
 * guest memory is refused by the queue and counted. */
static void hostile_requests(void **state)
{
	(void)state;
	struct tb *t = tb_new(NULL);
	offer(t, DATA, 64, false);
	offer(t, MEM_SIZE - 16, 64, true);
	offer(t, DATA + 0x1000, 32, true);
	virtio_rng_process_queue(t->r);
	assert_int_equal(fake_vq_used_idx(&t->vq), 3);
	assert_int_equal(fake_vq_used_len(&t->vq, 0), 0);
	assert_int_equal(fake_vq_used_len(&t->vq, 1), 0);
	assert_int_equal(fake_vq_used_len(&t->vq, 2), 32);
	assert_true(all_zero(DATA, 64));
	struct entropy_metrics *m = virtio_rng_metrics(t->r);
	assert_int_equal(metric_count(&m->entropy_event_fails), 2);
	assert_int_equal(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	virtio_rng_destroy(t->r);
	free(t);
}

/* No more than VIRTIO_RNG_BUDGET requests per notification; the device
 * notifies itself for the rest. */
static void bounded_work_per_pass(void **state)
{
	(void)state;
	struct tb *t = tb_new(NULL);
	for (int i = 0; i < VIRTIO_RNG_BUDGET + 10; i++)
		offer(t, DATA + 16ULL * i, 16, true);
	virtio_rng_process_queue(t->r);
	assert_int_equal(fake_vq_used_idx(&t->vq), VIRTIO_RNG_BUDGET);
	assert_int_equal(t->notifies, 1);
	virtio_rng_process_queue(t->r);
	assert_int_equal(fake_vq_used_idx(&t->vq), VIRTIO_RNG_BUDGET + 10);
	assert_int_equal(t->notifies, 1);
	virtio_rng_destroy(t->r);
	free(t);
}

/* 100 bytes per second: the second request waits for the refill. */
static void rate_limited(void **state)
{
	(void)state;
	struct rate_limiter_config rl = {.has_bandwidth = true,
					 .bandwidth = {.size = 100, .refill_time_ms = 1000}};
	struct tb *t = tb_new(&rl);
	offer(t, DATA, 100, true);
	offer(t, DATA + 0x1000, 100, true);
	virtio_rng_process_queue(t->r);
	assert_int_equal(fake_vq_used_idx(&t->vq), 1);
	struct entropy_metrics *m = virtio_rng_metrics(t->r);
	assert_int_equal(metric_count(&m->entropy_rate_limiter_throttled), 1);
	/* A snapshot now gives the held request back to the driver; the
	 * device takes it again when the limiter lets it. */
	struct virtq *q = virtio_mmio_queue(t->m, 0);
	assert_int_equal(q->last_avail, 2);
	virtio_rng_prepare_save(t->r);
	assert_int_equal(q->last_avail, 1);
	t->clock_ns += 1000000000;
	virtio_rng_rate_limiter_event(t->r);
	assert_int_equal(fake_vq_used_idx(&t->vq), 2);
	assert_int_equal(fake_vq_used_len(&t->vq, 1), 100);
	assert_int_equal(q->last_avail, 2);
	virtio_rng_destroy(t->r);
	free(t);
}

static void config_parse(void **state)
{
	(void)state;
	struct entropy_config c;
	ember_err e = {{0}};
	json_t *j = json_loads("{\"rate_limiter\": {\"bandwidth\": {\"size\": 1000,"
			       " \"one_time_burst\": 0, \"refill_time\": 100}}}", 0, NULL);
	assert_int_equal(entropy_config_parse(j, &c, &e), 0);
	assert_true(c.rate_limiter.has_bandwidth);
	assert_int_equal(c.rate_limiter.bandwidth.size, 1000);
	json_decref(j);
	j = json_loads("{\"rate_limiter\": null}", 0, NULL);
	assert_int_equal(entropy_config_parse(j, &c, &e), 0);
	assert_false(c.rate_limiter.has_bandwidth);
	json_decref(j);
	j = json_loads("{\"rate\": 1}", 0, NULL);
	assert_int_equal(entropy_config_parse(j, &c, &e), -1);
	assert_non_null(strstr(e.msg, "entropy: unknown field `rate`"));
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fills_buffers),
		cmocka_unit_test(hostile_requests),
		cmocka_unit_test(bounded_work_per_pass),
		cmocka_unit_test(rate_limited),
		cmocka_unit_test(config_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
