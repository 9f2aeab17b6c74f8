/* virtio-block behind the VMM's device interface (devices/device.h): its
 * metrics set ("block_<drive_id>"), its fds and its PATCH. */
#include "devices/device.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "devices/virtio_block.h"

struct block_device {
	struct virtio_block *blk;
	struct metrics_devices *metrics; /* holds a reference on block_<id> if set */
	char *id;
};

static void block_destroy(void *dev)
{
	struct block_device *d = dev;
	if (!d)
		return;
	virtio_block_destroy(d->blk);
	if (d->metrics)
		metrics_device_unregister(d->metrics, &block_metrics_group, d->id);
	free(d->id);
	free(d);
}

static int block_create(const void *cfg, const struct device_env *env, void **out, ember_err *e)
{
	const struct drive_config *drive = cfg;
	struct block_device *d = calloc(1, sizeof(*d));
	if (!d || !(d->id = strdup(drive->drive_id))) {
		free(d);
		return err_set(e, "drive %s: out of memory", drive->drive_id);
	}
	struct block_metrics *bm = NULL;
	if (env->metrics && !(bm = metrics_device_register(env->metrics, &block_metrics_group, drive->drive_id, e))) {
		block_destroy(d);
		return err_prefix(e, "drive %s", drive->drive_id);
	}
	d->metrics = env->metrics;
	struct virtio_block_params p = {
		.drive = drive, .gm = env->gm, .hooks = env->hooks, .metrics = bm,
	};
	if (virtio_block_create(&d->blk, &p, e)) {
		block_destroy(d);
		return -1; /* its messages name the drive */
	}
	*out = d;
	return 0;
}

static struct virtio_mmio *block_mmio(void *dev)
{
	return virtio_block_mmio(((struct block_device *)dev)->blk);
}

static const char *block_id(const void *dev)
{
	return ((const struct block_device *)dev)->id;
}

static void block_queue_event(void *dev, unsigned queue)
{
	(void)queue; /* one queue */
	virtio_block_process_queue(((struct block_device *)dev)->blk);
}

static void on_completion(void *dev)
{
	virtio_block_process_completions(((struct block_device *)dev)->blk);
}

static void on_limiter(void *dev)
{
	virtio_block_rate_limiter_event(((struct block_device *)dev)->blk);
}

static size_t block_events(void *dev, struct device_event *out, size_t max)
{
	struct virtio_block *b = ((struct block_device *)dev)->blk;
	const struct device_event ev[] = {
		{virtio_block_completion_fd(b), EPOLLIN, on_completion},
		{virtio_block_rate_limiter_fd(b), EPOLLIN, on_limiter},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]) && n < max; i++)
		out[n++] = ev[i];
	return n;
}

static json_t *block_json(const void *dev)
{
	return virtio_block_config_json(((const struct block_device *)dev)->blk);
}

static int block_patch(void *dev, const void *patch, ember_err *e)
{
	return virtio_block_patch(((struct block_device *)dev)->blk, patch, e);
}

static int block_save(void *dev, json_t **state, ember_err *e)
{
	struct block_device *d = dev;
	(void)e;
	virtio_block_quiesce(d->blk);
	*state = json_pack("{s:I}", "capacity_sectors", (json_int_t)virtio_block_capacity(d->blk));
	return 0;
}

static int block_restore(void *dev, json_t *state, ember_err *e)
{
	(void)dev;
	/* The disk may have grown or shrunk since (Firecracker allows it): the
	 * guest re-reads the capacity on its next config access. */
	if (!json_is_object(state))
		return err_set(e, "block state is not an object");
	return 0;
}

const struct device_ops block_device_ops = {
	.kind = "block",
	.metrics_group = &block_metrics_group,
	.create = block_create,
	.destroy = block_destroy,
	.mmio = block_mmio,
	.id = block_id,
	.queue_event = block_queue_event,
	.events = block_events,
	.config_json = block_json,
	.patch = block_patch,
	.save = block_save,
	.restore = block_restore,
};
