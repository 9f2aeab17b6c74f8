/* The transport's and its queues' part of a virtio device's snapshot state
 * (the device's own part is its device_ops save/restore hook). */
#include "virtio/mmio.h"

#include <string.h>

#include "util/blob.h"

static json_t *queue_json(const struct virtq *q)
{
	return json_pack("{s:i, s:i, s:b, s:o, s:o, s:o, s:i, s:i, s:i, s:b, s:i}", "max_size",
			 q->max_size, "size", q->size, "ready", q->ready, "desc",
			 blob_json(&q->desc, 8), "avail", blob_json(&q->avail, 8), "used",
			 blob_json(&q->used, 8), "last_avail", q->last_avail, "used_idx",
			 q->used_idx, "signalled_used", q->signalled_used, "broken", q->broken,
			 "broken_err", (int)q->broken_err);
}

json_t *virtio_mmio_save(const struct virtio_mmio *m)
{
	json_t *qs = json_array();
	for (unsigned i = 0; i < m->ops->nr_queues; i++)
		json_array_append_new(qs, queue_json(&m->queues[i]));
	return json_pack("{s:i, s:i, s:i, s:i, s:i, s:o, s:b, s:i, s:b, s:i, s:i, s:o}",
			 "device_id", m->ops->device_id, "status", m->status,
			 "device_features_sel", m->device_features_sel, "driver_features_sel",
			 m->driver_features_sel, "queue_sel", m->queue_sel, "driver_features",
			 blob_json(&m->driver_features, 8), "driver_features_extra",
			 m->driver_features_extra, "queue_failed", m->queue_failed, "activated",
			 m->activated, "config_generation", m->config_generation,
			 "interrupt_status",
			 __atomic_load_n(&m->interrupt_status, __ATOMIC_SEQ_CST), "queues", qs);
}

static int get_u32(json_t *o, const char *key, uint32_t max, uint32_t *out, ember_err *e)
{
	uint64_t v;
	if (json_get_u64(o, key, max, &v, e))
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int get_bool(json_t *o, const char *key, bool *out, ember_err *e)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_boolean(v))
		return err_set(e, "%s: missing or not a boolean", key);
	*out = json_is_true(v);
	return 0;
}

static int restore_queue(struct virtq *q, const struct guest_mem *gm, json_t *o, ember_err *e)
{
	uint32_t max, size, last, used_idx, signalled, berr;
	struct virtq n = *q;
	if (get_u32(o, "max_size", VIRTQ_MAX_SIZE, &max, e) ||
	    get_u32(o, "size", VIRTQ_MAX_SIZE, &size, e) || get_bool(o, "ready", &n.ready, e) ||
	    blob_get(o, "desc", &n.desc, 8, e) || blob_get(o, "avail", &n.avail, 8, e) ||
	    blob_get(o, "used", &n.used, 8, e) || get_u32(o, "last_avail", UINT16_MAX, &last, e) ||
	    get_u32(o, "used_idx", UINT16_MAX, &used_idx, e) ||
	    get_u32(o, "signalled_used", UINT16_MAX, &signalled, e) ||
	    get_bool(o, "broken", &n.broken, e) ||
	    get_u32(o, "broken_err", VIRTQ_ERR_TOTAL_LEN, &berr, e))
		return -1;
	if (max != q->max_size)
		return err_set(e, "queue of %u entries at most, this device has %u", max,
			       q->max_size);
	n.size = (uint16_t)size;
	n.last_avail = (uint16_t)last;
	n.used_idx = (uint16_t)used_idx;
	n.signalled_used = (uint16_t)signalled;
	n.broken_err = (enum virtq_error)berr;
	if (n.ready && virtq_validate(&n, gm, e))
		return -1;
	*q = n;
	return 0;
}

int virtio_mmio_restore(struct virtio_mmio *m, json_t *o, ember_err *e)
{
	if (!json_is_object(o))
		return err_set(e, "transport state is not an object");
	uint32_t dev_id, nq_extra;
	struct virtio_mmio n = *m;
	json_t *qs = json_object_get(o, "queues");
	if (get_u32(o, "device_id", UINT32_MAX, &dev_id, e))
		return -1;
	if (dev_id != m->ops->device_id)
		return err_set(e, "virtio device type %u, this device is of type %u", dev_id,
			       m->ops->device_id);
	if (!json_is_array(qs) || json_array_size(qs) != m->ops->nr_queues)
		return err_set(e, "queues: expected an array of %u", m->ops->nr_queues);
	if (get_u32(o, "status", 0xff, &n.status, e) ||
	    get_u32(o, "device_features_sel", UINT32_MAX, &n.device_features_sel, e) ||
	    get_u32(o, "driver_features_sel", UINT32_MAX, &n.driver_features_sel, e) ||
	    get_u32(o, "queue_sel", UINT32_MAX, &n.queue_sel, e) ||
	    blob_get(o, "driver_features", &n.driver_features, 8, e) ||
	    get_bool(o, "driver_features_extra", &n.driver_features_extra, e) ||
	    get_u32(o, "queue_failed", UINT32_MAX, &n.queue_failed, e) ||
	    get_bool(o, "activated", &n.activated, e) ||
	    get_u32(o, "config_generation", UINT32_MAX, &n.config_generation, e) ||
	    get_u32(o, "interrupt_status", 3, &nq_extra, e))
		return -1;
	n.interrupt_status = nq_extra;
	for (unsigned i = 0; i < m->ops->nr_queues; i++) {
		if (restore_queue(&n.queues[i], m->gm, json_array_get(qs, i), e))
			return err_prefix(e, "queue %u", i);
		virtq_set_features(&n.queues[i], n.driver_features);
	}
	if (n.activated && !(n.status & VIRTIO_STATUS_DRIVER_OK))
		return err_set(e, "activated without DRIVER_OK");
	*m = n;
	/* The device takes up its queues again, as when the driver set
	 * DRIVER_OK; the queue positions above are kept. */
	if (m->activated && m->ops->activate && m->ops->activate(m->dev, m)) {
		m->activated = false;
		return err_set(e, "the device refused to resume its activated state");
	}
	return 0;
}
