/* libFuzzer target: a hostile driver against virtio-rng (the entropy
 * device). The input's first byte sets a rate limiter (bit 0: a small
 * bandwidth bucket, bit 1: a small ops bucket) and the queue size; the
 * rest is a script (fuzz_driver.h) whose own ops notify the queue and move
 * a fake clock on, firing the limiter's timer. The device's own queue
 * kick (after VIRTIO_RNG_BUDGET requests) is served as the VMM would.
 *
 * Checked: the device gives at most VIRTIO_RNG_MAX_BYTES per request it
 * answers (its entropy_bytes metric against the used index). The used
 * ring itself is not read back: a guest may well point a buffer at it.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh virtio_rng_fuzz (docs/fuzzing.md) */
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_rng.h"
#include "fuzz_driver.h"
#include "fuzz_quiet.h"

static uint64_t clock_ns;
static unsigned notified; /* the device kicked its own queue (budget spent) */

static void hook_irq(void *ctx)
{
	(void)ctx;
}

/* As the VMM wires it (vmm/virtio_devs.c): the queue's ioeventfd, served
 * again by the loop below. */
static void hook_notify(void *ctx, uint32_t queue)
{
	(void)ctx;
	if (queue)
		abort();
	notified++;
}

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return clock_ns;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	if (len < 1)
		return 0;
	struct fz f = {in, len, 1};
	struct fz_mem mem;
	fz_mem_init(&mem);
	clock_ns = 1000000000;
	struct entropy_config cfg = {0};
	if (in[0] & 1)
		cfg.rate_limiter = (struct rate_limiter_config){
			.has_bandwidth = true, .bandwidth = {.size = 4096, .refill_time_ms = 100}};
	if (in[0] & 2) {
		cfg.rate_limiter.has_ops = true;
		cfg.rate_limiter.ops = (struct token_bucket_config){.size = 2, .refill_time_ms = 10};
	}
	struct virtio_rng_params p = {.cfg = &cfg, .gm = &mem.gm, .hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify},
				      .now_ns = fake_clock};
	struct virtio_rng *r;
	ember_err e;
	if (virtio_rng_create(&r, &p, &e))
		abort();
	struct virtio_mmio *m = virtio_rng_mmio(r);
	struct fz_driver d = {.m = m, .gm = &mem.gm};
	if (!(in[0] & 8))
		fz_bring_up(&d, ~0ULL, in[0] >> 4);
	struct virtq *q = virtio_mmio_queue(m, 0);
	while (fz_more(&f)) {
		uint8_t op = fz_u8(&f) % 9;
		if (fz_driver_op(&d, op, &f))
			continue;
		uint16_t before = q->used_idx;
		uint64_t bytes = metric_count(&virtio_rng_metrics(r)->entropy_bytes);
		if (op == 7) {
			notified = 1;
			for (int i = 0; notified && i < 8; i++) { /* bounded: 8 budgets */
				notified = 0;
				virtio_rng_process_queue(r);
			}
		} else {
			clock_ns += (uint64_t)fz_u16(&f) * 1000000;
			virtio_rng_rate_limiter_event(r);
		}
		uint16_t answered = (uint16_t)(q->used_idx - before);
		if (metric_count(&virtio_rng_metrics(r)->entropy_bytes) - bytes >
		    (uint64_t)answered * VIRTIO_RNG_MAX_BYTES)
			abort();
	}
	virtio_rng_destroy(r);
	fz_mem_free(&mem);
	return 0;
}
