/* virtio-rng behind the VMM's device interface (devices/device.h), with its
 * own config section: "entropy" in the config file and GET /vm/config,
 * PUT /entropy before boot. */
#include "devices/device.h"

#include <stdlib.h>
#include <sys/epoll.h>

#include "devices/virtio_rng.h"

/* The single device's id, for its metrics set and messages. */
#define ENTROPY_ID "rng"

struct entropy_device {
	struct virtio_rng *rng;
	struct metrics_devices *metrics; /* holds a reference on its set if set */
};

static void entropy_destroy(void *dev)
{
	struct entropy_device *d = dev;
	if (!d)
		return;
	virtio_rng_destroy(d->rng);
	if (d->metrics)
		metrics_device_unregister(d->metrics, &entropy_metrics_group, ENTROPY_ID);
	free(d);
}

static int entropy_create(const void *cfg, const struct device_env *env, void **out, ember_err *e)
{
	struct entropy_device *d = calloc(1, sizeof(*d));
	if (!d)
		return err_set(e, "entropy: out of memory");
	struct entropy_metrics *m = NULL;
	if (env->metrics &&
	    !(m = metrics_device_register(env->metrics, &entropy_metrics_group, ENTROPY_ID, e))) {
		free(d);
		return err_prefix(e, "entropy");
	}
	d->metrics = env->metrics;
	struct virtio_rng_params p = {.cfg = cfg, .gm = env->gm, .hooks = env->hooks, .metrics = m};
	if (virtio_rng_create(&d->rng, &p, e)) {
		entropy_destroy(d);
		return -1;
	}
	*out = d;
	return 0;
}

static struct virtio_mmio *entropy_mmio(void *dev)
{
	return virtio_rng_mmio(((struct entropy_device *)dev)->rng);
}

static const char *entropy_id(const void *dev)
{
	(void)dev;
	return ENTROPY_ID;
}

static void entropy_queue_event(void *dev, unsigned queue)
{
	(void)queue;
	virtio_rng_process_queue(((struct entropy_device *)dev)->rng);
}

static void on_limiter(void *dev)
{
	virtio_rng_rate_limiter_event(((struct entropy_device *)dev)->rng);
}

static size_t entropy_events(void *dev, struct device_event *out, size_t max)
{
	if (!max)
		return 0;
	out[0] = (struct device_event){
		virtio_rng_rate_limiter_fd(((struct entropy_device *)dev)->rng), EPOLLIN, on_limiter};
	return 1;
}

static json_t *entropy_json(const void *dev)
{
	return virtio_rng_config_json(((const struct entropy_device *)dev)->rng);
}

/* ---- Its config ---- */

static int cfg_parse(json_t *j, void **out, ember_err *e)
{
	struct entropy_config *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(e, "entropy: out of memory");
	if (entropy_config_parse(j, c, e)) {
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

static json_t *cfg_json(const void *cfg)
{
	return entropy_config_json(cfg);
}

static const struct device_config_ops entropy_config_ops = {
	.key = "entropy",
	.parse = cfg_parse,
	.free = free,
	.to_json = cfg_json,
};

/* Requests are served at once, but for one the rate limiter held back:
 * it goes back to the driver (a restored guest would otherwise wait for
 * it for good). */
static int entropy_save(void *dev, json_t **state, ember_err *e)
{
	(void)e;
	virtio_rng_prepare_save(((struct entropy_device *)dev)->rng);
	*state = json_object();
	return 0;
}

static int entropy_restore(void *dev, json_t *state, ember_err *e)
{
	(void)dev;
	if (!json_is_object(state))
		return err_set(e, "entropy state is not an object");
	return 0;
}

const struct device_ops entropy_device_ops = {
	.kind = "entropy",
	.metrics_group = &entropy_metrics_group,
	.config = &entropy_config_ops,
	.create = entropy_create,
	.destroy = entropy_destroy,
	.mmio = entropy_mmio,
	.id = entropy_id,
	.queue_event = entropy_queue_event,
	.events = entropy_events,
	.config_json = entropy_json,
	.save = entropy_save,
	.restore = entropy_restore,
};
