/* libFuzzer target: a hostile driver against virtio-balloon. The input's
 * first byte picks the features (bit 0 statistics, bit 1 hinting, bit 2
 * reporting, bit 3 deflate_on_oom; bit 4: no bring-up) and the rest is a
 * script (fuzz_driver.h) with the target's own ops: a chain on any of the
 * device's queues (page lists, statistics, hints, reports), a queue
 * notification, and the API's requests (target, statistics interval,
 * hinting start/stop, statistics and hinting status). The device's own
 * queue kick (its budget spent) is served as the VMM would.
 *
 * Checked: the pages the device counts in the balloon never exceed guest
 * RAM's, and every request's JSON is well formed. Discards land in the
 * exactly-sized guest memory: ASan sees one that strays.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh virtio_balloon_fuzz (docs/fuzzing.md) */
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_balloon.h"
#include "fuzz_driver.h"
#include "fuzz_quiet.h"

static unsigned notified; /* the device kicked its own queue (budget spent) */

static void hook_irq(void *ctx)
{
	(void)ctx;
}

static void hook_notify(void *ctx, uint32_t queue)
{
	(void)ctx, (void)queue;
	notified++;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	if (len < 1)
		return 0;
	struct fz f = {in, len, 1};
	struct fz_mem mem;
	fz_mem_init(&mem);
	struct balloon_config cfg = {
		.amount_mib = 0, .deflate_on_oom = in[0] & 8,
		.stats_polling_interval_s = in[0] & 1, .free_page_hinting = in[0] & 2,
		.free_page_reporting = in[0] & 4};
	struct virtio_balloon_params p = {
		.cfg = &cfg, .gm = &mem.gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify}};
	struct virtio_balloon *b;
	ember_err e;
	if (virtio_balloon_create(&b, &p, &e))
		abort();
	struct virtio_mmio *m = virtio_balloon_mmio(b);
	unsigned nq = m->ops->nr_queues;
	struct fz_driver d = {.m = m, .gm = &mem.gm};
	if (!(in[0] & 16))
		fz_bring_up(&d, ~0ULL, 8);
	uint64_t ram_pages = (FZ_LOW + FZ_HIGH) >> 12;
	while (fz_more(&f)) {
		uint8_t op = fz_u8(&f) % 12;
		if (fz_driver_op(&d, op, &f))
			continue;
		json_t *j = NULL;
		switch (op) {
		case 7: { /* u8 queue, then a chain (fz_chain's format) */
			unsigned q = fz_u8(&f) % nq;
			fz_chain_on(&d, &f, q, fz_u8(&f));
			break;
		}
		case 8: { /* u8 queue: the guest notifies it */
			unsigned q = fz_u8(&f) % nq;
			notified = 1;
			for (int i = 0; notified && i < 8; i++) { /* bounded: 8 budgets */
				notified = 0;
				virtio_balloon_queue_event(b, q);
			}
			break;
		}
		case 9: /* u16: PATCH /balloon */
			virtio_balloon_set_target(b, fz_u16(&f), &e);
			break;
		case 10: /* u8: PATCH /balloon/statistics (hands the buffer back) */
			virtio_balloon_set_stats_interval(b, fz_u8(&f) % 3, &e);
			break;
		default: { /* u8: hinting and the GETs */
			uint8_t what = fz_u8(&f) % 5;
			if (what == 0)
				virtio_balloon_hint_start(b, fz_u8(&f) & 1, &e);
			else if (what == 1)
				virtio_balloon_hint_stop(b, &e);
			else if (what == 2)
				j = virtio_balloon_hint_status(b, &e);
			else if (what == 3)
				j = virtio_balloon_stats_json(b, &e);
			else
				j = virtio_balloon_config_json(b);
			break;
		}
		}
		if (j) {
			char *s = json_dumps(j, 0);
			if (!s)
				abort();
			free(s);
			json_decref(j);
		}
		if (virtio_balloon_inflated_pages(b) > ram_pages)
			abort();
	}
	virtio_balloon_destroy(b);
	fz_mem_free(&mem);
	return 0;
}
