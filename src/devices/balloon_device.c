/* virtio-balloon behind the VMM's device interface (devices/device.h), with
 * its own config section: "balloon" in the config file and GET /vm/config,
 * PUT /balloon before boot, and its requests: GET /balloon,
 * PATCH /balloon, GET and PATCH /balloon/statistics, PATCH
 * /balloon/hinting/start|stop, GET /balloon/hinting/status, with
 * Firecracker's rules for when each may run and its messages. */
#include "devices/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "devices/virtio_balloon.h"

/* The single device's id, for its metrics set and messages. */
#define BALLOON_ID "balloon"

/* Firecracker's prefixes: before start (its BalloonConfigError), after
 * start for GETs (InternalVmm) and for changes (BalloonUpdate). */
#define CONFIG_ERR "Balloon config error: "
#define GET_ERR "Internal VMM error: "
#define UPDATE_ERR "Balloon update error: "
#define NO_DEVICE_BEFORE CONFIG_ERR "No balloon device found."
#define NO_DEVICE_AFTER "Failed perform action on device: Device not found"

struct balloon_device {
	struct virtio_balloon *b;
	struct metrics_devices *metrics; /* holds a reference on its set if set */
};

static void balloon_destroy(void *dev)
{
	struct balloon_device *d = dev;
	if (!d)
		return;
	virtio_balloon_destroy(d->b);
	if (d->metrics)
		metrics_device_unregister(d->metrics, &balloon_metrics_group, BALLOON_ID);
	free(d);
}

static int balloon_create(const void *cfg, const struct device_env *env, void **out, ember_err *e)
{
	struct balloon_device *d = calloc(1, sizeof(*d));
	if (!d)
		return err_set(e, "balloon: out of memory");
	struct balloon_metrics *m = NULL;
	if (env->metrics &&
	    !(m = metrics_device_register(env->metrics, &balloon_metrics_group, BALLOON_ID, e))) {
		free(d);
		return err_prefix(e, "balloon");
	}
	d->metrics = env->metrics;
	struct virtio_balloon_params p = {.cfg = cfg, .gm = env->gm, .hooks = env->hooks,
					  .metrics = m};
	if (virtio_balloon_create(&d->b, &p, e)) {
		balloon_destroy(d);
		return -1;
	}
	*out = d;
	return 0;
}

static struct virtio_mmio *balloon_mmio(void *dev)
{
	return virtio_balloon_mmio(((struct balloon_device *)dev)->b);
}

static const char *balloon_id(const void *dev)
{
	(void)dev;
	return BALLOON_ID;
}

static void balloon_queue_event(void *dev, unsigned queue)
{
	virtio_balloon_queue_event(((struct balloon_device *)dev)->b, queue);
}

static void on_timer(void *dev)
{
	virtio_balloon_timer_event(((struct balloon_device *)dev)->b);
}

static size_t balloon_events(void *dev, struct device_event *out, size_t max)
{
	if (!max)
		return 0;
	out[0] = (struct device_event){
		virtio_balloon_timer_fd(((struct balloon_device *)dev)->b), EPOLLIN, on_timer};
	return 1;
}

static json_t *balloon_json(const void *dev)
{
	return virtio_balloon_config_json(((const struct balloon_device *)dev)->b);
}

/* ---- Its config ---- */

static int cfg_parse(json_t *j, void **out, ember_err *e)
{
	struct balloon_config *c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(e, "balloon: out of memory");
	if (balloon_config_parse(j, c, e)) {
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

static json_t *cfg_json(const void *cfg)
{
	return balloon_config_json(cfg);
}

static int cfg_check_mem(const void *cfg, uint64_t mem_size_mib, bool mem_changed, ember_err *e)
{
	const struct balloon_config *c = cfg;
	if (c->amount_mib <= mem_size_mib)
		return 0;
	return mem_changed ? err_set(e, "Machine config error: The memory size (MiB) is smaller "
				     "than the previously set balloon device target size.")
			   : err_set(e, CONFIG_ERR "Amount of pages requested is too large.");
}

/* ---- Its requests ---- */

static struct virtio_balloon *dev_of(void *dev)
{
	return ((struct balloon_device *)dev)->b;
}

/* GET /balloon */
static int get_config(const void *cfg, const void *arg, json_t **out, ember_err *e)
{
	(void)arg;
	if (!cfg)
		return err_set(e, NO_DEVICE_BEFORE);
	*out = balloon_config_json(cfg);
	return 0;
}

static int get_device(void *dev, const void *arg, json_t **out, ember_err *e)
{
	(void)arg;
	if (!dev)
		return err_set(e, GET_ERR NO_DEVICE_AFTER);
	*out = virtio_balloon_config_json(dev_of(dev));
	return 0;
}

/* PATCH /balloon */
static int parse_update(json_t *j, void **arg, ember_err *e)
{
	uint32_t *a = malloc(sizeof(*a));
	if (!a)
		return err_set(e, "balloon: out of memory");
	if (balloon_update_parse(j, a, e)) {
		free(a);
		return -1;
	}
	*arg = a;
	return 0;
}

static int patch_device(void *dev, const void *arg, json_t **out, ember_err *e)
{
	(void)out;
	if (!dev)
		return err_set(e, UPDATE_ERR NO_DEVICE_AFTER);
	if (virtio_balloon_set_target(dev_of(dev), *(const uint32_t *)arg, e))
		return err_prefix(e, UPDATE_ERR "Balloon");
	return 0;
}

/* GET /balloon/statistics */
static int get_stats(void *dev, const void *arg, json_t **out, ember_err *e)
{
	(void)arg;
	if (!dev)
		return err_set(e, GET_ERR NO_DEVICE_AFTER);
	*out = virtio_balloon_stats_json(dev_of(dev), e);
	return *out ? 0 : err_prefix(e, GET_ERR "Balloon");
}

/* PATCH /balloon/statistics */
static int parse_stats_update(json_t *j, void **arg, ember_err *e)
{
	uint16_t *s = malloc(sizeof(*s));
	if (!s)
		return err_set(e, "balloon: out of memory");
	if (balloon_stats_update_parse(j, s, e)) {
		free(s);
		return -1;
	}
	*arg = s;
	return 0;
}

static int patch_stats(void *dev, const void *arg, json_t **out, ember_err *e)
{
	(void)out;
	if (!dev)
		return err_set(e, UPDATE_ERR NO_DEVICE_AFTER);
	if (virtio_balloon_set_stats_interval(dev_of(dev), *(const uint16_t *)arg, e))
		return err_prefix(e, UPDATE_ERR "Balloon");
	return 0;
}

/* PATCH /balloon/hinting/start|stop, GET /balloon/hinting/status */
static int parse_hint_start(json_t *j, void **arg, ember_err *e)
{
	bool *ack = malloc(sizeof(*ack));
	if (!ack)
		return err_set(e, "balloon: out of memory");
	if (balloon_hint_start_parse(j, ack, e)) {
		free(ack);
		return -1;
	}
	*arg = ack;
	return 0;
}

static int hint_start(void *dev, const void *arg, json_t **out, ember_err *e)
{
	(void)out;
	if (!dev)
		return err_set(e, UPDATE_ERR NO_DEVICE_AFTER);
	if (virtio_balloon_hint_start(dev_of(dev), *(const bool *)arg, e))
		return err_prefix(e, UPDATE_ERR "Balloon");
	return 0;
}

static int hint_stop(void *dev, const void *arg, json_t **out, ember_err *e)
{
	(void)out, (void)arg;
	if (!dev)
		return err_set(e, UPDATE_ERR NO_DEVICE_AFTER);
	if (virtio_balloon_hint_stop(dev_of(dev), e))
		return err_prefix(e, UPDATE_ERR "Balloon");
	return 0;
}

static int hint_status(void *dev, const void *arg, json_t **out, ember_err *e)
{
	(void)arg;
	if (!dev)
		return err_set(e, UPDATE_ERR NO_DEVICE_AFTER);
	*out = virtio_balloon_hint_status(dev_of(dev), e);
	return *out ? 0 : err_prefix(e, UPDATE_ERR "Balloon");
}

/* ---- Snapshots ---- */

/* Requests are served at once: nothing is in flight at a pause but the
 * statistics buffer the device holds, which the state names (its chain is
 * in guest memory) and the restored device gives back at its next poll. */
static int balloon_save(void *dev, json_t **state, ember_err *e)
{
	*state = virtio_balloon_save(dev_of(dev));
	return *state ? 0 : err_set(e, "balloon: out of memory");
}

static int balloon_restore(void *dev, json_t *state, ember_err *e)
{
	return virtio_balloon_restore(dev_of(dev), state, e);
}

#define BOTH (DEVICE_BEFORE_START | DEVICE_AFTER_START)
#define AFTER DEVICE_AFTER_START

static const struct device_request balloon_requests[] = {
	{"GET", "", BOTH, DEVICE_BODY_NONE, NULL, NULL, get_config, get_device},
	{"PATCH", "", AFTER, DEVICE_BODY_JSON, parse_update, free, NULL, patch_device},
	{"GET", "/statistics", AFTER, DEVICE_BODY_NONE, NULL, NULL, NULL, get_stats},
	{"PATCH", "/statistics", AFTER, DEVICE_BODY_JSON, parse_stats_update, free, NULL,
	 patch_stats},
	{"PATCH", "/hinting/start", AFTER, DEVICE_BODY_OPTIONAL, parse_hint_start, free, NULL,
	 hint_start},
	{"PATCH", "/hinting/stop", AFTER, DEVICE_BODY_NONE, NULL, NULL, NULL, hint_stop},
	{"GET", "/hinting/status", AFTER, DEVICE_BODY_NONE, NULL, NULL, NULL, hint_status},
	{NULL, NULL, 0, DEVICE_BODY_NONE, NULL, NULL, NULL, NULL},
};

static const struct device_config_ops balloon_config_ops = {
	.key = "balloon",
	.parse = cfg_parse,
	.free = free,
	.to_json = cfg_json,
	.check_mem = cfg_check_mem,
	.requests = balloon_requests,
};

const struct device_ops balloon_device_ops = {
	.kind = "balloon",
	.metrics_group = &balloon_metrics_group,
	.config = &balloon_config_ops,
	.create = balloon_create,
	.destroy = balloon_destroy,
	.mmio = balloon_mmio,
	.id = balloon_id,
	.queue_event = balloon_queue_event,
	.events = balloon_events,
	.config_json = balloon_json,
	.save = balloon_save,
	.restore = balloon_restore,
};
