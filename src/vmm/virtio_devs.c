#include "vmm/virtio_devs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "util/log.h"

void virtio_devs_init(struct virtio_devs *d)
{
	memset(d, 0, sizeof(*d));
}

static void raise_irq(void *ctx)
{
	struct virtio_slot *s = ctx;
	uint64_t one = 1;
	if (s->restoring) {
		s->irq_held = true;
		return;
	}
	if (write(s->irq_fd, &one, sizeof(one)) != sizeof(one))
		LOG_W("virtio %s %s: cannot raise GSI %u: %s", s->ops->kind, s->ops->id(s->dev),
		      s->gsi, strerror(errno));
	else if (s->metrics)
		metric_inc(&s->metrics->interrupts.triggers);
}

/* A queue notification that reached userspace (the ioeventfd normally
 * takes it), or the device's own wake-up: the same path as the ioeventfd,
 * through its counter. */
static void queue_notify(void *ctx, uint32_t queue)
{
	struct virtio_slot *s = ctx;
	uint64_t one = 1;
	if (queue < s->nr_queues && s->notify_fd[queue] >= 0) {
		ssize_t r = write(s->notify_fd[queue], &one, sizeof(one));
		(void)r;
	}
}

/* The interrupt handler's two accesses, InterruptStatus read and
 * InterruptACK write, skip the device's lock (virtio_mmio_interrupt_read/_write):
 * a vCPU taking a device's interrupt does not wait while the VMM thread
 * holds the lock for a queue's whole batch (for virtio-net TX, a TAP write
 * per frame, each through the host's network stack). Everything else goes
 * under the lock. */
static void locked_read(void *ctx, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_slot *s = ctx;
	if (virtio_mmio_interrupt_read(s->mmio, offset, data, len))
		return;
	pthread_mutex_lock(&s->lock);
	virtio_mmio_read(s->mmio, offset, data, len);
	pthread_mutex_unlock(&s->lock);
}

static void locked_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_slot *s = ctx;
	if (virtio_mmio_interrupt_write(s->mmio, offset, data, len))
		return;
	pthread_mutex_lock(&s->lock);
	virtio_mmio_write(s->mmio, offset, data, len);
	pthread_mutex_unlock(&s->lock);
}

static const struct io_device_ops locked_ops = {.read = locked_read, .write = locked_write};

/* The next slot, with its window, GSI and irqfd: from here on, destroy
 * cleans it up. */
static struct virtio_slot *new_slot(struct virtio_devs *d, struct vm *vm,
				    const struct device_ops *ops, struct metrics *metrics,
				    ember_err *e)
{
	if (d->n == VIRTIO_DEVS_MAX) {
		err_set(e, "at most %d virtio devices (drives, network interfaces and other "
			   "devices together)", VIRTIO_DEVS_MAX);
		return NULL;
	}
	struct virtio_slot *s = &d->slot[d->n];
	memset(s, 0, sizeof(*s));
	s->ops = ops;
	s->irq_fd = -1;
	for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
		s->notify_fd[q] = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->metrics = metrics;
	s->base = X86_VIRTIO_MMIO_START + d->n * VIRTIO_MMIO_SIZE;
	s->gsi = VIRTIO_FIRST_GSI + (uint32_t)d->n;
	d->n++;
	s->irq_fd = vm_irqfd(vm, s->gsi, e);
	return s->irq_fd < 0 ? NULL : s;
}

int virtio_devs_add(struct virtio_devs *d, struct vm *vm, struct io_bus *mmio,
		    struct metrics *metrics, const struct device_ops *ops, const void *cfg,
		    struct device_env env, ember_err *e)
{
	struct virtio_slot *s = new_slot(d, vm, ops, metrics, e);
	if (!s)
		return -1;
	env.hooks = (struct virtio_mmio_hooks){
		.raise_irq = raise_irq, .queue_notify = queue_notify, .ctx = s};
	if (ops->create(cfg, &env, &s->dev, e))
		return -1; /* its messages name the device */
	const char *id = ops->id(s->dev);
	s->mmio = ops->mmio(s->dev);
	s->nr_queues = s->mmio->ops->nr_queues;
	for (unsigned q = 0; q < s->nr_queues; q++) {
		s->notify_fd[q] = vm_ioeventfd(vm, s->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q, e);
		if (s->notify_fd[q] < 0)
			return err_prefix(e, "%s %s", ops->kind, id);
		s->ev[s->nr_ev++] = (struct virtio_slot_event){
			.slot = s, .fd = s->notify_fd[q], .queue = q, .events = EPOLLIN};
	}
	struct device_event own[DEVICE_MAX_EVENTS];
	size_t n = ops->events ? ops->events(s->dev, own, DEVICE_MAX_EVENTS) : 0;
	for (size_t i = 0; i < n; i++)
		if (own[i].fd >= 0)
			s->ev[s->nr_ev++] = (struct virtio_slot_event){
				.slot = s, .fd = own[i].fd, .handle = own[i].handle,
				.events = own[i].events};
	if (io_bus_add(mmio, s->base, VIRTIO_MMIO_SIZE, &locked_ops, s))
		return err_set(e, "%s %s: cannot map its MMIO window", ops->kind, id);
	return 0;
}

/* ---- the VMM thread's events: each under the device's lock ---- */

static void on_event(void *ctx, uint32_t events)
{
	struct virtio_slot_event *ev = ctx;
	struct virtio_slot *s = ev->slot;
	(void)events;
	if (!ev->handle) {
		uint64_t n;
		if (read(ev->fd, &n, sizeof(n)) != sizeof(n))
			return;
	}
	pthread_mutex_lock(&s->lock);
	if (ev->handle)
		ev->handle(s->dev);
	else
		s->ops->queue_event(s->dev, ev->queue);
	pthread_mutex_unlock(&s->lock);
}

size_t virtio_devs_nr_fds(const struct virtio_devs *d)
{
	size_t n = 0;
	for (size_t i = 0; i < d->n; i++)
		n += d->slot[i].nr_ev;
	return n;
}

int virtio_devs_listen(struct virtio_devs *d, struct event_loop *loop, ember_err *e)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		for (size_t k = 0; k < s->nr_ev; k++)
			if (event_loop_add(loop, s->ev[k].fd, s->ev[k].events, on_event, &s->ev[k]))
				return err_set(e, "%s %s: epoll: %s", s->ops->kind,
					       s->ops->id(s->dev), strerror(errno));
	}
	return 0;
}

int virtio_devs_cmdline(const struct virtio_devs *d, char *buf, size_t size, ember_err *e)
{
	for (size_t i = 0; i < d->n; i++) {
		size_t used = strlen(buf);
		char frag[96];
		if (virtio_mmio_cmdline(frag, sizeof(frag), d->slot[i].base, VIRTIO_MMIO_SIZE,
					d->slot[i].gsi) < 0 ||
		    used + 1 + strlen(frag) + 1 > size)
			return err_set(e, "boot_args: no room on the kernel command line for the "
					  "virtio devices");
		snprintf(buf + used, size - used, " %s", frag);
	}
	return 0;
}

size_t virtio_devs_acpi(const struct virtio_devs *d, struct acpi_mmio_dev *out, size_t max)
{
	size_t n = d->n < max ? d->n : max;
	for (size_t i = 0; i < n; i++)
		out[i] = (struct acpi_mmio_dev){
			.addr = d->slot[i].base, .size = VIRTIO_MMIO_SIZE, .gsi = d->slot[i].gsi};
	return n;
}

struct virtio_slot *virtio_devs_find(struct virtio_devs *d, const struct device_ops *ops,
				     const char *id)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		if (s->ops == ops && s->dev && !strcmp(ops->id(s->dev), id))
			return s;
	}
	return NULL;
}

struct virtio_slot *virtio_devs_find_kind(struct virtio_devs *d, const struct device_ops *ops)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->slot[i].ops == ops && d->slot[i].dev)
			return &d->slot[i];
	return NULL;
}

int virtio_slot_request(struct virtio_slot *s, const struct device_request *r, const void *arg,
			json_t **out, ember_err *e)
{
	if (!s)
		return r->run(NULL, arg, out, e);
	pthread_mutex_lock(&s->lock);
	int rc = r->run(s->dev, arg, out, e);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int virtio_slot_patch(struct virtio_slot *s, const void *patch, ember_err *e)
{
	if (!s->ops->patch)
		return err_set(e, "%s devices cannot be updated", s->ops->kind);
	pthread_mutex_lock(&s->lock);
	int rc = s->ops->patch(s->dev, patch, e);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

json_t *virtio_devs_json(struct virtio_devs *d, const struct device_ops *ops)
{
	json_t *a = json_array();
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		if (s->ops != ops || !s->dev)
			continue;
		pthread_mutex_lock(&s->lock);
		json_array_append_new(a, ops->config_json(s->dev));
		pthread_mutex_unlock(&s->lock);
	}
	return a;
}

void virtio_devs_destroy(struct virtio_devs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		if (s->dev)
			s->ops->destroy(s->dev);
		if (s->irq_fd >= 0)
			close(s->irq_fd);
		for (unsigned q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++)
			if (s->notify_fd[q] >= 0)
				close(s->notify_fd[q]);
		pthread_mutex_destroy(&s->lock);
	}
	d->n = 0;
}

json_t *virtio_devs_save(struct virtio_devs *d, ember_err *e)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		json_t *own = NULL;
		pthread_mutex_lock(&s->lock);
		int rc = s->ops->save ? s->ops->save(s->dev, &own, e)
				      : err_set(e, "%s devices cannot be snapshotted", s->ops->kind);
		json_t *transport = rc ? NULL : virtio_mmio_save(s->mmio);
		pthread_mutex_unlock(&s->lock);
		if (rc || !own || !transport) {
			json_decref(own);
			json_decref(transport);
			json_decref(arr);
			if (!rc)
				err_set(e, "out of memory");
			return NULL;
		}
		json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:o}", "kind", s->ops->kind,
						     "id", s->ops->id(s->dev), "transport",
						     transport, "device", own));
	}
	return arr;
}

int virtio_devs_restore(struct virtio_devs *d, json_t *arr, ember_err *e)
{
	if (!json_is_array(arr) || json_array_size(arr) != d->n)
		return err_set(e, "devices: the state has %zu virtio devices, the VM %zu",
			       json_is_array(arr) ? json_array_size(arr) : 0, d->n);
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		json_t *o = json_array_get(arr, i);
		const char *kind = json_string_value(json_object_get(o, "kind"));
		const char *id = json_string_value(json_object_get(o, "id"));
		if (!kind || !id || strcmp(kind, s->ops->kind) || strcmp(id, s->ops->id(s->dev)))
			return err_set(e, "devices: entry %zu is not %s %s", i, s->ops->kind,
				       s->ops->id(s->dev));
		pthread_mutex_lock(&s->lock);
		s->restoring = true;
		int rc = virtio_mmio_restore(s->mmio, json_object_get(o, "transport"), e);
		if (!rc)
			rc = s->ops->restore ? s->ops->restore(s->dev, json_object_get(o, "device"), e)
					     : err_set(e, "cannot be restored");
		pthread_mutex_unlock(&s->lock);
		if (rc)
			return err_prefix(e, "%s %s", s->ops->kind, s->ops->id(s->dev));
		/* A notification the VMM thread had not served when the VM was
		 * paused is not in the state: look at every ready queue once,
		 * as if the driver had just notified it. */
		for (unsigned q = 0; q < s->nr_queues; q++) {
			uint64_t one = 1;
			if (s->mmio->activated && s->mmio->queues[q].ready && s->notify_fd[q] >= 0 &&
			    write(s->notify_fd[q], &one, sizeof(one)) != sizeof(one))
				return err_set(e, "%s %s: queue %u: cannot notify: %s", s->ops->kind,
					       s->ops->id(s->dev), q, strerror(errno));
		}
	}
	return 0;
}

void virtio_devs_restore_done(struct virtio_devs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		pthread_mutex_lock(&s->lock);
		bool held = s->irq_held;
		s->restoring = s->irq_held = false;
		pthread_mutex_unlock(&s->lock);
		if (held)
			raise_irq(s);
	}
}

int virtio_devs_snapshottable(const struct virtio_devs *d, ember_err *e)
{
	char list[256] = "";
	for (size_t i = 0; i < d->n; i++) {
		const struct virtio_slot *s = &d->slot[i];
		if (s->ops->save && s->ops->restore)
			continue;
		size_t used = strlen(list);
		snprintf(list + used, sizeof(list) - used, "%s%s(id: %s)", used ? "," : "",
			 s->ops->kind, s->ops->id(s->dev));
	}
	if (list[0])
		return err_set(e, "Operation not allowed: Devices without snapshot support are "
			       "present: %s", list);
	return 0;
}
