/* virtio-rng, Firecracker's entropy device: the guest's buffers filled
 * with random bytes from the host (getrandom), at most 64 KiB a request,
 * optionally rate limited. One per VM, configured by PUT /entropy or the
 * config file's "entropy" section. */
#ifndef EMBER_VIRTIO_RNG_H
#define EMBER_VIRTIO_RNG_H

#include <stdint.h>

#include <jansson.h>

#include "devices/rate_limiter.h"
#include "util/err.h"
#include "util/metrics.h"
#include "virtio/mmio.h"
#include "guest/guest_mem.h"

#define VIRTIO_ID_RNG 4
#define VIRTIO_RNG_QUEUE_SIZE 256
/* Bytes given for one request, as Firecracker. */
#define VIRTIO_RNG_MAX_BYTES (64 * 1024)
/* Requests served per queue notification before the device lets the VMM
 * thread serve others (it comes back through its own notification). */
#define VIRTIO_RNG_BUDGET 64

/* Firecracker's "entropy" metrics group. */
#define METRICS_ENTROPY(X, a) \
	X(a, inc, activate_fails) \
	X(a, inc, entropy_event_fails) \
	X(a, inc, entropy_event_count) \
	X(a, inc, entropy_bytes) \
	X(a, inc, host_rng_fails) \
	X(a, inc, entropy_rate_limiter_throttled) \
	X(a, inc, rate_limiter_event_count)

struct entropy_metrics { METRICS_ENTROPY(METRICS_MEMBER, _) };
extern const struct metrics_group entropy_metrics_group;

/* Firecracker's EntropyDevice object. */
struct entropy_config {
	struct rate_limiter_config rate_limiter;
};

int entropy_config_parse(json_t *j, struct entropy_config *out, ember_err *e);
json_t *entropy_config_json(const struct entropy_config *c);

struct virtio_rng;

struct virtio_rng_params {
	const struct entropy_config *cfg;
	const struct guest_mem *gm;
	struct virtio_mmio_hooks hooks;
	struct entropy_metrics *metrics; /* NULL counts into a private set */
	/* CLOCK_MONOTONIC nanoseconds for the rate limiter; NULL means
	 * rate_limiter_now_ns. Tests pass a fake clock. */
	uint64_t (*now_ns)(void *ctx);
	void *clock_ctx;
};

int virtio_rng_create(struct virtio_rng **out, const struct virtio_rng_params *p, ember_err *e);
void virtio_rng_destroy(struct virtio_rng *r);
struct virtio_mmio *virtio_rng_mmio(struct virtio_rng *r);
struct entropy_metrics *virtio_rng_metrics(struct virtio_rng *r);
int virtio_rng_rate_limiter_fd(const struct virtio_rng *r);
/* The guest notified the queue. */
void virtio_rng_process_queue(struct virtio_rng *r);
/* The rate limiter's timer fired. */
void virtio_rng_rate_limiter_event(struct virtio_rng *r);
/* Before a snapshot (VM paused): a request taken from the queue and held
 * back by the rate limiter goes back to the driver's available ring. */
void virtio_rng_prepare_save(struct virtio_rng *r);
json_t *virtio_rng_config_json(const struct virtio_rng *r);

#endif
