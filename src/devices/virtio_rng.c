/* The virtio-rng device model (virtio 1.2 section 5.4): one queue of
 * device-writable buffers, each filled with random bytes. */
#include "devices/virtio_rng.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util/json_strict.h"
#include "util/log.h"

const struct metrics_group entropy_metrics_group =
	METRICS_SINGLE_GROUP("entropy", METRICS_ENTROPY, struct entropy_metrics);

enum rng_complaint { RNG_BAD_CHAIN, RNG_BROKEN_RING, RNG_NOT_READY, RNG_NR_COMPLAINTS };

struct virtio_rng {
	struct virtio_mmio mmio;
	const struct guest_mem *gm;
	struct rate_limiter rl;
	struct rate_limiter_timer timer;
	uint64_t (*now_ns)(void *ctx);
	void *clock_ctx;
	struct entropy_metrics *m;
	struct entropy_metrics own_metrics;
	uint64_t complaints[RNG_NR_COMPLAINTS];
	bool active;
	bool held; /* chain was popped and refused by the rate limiter */
	struct virtq_seg segs[VIRTIO_RNG_QUEUE_SIZE];
	struct virtq_chain chain;
	uint8_t buf[VIRTIO_RNG_MAX_BYTES];
};

__attribute__((format(printf, 3, 4))) static void complain(struct virtio_rng *r,
							   enum rng_complaint kind,
							   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_guest_errorv(__FILE__, __LINE__, &r->complaints[kind], "entropy", fmt, ap);
	va_end(ap);
}

static uint64_t now_ns(struct virtio_rng *r)
{
	return r->now_ns ? r->now_ns(r->clock_ctx) : rate_limiter_now_ns();
}

static struct virtq *queue(struct virtio_rng *r)
{
	return virtio_mmio_queue(&r->mmio, 0);
}

/* Fills buf with n random bytes; never blocks (a host pool not yet
 * initialised is a failure, counted). */
static int fill_random(struct virtio_rng *r, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t got = getrandom(r->buf + done, n - done, GRND_NONBLOCK);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			metric_inc(&r->m->host_rng_fails);
			return -1;
		}
		done += (size_t)got;
	}
	return 0;
}

/* The bytes a good chain gets: 0 if it has a device-readable buffer (the
 * spec's buffers are write-only) or no room. */
static uint32_t request_len(struct virtio_rng *r)
{
	const struct virtq_chain *c = &r->chain;
	if (c->nr_read || !c->write_len) {
		complain(r, RNG_BAD_CHAIN, "request with %u readable and %u writable bytes",
			 c->read_len, c->write_len);
		metric_inc(&r->m->entropy_event_fails);
		return 0;
	}
	return c->write_len < VIRTIO_RNG_MAX_BYTES ? c->write_len : VIRTIO_RNG_MAX_BYTES;
}

static void arm_timer(struct virtio_rng *r)
{
	ember_err e;
	if (rate_limiter_timer_arm(&r->timer, &r->rl, &e)) {
		metric_inc(&r->m->entropy_event_fails);
		LOG_E("entropy: %s", e.msg);
	}
}

/* Serves the available ring until it is empty, the rate limiter refuses a
 * request, or VIRTIO_RNG_BUDGET requests were served (then the device
 * notifies itself, so the VMM thread serves others first). */
static void process(struct virtio_rng *r)
{
	if (!r->active)
		return;
	struct virtq *q = queue(r);
	bool pushed = false;
	for (unsigned served = 0;; served++) {
		if (served == VIRTIO_RNG_BUDGET) {
			r->mmio.hooks.queue_notify(r->mmio.hooks.ctx, 0);
			break;
		}
		if (!r->held) {
			enum virtq_pop_result res = virtq_pop(q, r->gm, &r->chain);
			if (res == VIRTQ_EMPTY) {
				if (virtq_enable_notify(q, r->gm))
					continue;
				break;
			}
			if (res == VIRTQ_BROKEN) {
				complain(r, RNG_BROKEN_RING, "queue broken (%s); device needs reset",
					 virtq_strerror(r->chain.err));
				metric_inc(&r->m->entropy_event_fails);
				virtio_mmio_needs_reset(&r->mmio);
				break;
			}
			metric_inc(&r->m->entropy_event_count);
			if (res == VIRTQ_BAD_CHAIN) {
				complain(r, RNG_BAD_CHAIN, "bad descriptor chain (%s)",
					 virtq_strerror(r->chain.err));
				metric_inc(&r->m->entropy_event_fails);
				pushed |= virtq_push(q, r->gm, r->chain.head, 0) == 0;
				continue;
			}
		}
		uint32_t len = request_len(r);
		if (len && !rate_limiter_consume_both(&r->rl, len, 1, now_ns(r))) {
			r->held = true;
			metric_inc(&r->m->entropy_rate_limiter_throttled);
			arm_timer(r);
			break;
		}
		r->held = false;
		if (len && (fill_random(r, len) || virtq_chain_write(r->gm, &r->chain, 0, r->buf,
								       len))) {
			metric_inc(&r->m->entropy_event_fails);
			len = 0;
		}
		if (virtq_push(q, r->gm, r->chain.head, len) == 0) {
			pushed = true;
			metric_add(&r->m->entropy_bytes, len);
		}
	}
	if (pushed)
		virtio_mmio_signal_used(&r->mmio, q);
}

void virtio_rng_process_queue(struct virtio_rng *r)
{
	if (rate_limiter_is_blocked(&r->rl))
		metric_inc(&r->m->rate_limiter_event_count);
	else
		process(r);
}

void virtio_rng_rate_limiter_event(struct virtio_rng *r)
{
	metric_inc(&r->m->rate_limiter_event_count);
	if (rate_limiter_timer_clear(&r->timer) < 0)
		metric_inc(&r->m->entropy_event_fails);
	if (rate_limiter_timer_fired(&r->rl, now_ns(r)))
		process(r);
	else
		arm_timer(r);
}

/* ---- virtio_dev_ops ---- */

static uint64_t rng_features(void *dev)
{
	(void)dev;
	return 0; /* virtio-rng has no feature bits of its own */
}

static void rng_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	(void)dev, (void)offset, (void)data, (void)len; /* no config space */
}

static int rng_activate(void *dev, struct virtio_mmio *m)
{
	struct virtio_rng *r = dev;
	if (!virtio_mmio_queue(m, 0)->ready) {
		metric_inc(&r->m->activate_fails);
		complain(r, RNG_NOT_READY, "DRIVER_OK without a ready queue");
		return -1;
	}
	r->active = true;
	return 0;
}

static void rng_reset(void *dev)
{
	struct virtio_rng *r = dev;
	r->active = r->held = false;
}

static const struct virtio_dev_ops rng_ops = {
	.device_id = VIRTIO_ID_RNG,
	.nr_queues = 1,
	.queue_max_size = {VIRTIO_RNG_QUEUE_SIZE},
	.config_size = 0,
	.features = rng_features,
	.config_read = rng_config_read,
	.activate = rng_activate,
	.reset = rng_reset,
};

/* ---- Life cycle ---- */

int virtio_rng_create(struct virtio_rng **out, const struct virtio_rng_params *p, ember_err *e)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));
	if (!r)
		return err_set(e, "entropy: out of memory");
	r->timer.fd = -1;
	r->gm = p->gm;
	r->now_ns = p->now_ns;
	r->clock_ctx = p->clock_ctx;
	r->m = p->metrics ? p->metrics : &r->own_metrics;
	virtq_chain_init(&r->chain, r->segs, VIRTIO_RNG_QUEUE_SIZE);
	rate_limiter_init(&r->rl, &p->cfg->rate_limiter, now_ns(r));
	if (rate_limiter_timer_open(&r->timer, e) ||
	    virtio_mmio_init(&r->mmio, &rng_ops, r, p->gm, &p->hooks, e)) {
		virtio_rng_destroy(r);
		return err_prefix(e, "entropy");
	}
	*out = r;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *r)
{
	if (!r)
		return;
	rate_limiter_timer_close(&r->timer);
	free(r);
}

struct virtio_mmio *virtio_rng_mmio(struct virtio_rng *r)
{
	return &r->mmio;
}

struct entropy_metrics *virtio_rng_metrics(struct virtio_rng *r)
{
	return r->m;
}

int virtio_rng_rate_limiter_fd(const struct virtio_rng *r)
{
	return r->timer.fd;
}

void virtio_rng_prepare_save(struct virtio_rng *r)
{
	/* The request the rate limiter held back goes back on the available
	 * ring (it is the last chain popped): the restored device serves it,
	 * and the source, if it resumes, pops it again. */
	if (r->held) {
		queue(r)->last_avail--;
		r->held = false;
	}
}

json_t *virtio_rng_config_json(const struct virtio_rng *r)
{
	struct entropy_config c;
	rate_limiter_get_config(&r->rl, &c.rate_limiter);
	return entropy_config_json(&c);
}

/* ---- Config ---- */

int entropy_config_parse(json_t *j, struct entropy_config *out, ember_err *e)
{
	struct {
		json_t *rate_limiter;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), rate_limiter, JF_OBJECT, false),
	};
	struct entropy_config c = {0};
	if (json_strict_parse("entropy", j, f, 1, &v, e))
		return -1;
	if (v.rate_limiter && rate_limiter_config_parse(v.rate_limiter, &c.rate_limiter, e))
		return err_prefix(e, "entropy");
	*out = c;
	return 0;
}

json_t *entropy_config_json(const struct entropy_config *c)
{
	return json_pack("{s:o}", "rate_limiter", rate_limiter_config_json(&c->rate_limiter));
}
