#include "vmm/virtio_devs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
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

/* A queue notification that reached userspace (the ioeventfd normally
 * takes it), or the device's own wake-up: the same path as the ioeventfd,
 * through its counter. */
static void queue_notify(void *ctx, uint32_t queue)
{
	struct virtio_slot *s = ctx;
	uint64_t one = 1;
	if (queue < 2 && s->notify_fd[queue] >= 0) {
		ssize_t r = write(s->notify_fd[queue], &one, sizeof(one));
		(void)r;
	}
}

static void locked_read(void *ctx, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_slot *s = ctx;
	pthread_mutex_lock(&s->lock);
	virtio_mmio_read(s->mmio, offset, data, len);
	pthread_mutex_unlock(&s->lock);
}

static void locked_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_slot *s = ctx;
	pthread_mutex_lock(&s->lock);
	virtio_mmio_write(s->mmio, offset, data, len);
	pthread_mutex_unlock(&s->lock);
}

static const struct io_device_ops locked_ops = {.read = locked_read, .write = locked_write};

/* The next slot with its window, GSI, irqfd and n queue ioeventfds. */
static struct virtio_slot *new_slot(struct virtio_devs *d, struct vm *vm, enum virtio_kind kind,
				    const char *id, unsigned nqueues, struct metrics *metrics,
				    ember_err *e)
{
	if (d->n == VIRTIO_DEVS_MAX) {
		err_set(e, "%s: at most %d virtio devices", id, VIRTIO_DEVS_MAX);
		return NULL;
	}
	struct virtio_slot *s = &d->slot[d->n];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->irq_fd = s->notify_fd[0] = s->notify_fd[1] = s->mmds_timer_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->metrics = metrics;
	s->base = X86_VIRTIO_MMIO_START + d->n * VIRTIO_MMIO_SIZE;
	s->gsi = VIRTIO_FIRST_GSI + (uint32_t)d->n;
	d->n++; /* from here on, destroy cleans the slot up */

	s->irq_fd = vm_irqfd(vm, s->gsi, e);
	if (s->irq_fd < 0)
		goto fail;
	for (unsigned q = 0; q < nqueues; q++) {
		s->notify_fd[q] = vm_ioeventfd(vm, s->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q, e);
		if (s->notify_fd[q] < 0)
			goto fail;
	}
	return s;
fail:
	err_prefix(e, "%s", id);
	return NULL;
}

int virtio_devs_add_block(struct virtio_devs *d, struct vm *vm, struct io_bus *mmio,
			  const struct drive_config *drive, struct metrics *metrics, ember_err *e)
{
	struct virtio_slot *s = new_slot(d, vm, VIRTIO_KIND_BLOCK, drive->drive_id, 1, metrics, e);
	if (!s)
		return -1;
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
	s->mmio = virtio_block_mmio(s->blk);
	if (io_bus_add(mmio, s->base, VIRTIO_MMIO_SIZE, &locked_ops, s))
		return err_set(e, "drive %s: cannot map its MMIO window", drive->drive_id);
	return 0;
}

/* ---- MMDS: the guest's frames for it, and its answers ---- */

/* Hands the stack's pending frames to the guest while the device's
 * injection queue has room, and arms the timer for the next
 * retransmission. Frames left behind (the guest is not taking its rx
 * frames, or the device is not active) wait until the guest gives rx
 * buffers again (mmds_resume), its next frame for MMDS, or the timer: never
 * a polling loop. Under the slot's lock. */
static void mmds_flush(struct virtio_slot *s, uint64_t now)
{
	size_t n;
	while (virtio_net_injected_pending(s->net) < VIRTIO_NET_INJECT_MAX_FRAMES &&
	       (n = mmds_stack_tx(s->mmds_stack, s->mmds_frame, VIRTIO_NET_MAX_FRAME, now)))
		if (virtio_net_inject_rx(s->net, s->mmds_frame, n) < 0)
			break; /* device not active or queue full: TCP sends it again */
	s->mmds_blocked = mmds_stack_pending(s->mmds_stack, now);
	uint64_t due = mmds_stack_deadline(s->mmds_stack);
	struct itimerspec t = {{0, 0}, {0, 0}};
	if (due != UINT64_MAX) {
		t.it_value.tv_sec = (time_t)(due / 1000);
		t.it_value.tv_nsec = (long)(due % 1000) * 1000000;
	}
	timerfd_settime(s->mmds_timer_fd, TFD_TIMER_ABSTIME, &t, NULL);
}

static bool mmds_tx_frame(void *ctx, const uint8_t *frame, size_t len, uint8_t hdr_flags)
{
	struct virtio_slot *s = ctx;
	uint64_t now = mmds_now_ms();
	unsigned flags = hdr_flags & VIRTIO_NET_HDR_F_NEEDS_CSUM ? MMDS_NET_RX_CSUM_PARTIAL : 0;
	if (!mmds_stack_rx_flags(s->mmds_stack, frame, len, flags, now))
		return false;
	mmds_flush(s, now);
	return true;
}

static void on_mmds_timer(void *ctx, uint32_t events)
{
	struct virtio_slot *s = ctx;
	(void)events;
	uint64_t ticks;
	if (read(s->mmds_timer_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	pthread_mutex_lock(&s->lock);
	mmds_flush(s, mmds_now_ms());
	pthread_mutex_unlock(&s->lock);
}

/* After the device delivered rx frames: room for the stack's waiting ones. */
static void mmds_resume(struct virtio_slot *s)
{
	if (s->mmds_stack && s->mmds_blocked &&
	    virtio_net_injected_pending(s->net) < VIRTIO_NET_INJECT_MAX_FRAMES)
		mmds_flush(s, mmds_now_ms());
}

static bool mmds_wants(const struct mmds_config *c, const char *iface_id)
{
	for (size_t i = 0; c && i < c->n_network_interfaces; i++)
		if (!strcmp(c->network_interfaces[i], iface_id))
			return true;
	return false;
}

static int mmds_attach(struct virtio_slot *s, struct mmds *mmds, const struct mmds_config *c,
		       struct metrics *metrics, ember_err *e)
{
	s->mmds_stack = calloc(1, sizeof(*s->mmds_stack));
	s->mmds_frame = malloc(VIRTIO_NET_MAX_FRAME);
	s->mmds_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!s->mmds_stack || !s->mmds_frame || s->mmds_timer_fd < 0)
		return err_set(e, "network interface %s: cannot set up MMDS: %s", s->id,
			       strerror(errno ? errno : ENOMEM));
	mmds_stack_init(s->mmds_stack, mmds, c->ipv4_address, metrics ? &metrics->mmds : NULL, 0);
	virtio_net_set_tx_hook(s->net, &(struct virtio_net_tx_hook){.tx_frame = mmds_tx_frame,
								     .ctx = s});
	return 0;
}

int virtio_devs_add_net(struct virtio_devs *d, struct vm *vm, struct io_bus *mmio,
			const struct net_config *net, struct mmds *mmds,
			const struct mmds_config *mmds_cfg, struct metrics *metrics, ember_err *e)
{
	struct virtio_slot *s = new_slot(d, vm, VIRTIO_KIND_NET, net->iface_id, 2, metrics, e);
	if (!s)
		return -1;
	struct net_metrics *nm = NULL;
	if (metrics && !(nm = metrics_net_register(metrics, net->iface_id, e)))
		return err_prefix(e, "network interface %s", net->iface_id);
	s->registered = nm != NULL;
	struct virtio_net_params p = {
		.cfg = net,
		.mtu = net->mtu,
		.gm = &vm->mem,
		.hooks = {.raise_irq = raise_irq, .queue_notify = queue_notify, .ctx = s},
		.metrics = nm,
		.mmds_metrics = NULL, /* the MMDS stack counts its own frames */
	};
	if (virtio_net_create(&s->net, &p, e))
		return -1; /* its messages name the interface */
	s->mmio = virtio_net_mmio(s->net);
	if (mmds && mmds_wants(mmds_cfg, net->iface_id) &&
	    mmds_attach(s, mmds, mmds_cfg, metrics, e))
		return -1;
	if (io_bus_add(mmio, s->base, VIRTIO_MMIO_SIZE, &locked_ops, s))
		return err_set(e, "network interface %s: cannot map its MMIO window",
			       net->iface_id);
	return 0;
}

/* ---- the VMM thread's events: each under the device's lock ---- */

static bool drain(int fd)
{
	uint64_t n;
	return read(fd, &n, sizeof(n)) == sizeof(n);
}

static void on_block_notify(void *ctx, uint32_t events)
{
	struct virtio_slot *s = ctx;
	(void)events;
	if (!drain(s->notify_fd[0]))
		return;
	pthread_mutex_lock(&s->lock);
	virtio_block_process_queue(s->blk);
	pthread_mutex_unlock(&s->lock);
}

#define LOCKED_HANDLER(name, call)                    \
	static void name(void *ctx, uint32_t events)  \
	{                                             \
		struct virtio_slot *s = ctx;          \
		(void)events;                         \
		pthread_mutex_lock(&s->lock);         \
		call;                                 \
		pthread_mutex_unlock(&s->lock);       \
	}

LOCKED_HANDLER(on_block_completion, virtio_block_process_completions(s->blk))
LOCKED_HANDLER(on_block_limiter, virtio_block_rate_limiter_event(s->blk))
LOCKED_HANDLER(on_net_backend, virtio_net_process_backend(s->net); mmds_resume(s))
LOCKED_HANDLER(on_net_rx_limiter, virtio_net_rx_rate_limiter_event(s->net); mmds_resume(s))
LOCKED_HANDLER(on_net_tx_limiter, virtio_net_tx_rate_limiter_event(s->net))

static void on_net_rx_notify(void *ctx, uint32_t events)
{
	struct virtio_slot *s = ctx;
	(void)events;
	if (!drain(s->notify_fd[0]))
		return;
	pthread_mutex_lock(&s->lock);
	virtio_net_process_rx_queue(s->net);
	mmds_resume(s);
	pthread_mutex_unlock(&s->lock);
}

static void on_net_tx_notify(void *ctx, uint32_t events)
{
	struct virtio_slot *s = ctx;
	(void)events;
	if (!drain(s->notify_fd[1]))
		return;
	pthread_mutex_lock(&s->lock);
	virtio_net_process_tx_queue(s->net);
	mmds_resume(s);
	pthread_mutex_unlock(&s->lock);
}

static int add_fd(struct event_loop *loop, int fd, uint32_t events, event_fn fn, void *ctx)
{
	return fd < 0 ? 0 : event_loop_add(loop, fd, events, fn, ctx);
}

int virtio_devs_listen(struct virtio_devs *d, struct event_loop *loop, ember_err *e)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		int rc;
		if (s->kind == VIRTIO_KIND_BLOCK) {
			rc = add_fd(loop, s->notify_fd[0], EPOLLIN, on_block_notify, s) ||
			     add_fd(loop, virtio_block_completion_fd(s->blk), EPOLLIN,
				    on_block_completion, s) ||
			     add_fd(loop, virtio_block_rate_limiter_fd(s->blk), EPOLLIN,
				    on_block_limiter, s);
		} else {
			/* Edge-triggered backend: while the guest has no rx
			 * buffers, frames wait in the TAP, and a level-triggered
			 * fd would spin. The device reads on its own when buffers
			 * come back. */
			rc = add_fd(loop, s->notify_fd[0], EPOLLIN, on_net_rx_notify, s) ||
			     add_fd(loop, s->notify_fd[1], EPOLLIN, on_net_tx_notify, s) ||
			     add_fd(loop, virtio_net_backend_fd(s->net), EPOLLIN | EPOLLET,
				    on_net_backend, s) ||
			     add_fd(loop, virtio_net_rx_rate_limiter_fd(s->net), EPOLLIN,
				    on_net_rx_limiter, s) ||
			     add_fd(loop, virtio_net_tx_rate_limiter_fd(s->net), EPOLLIN,
				    on_net_tx_limiter, s) ||
			     add_fd(loop, s->mmds_timer_fd, EPOLLIN, on_mmds_timer, s);
		}
		if (rc)
			return err_set(e, "%s: epoll: %s", s->id, strerror(errno));
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

static struct virtio_slot *find(struct virtio_devs *d, enum virtio_kind kind, const char *id)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		if (s->kind == kind && (s->blk || s->net) && !strcmp(s->id, id))
			return s;
	}
	return NULL;
}

struct virtio_slot *virtio_devs_find_block(struct virtio_devs *d, const char *drive_id)
{
	return find(d, VIRTIO_KIND_BLOCK, drive_id);
}

struct virtio_slot *virtio_devs_find_net(struct virtio_devs *d, const char *iface_id)
{
	return find(d, VIRTIO_KIND_NET, iface_id);
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

int virtio_devs_patch_net(struct virtio_devs *d, const struct net_patch *p, ember_err *e)
{
	struct virtio_slot *s = virtio_devs_find_net(d, p->iface_id);
	if (!s)
		return err_set(e, "Invalid ID: no network interface with id %s", p->iface_id);
	pthread_mutex_lock(&s->lock);
	int rc = virtio_net_patch(s->net, p, e);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static json_t *list_json(struct virtio_devs *d, enum virtio_kind kind)
{
	json_t *a = json_array();
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		if (s->kind != kind || !(s->blk || s->net))
			continue;
		pthread_mutex_lock(&s->lock);
		json_array_append_new(a, kind == VIRTIO_KIND_BLOCK ? virtio_block_config_json(s->blk)
								   : virtio_net_config_json(s->net));
		pthread_mutex_unlock(&s->lock);
	}
	return a;
}

json_t *virtio_devs_drives_json(struct virtio_devs *d)
{
	return list_json(d, VIRTIO_KIND_BLOCK);
}

json_t *virtio_devs_net_json(struct virtio_devs *d)
{
	return list_json(d, VIRTIO_KIND_NET);
}

void virtio_devs_destroy(struct virtio_devs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct virtio_slot *s = &d->slot[i];
		virtio_block_destroy(s->blk);
		virtio_net_destroy(s->net);
		if (s->mmds_stack)
			mmds_stack_free(s->mmds_stack);
		free(s->mmds_stack);
		free(s->mmds_frame);
		if (s->mmds_timer_fd >= 0)
			close(s->mmds_timer_fd);
		if (s->registered && s->kind == VIRTIO_KIND_BLOCK)
			metrics_block_unregister(s->metrics, s->id);
		if (s->registered && s->kind == VIRTIO_KIND_NET)
			metrics_net_unregister(s->metrics, s->id);
		if (s->irq_fd >= 0)
			close(s->irq_fd);
		for (int q = 0; q < 2; q++)
			if (s->notify_fd[q] >= 0)
				close(s->notify_fd[q]);
		pthread_mutex_destroy(&s->lock);
	}
	d->n = 0;
}
