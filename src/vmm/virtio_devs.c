#include "vmm/virtio_devs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "vmm/log.h"

void virtio_devs_init(struct virtio_devs *d)
{
	memset(d, 0, sizeof(*d));
}

static void raise_irq(void *ctx)
{
	struct virtio_slot *s = ctx;
	uint64_t one = 1;
	if (write(s->irq_fd, &one, sizeof(one)) != sizeof(one))
		LOG_W("virtio %s: cannot raise GSI %u: %s", s->id, s->gsi, strerror(errno));
	else if (s->metrics)
		metric_inc(&s->metrics->interrupts.triggers);
}

/* QueueNotify that reached userspace (the ioeventfd normally takes it):
 * the same path as the ioeventfd, through its counter. */
static void queue_notify(void *ctx, uint32_t queue)
{
	struct virtio_slot *s = ctx;
	uint64_t one = 1;
	(void)queue;
	ssize_t r = write(s->notify_fd, &one, sizeof(one));
	(void)r;
}

static void locked_read(void *ctx, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_slot *s = ctx;
	pthread_mutex_lock(&s->lock);
	virtio_mmio_read(virtio_block_mmio(s->blk), offset, data, len);
	pthread_mutex_unlock(&s->lock);
}

static void locked_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_slot *s = ctx;
	pthread_mutex_lock(&s->lock);
	virtio_mmio_write(virtio_block_mmio(s->blk), offset, data, len);
	pthread_mutex_unlock(&s->lock);
}

static const struct io_device_ops locked_ops = {.read = locked_read, .write = locked_write};

int virtio_devs_add_block(struct virtio_devs *d, struct vm *vm, struct io_bus *mmio,
			  const struct drive_config *drive, struct metrics *metrics, ember_err *e)
{
	if (d->n == VIRTIO_DEVS_MAX)
		return err_set(e, "drives: at most %d virtio devices", VIRTIO_DEVS_MAX);
	struct virtio_slot *s = &d->slot[d->n];
	memset(s, 0, sizeof(*s));
	s->irq_fd = s->notify_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->id, sizeof(s->id), "%s", drive->drive_id);
	s->metrics = metrics;
	s->base = X86_VIRTIO_MMIO_START + d->n * VIRTIO_MMIO_SIZE;
	s->gsi = VIRTIO_FIRST_GSI + (uint32_t)d->n;
	d->n++; /* from here on, destroy cleans the slot up */

	s->irq_fd = vm_irqfd(vm, s->gsi, e);
	if (s->irq_fd < 0)
		return err_prefix(e, "drive %s", drive->drive_id);
	s->notify_fd = vm_ioeventfd(vm, s->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, 0, e);
	if (s->notify_fd < 0)
		return err_prefix(e, "drive %s", drive->drive_id);
	struct block_metrics *bm = NULL;
	if (metrics && !(bm = metrics_block_register(metrics, drive->drive_id, e)))
		return err_prefix(e, "drive %s", drive->drive_id);
	s->registered = bm != NULL;
	struct virtio_block_params p = {
		.drive = drive,
		.gm = &vm->mem,
		.hooks = {.raise_irq = raise_irq, .queue_notify = queue_notify, .ctx = s},
		.metrics = bm,
	};
	if (virtio_block_create(&s->blk, &p, e))
		return -1; /* its messages name the drive */
	if (io_bus_add(mmio, s->base, VIRTIO_MMIO_SIZE, &locked_ops, s))
		return err_set(e, "drive %s: cannot map its MMIO window", drive->drive_id);
	return 0;
}

static void on_notify(void *ctx, uint32_t events)
{
	struct virtio_slot *s = ctx;
	uint64_t n;
	(void)events;
	if (read(s->notify_fd, &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&s->lock);
	virtio_block_process_queue(s->blk);
	pthread_mutex_unlock(&s->lock);
}

static void on_completion(void *ctx, uint32_t events)
{
	struct virtio_slot *s = ctx;
	(void)events;
	pthread_mutex_lock(&s->lock);
	virtio_block_process_completions(s->blk);
	pthread_mutex_unlock(&s->lock);
}

static void on_rate_limiter(void *ctx, uint32_t events)
{
	struct virtio_slot *s = ctx;
	(void)events;
	pthread_mutex_lock(&s->lock);
	virtio_block_rate_limiter_event(s->blk);
	pthread_mutex_unlock(&s->lock);
}

int virtio_devs_listen(struct virtio_devs *d, struct event_loop *loop, ember_err *e)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		int cfd = virtio_block_completion_fd(s->blk);
		int rfd = virtio_block_rate_limiter_fd(s->blk);
		if (event_loop_add(loop, s->notify_fd, EPOLLIN, on_notify, s) ||
		    (cfd >= 0 && event_loop_add(loop, cfd, EPOLLIN, on_completion, s)) ||
		    (rfd >= 0 && event_loop_add(loop, rfd, EPOLLIN, on_rate_limiter, s)))
			return err_set(e, "drive %s: epoll: %s", s->id, strerror(errno));
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

struct virtio_slot *virtio_devs_find_block(struct virtio_devs *d, const char *drive_id)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->slot[i].blk && !strcmp(d->slot[i].id, drive_id))
			return &d->slot[i];
	return NULL;
}

int virtio_devs_patch_block(struct virtio_devs *d, const struct drive_patch *p, ember_err *e)
{
	struct virtio_slot *s = virtio_devs_find_block(d, p->drive_id);
	if (!s)
		return err_set(e, "Invalid ID: no drive with id %s", p->drive_id);
	pthread_mutex_lock(&s->lock);
	int rc = virtio_block_patch(s->blk, p, e);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

json_t *virtio_devs_drives_json(struct virtio_devs *d)
{
	json_t *a = json_array();
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		if (!s->blk)
			continue;
		pthread_mutex_lock(&s->lock);
		json_array_append_new(a, virtio_block_config_json(s->blk));
		pthread_mutex_unlock(&s->lock);
	}
	return a;
}

void virtio_devs_destroy(struct virtio_devs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		virtio_block_destroy(s->blk);
		if (s->registered)
			metrics_block_unregister(s->metrics, s->id);
		if (s->irq_fd >= 0)
			close(s->irq_fd);
		if (s->notify_fd >= 0)
			close(s->notify_fd);
		pthread_mutex_destroy(&s->lock);
	}
	d->n = 0;
}
