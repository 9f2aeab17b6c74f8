/* virtio-vsock behind the VMM's device interface (devices/device.h), with
 * its own config section: "vsock" in the config file and GET /vm/config,
 * PUT /vsock before boot. */
#include "devices/device.h"

#include <stdlib.h>
#include <sys/epoll.h>

#include "devices/virtio_vsock.h"

/* The single device's id, for its metrics set. */
#define VSOCK_ID "vsock"

struct vsock_device {
	struct virtio_vsock *vs;
	struct metrics_devices *metrics; /* holds a reference on its set if set */
};

static void vsock_destroy(void *dev)
{
	struct vsock_device *d = dev;
	if (!d)
		return;
	virtio_vsock_destroy(d->vs);
	if (d->metrics)
		metrics_device_unregister(d->metrics, &vsock_metrics_group, VSOCK_ID);
	free(d);
}

static int vsock_create(const void *cfg, const struct device_env *env, void **out, ember_err *e)
{
	struct vsock_device *d = calloc(1, sizeof(*d));
	if (!d)
		return err_set(e, "vsock: out of memory");
	struct vsock_metrics *m = NULL;
	if (env->metrics &&
	    !(m = metrics_device_register(env->metrics, &vsock_metrics_group, VSOCK_ID, e))) {
		free(d);
		return err_prefix(e, "vsock");
	}
	d->metrics = env->metrics;
	struct virtio_vsock_params p = {.cfg = cfg, .gm = env->gm, .hooks = env->hooks, .metrics = m};
	if (virtio_vsock_create(&d->vs, &p, e)) {
		vsock_destroy(d);
		return -1;
	}
	*out = d;
	return 0;
}

static struct virtio_mmio *vsock_mmio(void *dev)
{
	return virtio_vsock_mmio(((struct vsock_device *)dev)->vs);
}

static const char *vsock_id(const void *dev)
{
	(void)dev;
	return VSOCK_ID;
}

static void vsock_queue_event(void *dev, unsigned queue)
{
	virtio_vsock_queue_event(((struct vsock_device *)dev)->vs, queue);
}

static void on_backend(void *dev)
{
	virtio_vsock_backend_event(((struct vsock_device *)dev)->vs);
}

static void on_timer(void *dev)
{
	virtio_vsock_timer_event(((struct vsock_device *)dev)->vs);
}

static size_t vsock_events(void *dev, struct device_event *out, size_t max)
{
	struct virtio_vsock *vs = ((struct vsock_device *)dev)->vs;
	if (max < 2)
		return 0;
	out[0] = (struct device_event){virtio_vsock_epoll_fd(vs), EPOLLIN, on_backend};
	out[1] = (struct device_event){virtio_vsock_timer_fd(vs), EPOLLIN, on_timer};
	return 2;
}

static json_t *vsock_json(const void *dev)
{
	return virtio_vsock_config_json(((const struct vsock_device *)dev)->vs);
}

/* ---- Snapshots ---- */

static int vsock_save(void *dev, json_t **state, ember_err *e)
{
	*state = virtio_vsock_save(((struct vsock_device *)dev)->vs);
	return *state ? 0 : err_set(e, "vsock: out of memory");
}

static int vsock_restore(void *dev, json_t *state, ember_err *e)
{
	return virtio_vsock_restore(((struct vsock_device *)dev)->vs, state, e);
}

/* ---- Its config ---- */

static int cfg_parse(json_t *j, void **out, ember_err *e)
{
	struct vsock_config *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(e, "vsock: out of memory");
	if (vsock_config_parse(j, c, e)) {
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

static json_t *cfg_json(const void *cfg)
{
	return vsock_config_json(cfg);
}

static void cfg_free(void *cfg)
{
	if (cfg)
		vsock_config_release(cfg);
	free(cfg);
}

static int cfg_acquire(void *cfg, void *old, ember_err *e)
{
	return vsock_config_bind(cfg, old, e);
}

static const struct device_config_ops vsock_config_ops = {
	.key = "vsock",
	.parse = cfg_parse,
	.free = cfg_free,
	.to_json = cfg_json,
	.acquire = cfg_acquire,
};

const struct device_ops vsock_device_ops = {
	.kind = "vsock",
	.metrics_group = &vsock_metrics_group,
	.config = &vsock_config_ops,
	.create = vsock_create,
	.destroy = vsock_destroy,
	.mmio = vsock_mmio,
	.id = vsock_id,
	.queue_event = vsock_queue_event,
	.events = vsock_events,
	.config_json = vsock_json,
	.save = vsock_save,
	.restore = vsock_restore,
};
