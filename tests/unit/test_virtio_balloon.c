/* The virtio-balloon device, driven by a fake driver whose rings live in
 * anonymous memory laid out as guest memory (so what the device gives back
 * to the host really reads back as zeros). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>
#include <poll.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/timerfd.h>

#include "devices/virtio_balloon.h"
#include "fake_driver.h"
#include "fake_mmio.h"
#include "guest/guest_mem.h"

#define MEM_SIZE (8u << 20)
#define GAP_START (6u << 20) /* RAM: [0, 6 MiB) and [4 GiB, 4 GiB + 2 MiB) */
#define HIGH_PFN (0x100000000ULL >> 12)
#define RING(q) (0x1000 + 0x3000ULL * (q)) /* queue q's rings (fake_vq_init) */
#define DATA 0x20000
#define QSIZE 256

struct tb {
	uint8_t *mem;
	struct guest_mem gm;
	struct virtio_balloon *b;
	struct virtio_mmio *m;
	unsigned nq;
	struct fake_vq vq[5];
	int irqs, notifies;
};

static void hook_irq(void *ctx)
{
	((struct tb *)ctx)->irqs++;
}

static void hook_notify(void *ctx, uint32_t queue)
{
	(void)queue;
	((struct tb *)ctx)->notifies++;
}

static struct tb *tb_new(struct balloon_config cfg)
{
	struct tb *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(t->mem != MAP_FAILED);
	gm_init_from(&t->gm, t->mem, MEM_SIZE, GAP_START);
	struct virtio_balloon_params p = {
		.cfg = &cfg, .gm = &t->gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t},
	};
	ember_err e = {{0}};
	if (virtio_balloon_create(&t->b, &p, &e))
		fail_msg("virtio_balloon_create: %s", e.msg);
	t->m = virtio_balloon_mmio(t->b);
	t->nq = 2 + !!cfg.stats_polling_interval_s + cfg.free_page_hinting + cfg.free_page_reporting;
	assert_int_equal(r32(t, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BALLOON);
	/* The balloon's own bits and VERSION_1. */
	mmio_negotiate(t->m, 0x3f | 1ULL << VIRTIO_F_VERSION_1);
	for (unsigned q = 0; q < t->nq; q++) {
		fake_vq_init(&t->vq[q], &t->gm, RING(q), QSIZE);
		fake_mmio_queue(t->m, q, &t->vq[q]);
	}
	fake_mmio_driver_ok(t->m);
	/* Every queue looked at again once active (a kick before DRIVER_OK
	 * found the device inactive). */
	assert_int_equal(t->notifies, (int)t->nq);
	return t;
}

static void tb_free(struct tb *t)
{
	virtio_balloon_destroy(t->b);
	munmap(t->mem, MEM_SIZE);
	free(t);
}

/* A page list at `at` on queue q (inflate 0, deflate 1). */
static void offer_pfns(struct tb *t, unsigned q, uint64_t at, const uint32_t *pfn, unsigned n)
{
	assert_int_equal(gm_write(&t->gm, at, pfn, 4ULL * n), 0);
	fake_vq_add(&t->vq[q], &(struct fake_buf){at, 4 * n, false}, 1);
	virtio_balloon_queue_event(t->b, q);
}

static void dirty(struct tb *t, uint64_t gpa, size_t len)
{
	memset(gm_ptr(&t->gm, gpa, len), 0xaa, len);
}

static bool zero(struct tb *t, uint64_t gpa, size_t len)
{
	const uint8_t *p = gm_ptr(&t->gm, gpa, len);
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static uint32_t config32(struct tb *t, unsigned off)
{
	return r32(t, VIRTIO_MMIO_CONFIG + off);
}

static const struct balloon_config all_on = {
	.amount_mib = 4, .deflate_on_oom = true, .stats_polling_interval_s = 1,
	.free_page_hinting = true, .free_page_reporting = true};

static void features_and_config(void **state)
{
	(void)state;
	struct tb *t = tb_new(all_on);
	uint64_t f = device_features(t);
	assert_true(f & (1u << VIRTIO_BALLOON_F_STATS_VQ));
	assert_true(f & (1u << VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	assert_true(f & (1u << VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	assert_true(f & (1u << VIRTIO_BALLOON_F_REPORTING));
	assert_int_equal(config32(t, 0), 4 * 256);
	assert_int_equal(config32(t, 4), 0);
	w32(t, VIRTIO_MMIO_CONFIG + 4, 77); /* actual: the driver's to write */
	w32(t, VIRTIO_MMIO_CONFIG + 0, 5);  /* num_pages: not */
	assert_int_equal(config32(t, 4), 77);
	assert_int_equal(config32(t, 0), 4 * 256);
	tb_free(t);

	struct balloon_config plain = {.amount_mib = 1};
	t = tb_new(plain);
	assert_int_equal(device_features(t) & 0x3f, 0);
	tb_free(t);
}

static void inflate_gives_pages_back(void **state)
{
	(void)state;
	struct tb *t = tb_new(all_on);
	uint32_t pfn[16];
	for (unsigned i = 0; i < 16; i++)
		pfn[i] = 0x200 + (i * 7) % 16; /* one run, out of order */
	dirty(t, 0x200000, 16 * 4096);
	dirty(t, 0x210000, 4096); /* the page after: stays */
	offer_pfns(t, 0, DATA, pfn, 16);
	assert_int_equal(fake_vq_used_idx(&t->vq[0]), 1);
	assert_true(zero(t, 0x200000, 16 * 4096));
	assert_false(zero(t, 0x210000, 4096));
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 16);
	struct balloon_metrics *m = virtio_balloon_metrics(t->b);
	assert_int_equal(metric_count(&m->inflated_pages), 16);
	assert_int_equal(metric_count(&m->inflate_count), 1);
	assert_true(t->irqs >= 1);
	/* Deflate half: they are the guest's again. */
	offer_pfns(t, 1, DATA, pfn, 8);
	assert_int_equal(fake_vq_used_idx(&t->vq[1]), 1);
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 8);
	assert_int_equal(metric_count(&m->deflated_pages), 8);
	/* A page in the high region too. */
	uint32_t high = (uint32_t)HIGH_PFN + 3;
	dirty(t, (uint64_t)high << 12, 4096);
	offer_pfns(t, 0, DATA, &high, 1);
	assert_true(zero(t, (uint64_t)high << 12, 4096));
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 9);
	tb_free(t);
}

/* Page numbers outside RAM, in the MMIO gap, twice over, deflated without
 * being inflated; buffers of a bad shape: each refused and counted, the
 * device goes on. */
static void hostile_page_lists(void **state)
{
	(void)state;
	struct tb *t = tb_new(all_on);
	struct balloon_metrics *m = virtio_balloon_metrics(t->b);
	uint32_t bad[] = {GAP_START >> 12, 0x10000, 0xffffffffu, (uint32_t)HIGH_PFN + 512,
			  0x300, 0x300};
	dirty(t, 0x300000, 4096);
	offer_pfns(t, 0, DATA, bad, 6);
	assert_int_equal(metric_count(&m->bad_pfn_count), 4);
	assert_int_equal(metric_count(&m->duplicate_pfn_count), 1);
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 1);
	assert_true(zero(t, 0x300000, 4096));
	uint32_t never = 0x301;
	offer_pfns(t, 1, DATA, &never, 1);
	assert_int_equal(metric_count(&m->duplicate_pfn_count), 2);
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 1);
	/* Not a whole number of page numbers; too many; device-writable. */
	struct fake_buf odd = {DATA, 6, false}, big = {DATA, 4 * 257, false}, wr = {DATA, 8, true};
	dirty(t, 0x302000, 4096);
	uint32_t p = 0x302;
	assert_int_equal(gm_write(&t->gm, DATA, &p, 4), 0);
	fake_vq_add(&t->vq[0], &odd, 1);
	fake_vq_add(&t->vq[0], &big, 1);
	fake_vq_add(&t->vq[0], &wr, 1);
	virtio_balloon_queue_event(t->b, 0);
	assert_int_equal(metric_count(&m->event_fails), 3);
	assert_false(zero(t, 0x302000, 4096));
	assert_int_equal(fake_vq_used_idx(&t->vq[0]), 4);
	/* A buffer outside guest memory: the queue refuses the chain. */
	struct fake_buf out = {MEM_SIZE + 0x1000, 4, false};
	fake_vq_add(&t->vq[0], &out, 1);
	virtio_balloon_queue_event(t->b, 0);
	assert_int_equal(metric_count(&m->event_fails), 4);
	assert_int_equal(fake_vq_used_idx(&t->vq[0]), 5);
	assert_int_equal(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	/* A driver reset: the guest owns all of its memory again. */
	w32(t, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 0);
	tb_free(t);
}

static void put_stat(uint8_t *buf, unsigned i, uint16_t tag, uint64_t val)
{
	memcpy(buf + 10 * i, &tag, 2);
	memcpy(buf + 10 * i + 2, &val, 8);
}

static void statistics(void **state)
{
	(void)state;
	struct tb *t = tb_new(all_on);
	ember_err e;
	json_t *j = virtio_balloon_stats_json(t->b, &e);
	assert_non_null(j);
	assert_null(json_object_get(j, "free_memory")); /* none reported yet */
	assert_int_equal(json_integer_value(json_object_get(j, "target_mib")), 4);
	json_decref(j);
	uint8_t buf[30];
	put_stat(buf, 0, 4, 1000);    /* free_memory */
	put_stat(buf, 1, 5, 5000);    /* total_memory */
	put_stat(buf, 2, 999, 1);     /* no such tag */
	assert_int_equal(gm_write(&t->gm, DATA, buf, sizeof(buf)), 0);
	struct fake_buf s = {DATA, sizeof(buf), false};
	fake_vq_add(&t->vq[2], &s, 1);
	virtio_balloon_queue_event(t->b, 2);
	assert_int_equal(fake_vq_used_idx(&t->vq[2]), 0); /* held until the next poll */
	struct balloon_metrics *m = virtio_balloon_metrics(t->b);
	assert_int_equal(metric_count(&m->stats_updates_count), 1);
	assert_int_equal(metric_count(&m->stats_update_fails), 1);
	w32(t, VIRTIO_MMIO_CONFIG + 4, 512);
	j = virtio_balloon_stats_json(t->b, &e);
	assert_int_equal(json_integer_value(json_object_get(j, "free_memory")), 1000);
	assert_int_equal(json_integer_value(json_object_get(j, "total_memory")), 5000);
	assert_int_equal(json_integer_value(json_object_get(j, "actual_pages")), 512);
	assert_int_equal(json_integer_value(json_object_get(j, "actual_mib")), 2);
	json_decref(j);
	/* A new interval polls at once: the buffer goes back. */
	assert_int_equal(virtio_balloon_set_stats_interval(t->b, 5, &e), 0);
	assert_int_equal(fake_vq_used_idx(&t->vq[2]), 1);
	assert_int_equal(virtio_balloon_set_stats_interval(t->b, 0, &e), -1);
	assert_string_equal(e.msg, "Statistics cannot be enabled/disabled after activation.");
	/* An oversized buffer is held but not read. */
	struct fake_buf huge = {DATA, 10 * 300, false};
	fake_vq_add(&t->vq[2], &huge, 1);
	virtio_balloon_queue_event(t->b, 2);
	assert_int_equal(metric_count(&m->stats_update_fails), 2);
	tb_free(t);

	struct balloon_config no_stats = {.amount_mib = 1};
	t = tb_new(no_stats);
	assert_null(virtio_balloon_stats_json(t->b, &e));
	assert_string_equal(e.msg, "Received stats query when stats are disabled.");
	assert_int_equal(virtio_balloon_set_stats_interval(t->b, 1, &e), -1);
	assert_int_equal(virtio_balloon_hint_start(t->b, true, &e), -1);
	assert_string_equal(e.msg, "Attempting to use hinting when not enabled");
	tb_free(t);
}

static void hint_cmd(struct tb *t, uint32_t cmd)
{
	assert_int_equal(gm_write(&t->gm, DATA, &cmd, 4), 0);
	struct fake_buf s = {DATA, 4, false};
	fake_vq_add(&t->vq[3], &s, 1);
	virtio_balloon_queue_event(t->b, 3);
}

static void hint_range(struct tb *t, uint64_t gpa, uint32_t len)
{
	struct fake_buf s = {gpa, len, true};
	fake_vq_add(&t->vq[3], &s, 1);
	virtio_balloon_queue_event(t->b, 3);
}

static void free_page_hinting(void **state)
{
	(void)state;
	struct tb *t = tb_new(all_on);
	struct balloon_metrics *m = virtio_balloon_metrics(t->b);
	ember_err e;
	assert_int_equal(virtio_balloon_hint_start(t->b, true, &e), 0);
	uint32_t id = config32(t, 8);
	assert_true(id >= 2);
	dirty(t, 0x400000, 0x10000);
	hint_cmd(t, id);
	hint_range(t, 0x400000, 0x8000);
	assert_true(zero(t, 0x400000, 0x8000));
	assert_int_equal(metric_count(&m->free_page_hint_count), 1);
	assert_int_equal(metric_count(&m->free_page_hint_freed), 0x8000);
	/* Unaligned: refused, counted. */
	hint_range(t, 0x408001, 0x1000);
	assert_int_equal(metric_count(&m->free_page_hint_fails), 1);
	/* A hint for an old run is stale. */
	hint_cmd(t, id + 5);
	hint_range(t, 0x408000, 0x1000);
	assert_false(zero(t, 0x408000, 0x1000));
	/* The guest's STOP ends the run: acknowledged with DONE. */
	hint_cmd(t, VIRTIO_BALLOON_HINT_STOP);
	assert_int_equal(config32(t, 8), VIRTIO_BALLOON_HINT_DONE);
	json_t *j = virtio_balloon_hint_status(t->b, &e);
	assert_int_equal(json_integer_value(json_object_get(j, "host_cmd")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "guest_cmd")), 0);
	json_decref(j);
	/* After DONE, nothing is discarded. */
	hint_cmd(t, id);
	hint_range(t, 0x408000, 0x1000);
	assert_false(zero(t, 0x408000, 0x1000));
	/* Without acknowledge_on_stop, the run stays until stop. */
	assert_int_equal(virtio_balloon_hint_start(t->b, false, &e), 0);
	uint32_t id2 = config32(t, 8);
	assert_int_not_equal(id2, id);
	hint_cmd(t, VIRTIO_BALLOON_HINT_STOP);
	assert_int_equal(config32(t, 8), id2);
	assert_int_equal(virtio_balloon_hint_stop(t->b, &e), 0);
	assert_int_equal(config32(t, 8), VIRTIO_BALLOON_HINT_DONE);
	tb_free(t);
}

static void free_page_reporting(void **state)
{
	(void)state;
	struct tb *t = tb_new(all_on);
	struct balloon_metrics *m = virtio_balloon_metrics(t->b);
	dirty(t, 0x100000, 0x200000);
	struct fake_buf s[3] = {{0x100000, 0x100000, true}, {0x280000, 0x80000, true},
			   {0x200800, 0x1000, true}};
	fake_vq_add(&t->vq[4], s, 3);
	virtio_balloon_queue_event(t->b, 4);
	assert_int_equal(fake_vq_used_idx(&t->vq[4]), 1);
	assert_true(zero(t, 0x100000, 0x100000));
	assert_true(zero(t, 0x280000, 0x80000));
	assert_false(zero(t, 0x200000, 0x80000));
	assert_int_equal(metric_count(&m->free_page_report_count), 3);
	assert_int_equal(metric_count(&m->free_page_report_freed), 0x180000);
	assert_int_equal(metric_count(&m->free_page_report_fails), 1);
	tb_free(t);
}

static void target(void **state)
{
	(void)state;
	struct tb *t = tb_new(all_on);
	ember_err e;
	int irqs = t->irqs;
	assert_int_equal(virtio_balloon_set_target(t->b, 6, &e), 0);
	assert_int_equal(config32(t, 0), 6 * 256);
	assert_true(t->irqs > irqs); /* a config change interrupt */
	assert_int_equal(virtio_balloon_set_target(t->b, 9, &e), -1); /* 8 MiB of RAM */
	assert_string_equal(e.msg, "Requested memory should be less than 8MiB");
	json_t *j = virtio_balloon_config_json(t->b);
	assert_int_equal(json_integer_value(json_object_get(j, "amount_mib")), 6);
	json_decref(j);
	w32(t, VIRTIO_MMIO_STATUS, 0); /* reset: not active */
	assert_int_equal(virtio_balloon_set_target(t->b, 1, &e), -1);
	assert_string_equal(e.msg, "Device not activated yet.");
	tb_free(t);
}

static void config_parsing(void **state)
{
	(void)state;
	ember_err e;
	struct balloon_config c;
	json_t *j = json_loads("{\"amount_mib\": 10, \"deflate_on_oom\": true}", 0, NULL);
	assert_int_equal(balloon_config_parse(j, &c, &e), 0);
	assert_int_equal(c.amount_mib, 10);
	assert_true(c.deflate_on_oom);
	assert_int_equal(c.stats_polling_interval_s, 0);
	json_decref(j);
	const char *bad[] = {
		"{\"amount_mib\": 10}",
		"{\"deflate_on_oom\": true}",
		"{\"amount_mib\": -1, \"deflate_on_oom\": true}",
		"{\"amount_mib\": 16777216, \"deflate_on_oom\": true}",
		"{\"amount_mib\": 1, \"deflate_on_oom\": true, \"stats_polling_interval_s\": 65536}",
		"{\"amount_mib\": 1, \"deflate_on_oom\": true, \"extra\": 1}",
		"{\"amount_mib\": \"1\", \"deflate_on_oom\": true}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = json_loads(bad[i], 0, NULL);
		assert_non_null(j);
		if (!balloon_config_parse(j, &c, &e))
			fail_msg("accepted %s", bad[i]);
		json_decref(j);
	}
	j = balloon_config_json(&all_on);
	char *s = json_dumps(j, JSON_SORT_KEYS);
	assert_string_equal(s, "{\"amount_mib\": 4, \"deflate_on_oom\": true, "
			       "\"free_page_hinting\": true, \"free_page_reporting\": true, "
			       "\"stats_polling_interval_s\": 1}");
	free(s);
	json_decref(j);
}

/* ---- Snapshots ---- */

/* The device made anew from cfg (as a restore does), its transport and
 * then its own state restored. */
static int restore_into_new(struct tb *t, struct balloon_config cfg, json_t *transport,
			    json_t *dev, ember_err *e)
{
	virtio_balloon_destroy(t->b);
	struct virtio_balloon_params p = {
		.cfg = &cfg, .gm = &t->gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t},
	};
	if (virtio_balloon_create(&t->b, &p, e))
		fail_msg("virtio_balloon_create: %s", e->msg);
	t->m = virtio_balloon_mmio(t->b);
	if (virtio_mmio_restore(t->m, transport, e))
		fail_msg("virtio_mmio_restore: %s", e->msg);
	return virtio_balloon_restore(t->b, dev, e);
}

/* A device with some of everything: pages in the balloon (two runs, one
 * high), a target, the driver's actual, statistics held, a hinting run. */
static struct tb *busy_balloon(void)
{
	struct tb *t = tb_new(all_on);
	ember_err e;
	uint32_t pfn[4] = {0x200, 0x201, 0x202, (uint32_t)HIGH_PFN + 3};
	offer_pfns(t, 0, DATA, pfn, 4);
	assert_int_equal(virtio_balloon_set_target(t->b, 3, &e), 0);
	w32(t, VIRTIO_MMIO_CONFIG + 4, 4);
	uint8_t buf[10];
	put_stat(buf, 0, 4, 0x8000000000000001ULL); /* free_memory, above INT64_MAX */
	assert_int_equal(gm_write(&t->gm, DATA + 0x100, buf, sizeof(buf)), 0);
	struct fake_buf st = {DATA + 0x100, sizeof(buf), false};
	fake_vq_add(&t->vq[2], &st, 1);
	virtio_balloon_queue_event(t->b, 2);
	assert_int_equal(virtio_balloon_set_stats_interval(t->b, 7, &e), 0);
	fake_vq_add(&t->vq[2], &st, 1); /* the driver refills it after the poll */
	virtio_balloon_queue_event(t->b, 2);
	assert_int_equal(fake_vq_used_idx(&t->vq[2]), 1); /* the second one held */
	assert_int_equal(virtio_balloon_hint_start(t->b, false, &e), 0);
	return t;
}

static void snapshot_round_trip(void **state)
{
	(void)state;
	struct tb *t = busy_balloon();
	ember_err e = {{0}};
	uint32_t hint_id = config32(t, 8);
	json_t *dev = virtio_balloon_save(t->b);
	json_t *transport = virtio_mmio_save(t->m);
	assert_non_null(dev);
	assert_non_null(transport);
	json_t *st = json_array_get(json_object_get(dev, "stats"), 0);
	assert_true((uint64_t)json_integer_value(json_array_get(st, 1)) == 0x8000000000000001ULL);
	/* Restored onto the config the VM was made with: the state wins. */
	assert_int_equal(restore_into_new(t, all_on, transport, dev, &e), 0);
	assert_int_equal(config32(t, 0), 3 * 256);
	assert_int_equal(config32(t, 4), 4);
	assert_int_equal(config32(t, 8), hint_id);
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 4);
	json_t *j = virtio_balloon_config_json(t->b);
	assert_int_equal(json_integer_value(json_object_get(j, "amount_mib")), 3);
	assert_int_equal(json_integer_value(json_object_get(j, "stats_polling_interval_s")), 7);
	json_decref(j);
	j = virtio_balloon_stats_json(t->b, &e);
	assert_non_null(j);
	/* GET clamps it; the state carried it whole (checked below). */
	assert_true(json_integer_value(json_object_get(j, "free_memory")) == INT64_MAX);
	json_decref(j);
	j = virtio_balloon_hint_status(t->b, &e);
	assert_int_equal(json_integer_value(json_object_get(j, "host_cmd")), hint_id);
	json_decref(j);
	/* The timer runs at the saved interval and gives the held buffer back. */
	struct itimerspec its;
	assert_int_equal(timerfd_gettime(virtio_balloon_timer_fd(t->b), &its), 0);
	assert_int_equal(its.it_interval.tv_sec, 7);
	struct itimerspec now = {{7, 0}, {0, 1}};
	assert_int_equal(timerfd_settime(virtio_balloon_timer_fd(t->b), 0, &now, NULL), 0);
	struct pollfd pfd = {.fd = virtio_balloon_timer_fd(t->b), .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 1000), 1);
	virtio_balloon_timer_event(t->b);
	assert_int_equal(fake_vq_used_idx(&t->vq[2]), 2);
	/* The pages in the balloon are known: deflating them is no duplicate,
	 * a next inflate of one is. */
	struct balloon_metrics *m = virtio_balloon_metrics(t->b);
	uint32_t pfn[2] = {0x201, (uint32_t)HIGH_PFN + 3};
	offer_pfns(t, 1, DATA, pfn, 2);
	assert_int_equal(virtio_balloon_inflated_pages(t->b), 2);
	assert_int_equal(metric_count(&m->duplicate_pfn_count), 0);
	uint32_t again = 0x200;
	offer_pfns(t, 0, DATA, &again, 1);
	assert_int_equal(metric_count(&m->duplicate_pfn_count), 1);
	/* A PATCH after restore moves the target. */
	assert_int_equal(virtio_balloon_set_target(t->b, 5, &e), 0);
	assert_int_equal(config32(t, 0), 5 * 256);
	json_decref(dev);
	json_decref(transport);
	tb_free(t);
}

/* Edits of a good state, each of which a restore must refuse. */
static void edit(json_t *dev, const char *path, json_t *v)
{
	const char *dot = strchr(path, '.');
	if (!dot) {
		json_object_set_new(dev, path, v);
		return;
	}
	char key[32];
	snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
	json_object_set_new(json_object_get(dev, key), dot + 1, v);
}

static void snapshot_state_is_checked(void **state)
{
	(void)state;
	struct {
		const char *path, *value, *words;
	} bad[] = {
		{"target_pages", "2304", "target"},	/* 9 MiB of 8 */
		{"target_pages", "300", "target"},	/* not whole MiB */
		{"target_pages", "-256", "target_pages"},
		{"actual_pages", "4294967296", "actual_pages"},
		{"actual_pages", "\"4\"", "actual_pages"},
		{"stats_polling_interval_s", "0", "statistics interval"},
		{"stats_polling_interval_s", "65536", "stats_polling_interval_s"},
		{"stats_head", "256", "stats_head"},
		{"stats_head", "255", "not on the queue"}, /* the queue has 256 entries: ok */
		{"stats_held", "1", "stats_held"},
		{"stats", "[[16, 1]]", "stats entry 0"},
		{"stats", "[[4]]", "stats entry 0"},
		{"stats", "{}", "stats"},
		{"hinting", "[]", "hinting"},
		{"hinting.host_cmd", "4294967296", "host_cmd"},
		{"hinting.host_cmd", "9", "hinting command"},
		{"hinting.guest_cmd_set", "0", "guest_cmd_set"},
		{"inflated", "{}", "inflated"},
		{"inflated", "[[1536, 1]]", "run 0"},		/* in the MMIO gap */
		{"inflated", "[[1535, 2]]", "run 0"},		/* into the gap */
		{"inflated", "[[512, 4], [514, 1]]", "run 1"}, /* overlapping */
		{"inflated", "[[512, 4], [516, 1]]", "run 1"}, /* not one run */
		{"inflated", "[[512, 0]]", "run 0"},
		{"inflated", "[[-1, 2]]", "run 0"},
		{"inflated", "[[512]]", "run 0"},
		{"inflated", "[[4294967295, 1]]", "run 0"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tb *t = busy_balloon();
		json_t *dev = virtio_balloon_save(t->b);
		json_t *transport = virtio_mmio_save(t->m);
		json_t *v = json_loads(bad[i].value, JSON_DECODE_ANY, NULL);
		assert_non_null(v);
		edit(dev, bad[i].path, v);
		ember_err e = {{0}};
		int rc = restore_into_new(t, all_on, transport, dev, &e);
		if (i == 8) {
			/* Head 255 is a slot of the queue: only a range test. */
			assert_int_equal(rc, 0);
		} else {
			if (rc != -1 || !strstr(e.msg, bad[i].words))
				fail_msg("%s = %s: rc %d, \"%s\" (wanted \"%s\")", bad[i].path,
					 bad[i].value, rc, e.msg, bad[i].words);
		}
		json_decref(dev);
		json_decref(transport);
		tb_free(t);
	}
	/* A device without statistics or hinting takes no state of them. */
	struct balloon_config plain = {.amount_mib = 1};
	struct tb *t = busy_balloon();
	json_t *dev = virtio_balloon_save(t->b);
	json_t *transport = virtio_mmio_save(t->m);
	tb_free(t);
	json_decref(transport);
	t = tb_new(plain);
	transport = virtio_mmio_save(t->m);
	ember_err e = {{0}};
	assert_int_equal(restore_into_new(t, plain, transport, dev, &e), -1);
	assert_non_null(strstr(e.msg, "statistics"));
	json_decref(dev);
	json_decref(transport);
	tb_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(features_and_config),
		cmocka_unit_test(inflate_gives_pages_back),
		cmocka_unit_test(hostile_page_lists),
		cmocka_unit_test(statistics),
		cmocka_unit_test(free_page_hinting),
		cmocka_unit_test(free_page_reporting),
		cmocka_unit_test(target),
		cmocka_unit_test(config_parsing),
		cmocka_unit_test(snapshot_round_trip),
		cmocka_unit_test(snapshot_state_is_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
