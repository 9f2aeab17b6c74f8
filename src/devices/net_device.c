/* virtio-net behind the VMM's device interface (devices/device.h): its
 * metrics set ("net_<iface_id>"), its fds, its PATCH, and MMDS on the
 * interfaces mmds-config lists: the guest's frames for MMDS go to an
 * in-VMM TCP/IP stack (src/mmds/netstack.c) and its answers come back
 * through the device's injection queue. */
#include "devices/device.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "devices/virtio_net.h"
#include "mmds/netstack.h"

struct net_device {
	struct virtio_net *net;
	struct metrics_devices *metrics; /* holds a reference on net_<id> if set */
	char *id;
	/* MMDS on this interface, else NULL/-1. */
	struct mmds_stack *mmds_stack;
	uint8_t *mmds_frame; /* one frame from the stack, on its way to the guest */
	int mmds_timer_fd;   /* the stack's next retransmission */
	bool mmds_blocked;   /* frames wait for room in the device's injection queue */
};

/* ---- MMDS: the guest's frames for it, and its answers ---- */

/* Hands the stack's pending frames to the guest while the device's
 * injection queue has room, and arms the timer for the next
 * retransmission. Frames left behind (the guest is not taking its rx
 * frames, or the device is not active) wait until the guest gives rx
 * buffers again (mmds_resume), its next frame for MMDS, or the timer: never
 * a polling loop. */
static void mmds_flush(struct net_device *d, uint64_t now)
{
	size_t n;
	while (virtio_net_injected_pending(d->net) < VIRTIO_NET_INJECT_MAX_FRAMES &&
	       (n = mmds_stack_tx(d->mmds_stack, d->mmds_frame, VIRTIO_NET_MAX_FRAME, now)))
		if (virtio_net_inject_rx(d->net, d->mmds_frame, n) < 0)
			break; /* device not active or queue full: TCP sends it again */
	d->mmds_blocked = mmds_stack_pending(d->mmds_stack, now);
	uint64_t due = mmds_stack_deadline(d->mmds_stack);
	struct itimerspec t = {{0, 0}, {0, 0}};
	if (due != UINT64_MAX) {
		t.it_value.tv_sec = (time_t)(due / 1000);
		t.it_value.tv_nsec = (long)(due % 1000) * 1000000;
	}
	timerfd_settime(d->mmds_timer_fd, TFD_TIMER_ABSTIME, &t, NULL);
}

static bool mmds_tx_frame(void *ctx, const uint8_t *frame, size_t len, uint8_t hdr_flags)
{
	struct net_device *d = ctx;
	uint64_t now = mmds_now_ms();
	unsigned flags = hdr_flags & VIRTIO_NET_HDR_F_NEEDS_CSUM ? MMDS_NET_RX_CSUM_PARTIAL : 0;
	if (!mmds_stack_rx_flags(d->mmds_stack, frame, len, flags, now))
		return false;
	mmds_flush(d, now);
	return true;
}

static void on_mmds_timer(void *dev)
{
	struct net_device *d = dev;
	uint64_t ticks;
	if (read(d->mmds_timer_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	mmds_flush(d, mmds_now_ms());
}

/* After the device delivered rx frames: room for the stack's waiting ones. */
static void mmds_resume(struct net_device *d)
{
	if (d->mmds_stack && d->mmds_blocked &&
	    virtio_net_injected_pending(d->net) < VIRTIO_NET_INJECT_MAX_FRAMES)
		mmds_flush(d, mmds_now_ms());
}

static bool mmds_wants(const struct mmds_config *c, const char *iface_id)
{
	for (size_t i = 0; c && i < c->n_network_interfaces; i++)
		if (!strcmp(c->network_interfaces[i], iface_id))
			return true;
	return false;
}

static int mmds_attach(struct net_device *d, const struct device_env *env, ember_err *e)
{
	d->mmds_stack = calloc(1, sizeof(*d->mmds_stack));
	d->mmds_frame = malloc(VIRTIO_NET_MAX_FRAME);
	d->mmds_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!d->mmds_stack || !d->mmds_frame || d->mmds_timer_fd < 0)
		return err_set(e, "network interface %s: cannot set up MMDS: %s", d->id,
			       strerror(errno ? errno : ENOMEM));
	mmds_stack_init(d->mmds_stack, env->mmds, env->mmds_cfg->ipv4_address,
			env->mmds_metrics, 0);
	virtio_net_set_tx_hook(d->net, &(struct virtio_net_tx_hook){.tx_frame = mmds_tx_frame,
								     .ctx = d});
	return 0;
}

/* ---- the interface ---- */

static void net_destroy(void *dev)
{
	struct net_device *d = dev;
	if (!d)
		return;
	virtio_net_destroy(d->net);
	if (d->mmds_stack)
		mmds_stack_free(d->mmds_stack);
	free(d->mmds_stack);
	free(d->mmds_frame);
	if (d->mmds_timer_fd >= 0)
		close(d->mmds_timer_fd);
	if (d->metrics)
		metrics_device_unregister(d->metrics, &net_metrics_group, d->id);
	free(d->id);
	free(d);
}

static int net_create(const void *cfg, const struct device_env *env, void **out, ember_err *e)
{
	const struct net_config *net = cfg;
	struct net_device *d = calloc(1, sizeof(*d));
	if (!d || !(d->id = strdup(net->iface_id))) {
		free(d);
		return err_set(e, "network interface %s: out of memory", net->iface_id);
	}
	d->mmds_timer_fd = -1;
	struct net_metrics *nm = NULL;
	if (env->metrics && !(nm = metrics_device_register(env->metrics, &net_metrics_group, net->iface_id, e))) {
		net_destroy(d);
		return err_prefix(e, "network interface %s", net->iface_id);
	}
	d->metrics = env->metrics;
	struct virtio_net_params p = {
		.cfg = net,
		.mtu = net->mtu,
		.gm = env->gm,
		.hooks = env->hooks,
		.metrics = nm,
		.mmds_metrics = NULL, /* the MMDS stack counts its own frames */
	};
	if (virtio_net_create(&d->net, &p, e)) {
		net_destroy(d);
		return -1; /* its messages name the interface */
	}
	if (env->mmds && mmds_wants(env->mmds_cfg, net->iface_id) && mmds_attach(d, env, e)) {
		net_destroy(d);
		return -1;
	}
	*out = d;
	return 0;
}

static struct virtio_mmio *net_mmio(void *dev)
{
	return virtio_net_mmio(((struct net_device *)dev)->net);
}

static const char *net_id(const void *dev)
{
	return ((const struct net_device *)dev)->id;
}

static void net_queue_event(void *dev, unsigned queue)
{
	struct net_device *d = dev;
	if (queue == 0)
		virtio_net_process_rx_queue(d->net);
	else if (queue == 1)
		virtio_net_process_tx_queue(d->net);
	mmds_resume(d);
}

static void on_backend(void *dev)
{
	struct net_device *d = dev;
	virtio_net_process_backend(d->net);
	mmds_resume(d);
}

static void on_rx_limiter(void *dev)
{
	struct net_device *d = dev;
	virtio_net_rx_rate_limiter_event(d->net);
	mmds_resume(d);
}

static void on_tx_limiter(void *dev)
{
	virtio_net_tx_rate_limiter_event(((struct net_device *)dev)->net);
}

static size_t net_events(void *dev, struct device_event *out, size_t max)
{
	struct net_device *d = dev;
	/* Edge-triggered backend: while the guest has no rx buffers, frames
	 * wait in the TAP, and a level-triggered fd would spin. The device
	 * reads on its own when buffers come back. */
	const struct device_event ev[] = {
		{virtio_net_backend_fd(d->net), EPOLLIN | EPOLLET, on_backend},
		{virtio_net_rx_rate_limiter_fd(d->net), EPOLLIN, on_rx_limiter},
		{virtio_net_tx_rate_limiter_fd(d->net), EPOLLIN, on_tx_limiter},
		{d->mmds_timer_fd, EPOLLIN, on_mmds_timer},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]) && n < max; i++)
		out[n++] = ev[i];
	return n;
}

static json_t *net_json(const void *dev)
{
	return virtio_net_config_json(((const struct net_device *)dev)->net);
}

static int net_patch(void *dev, const void *patch, ember_err *e)
{
	return virtio_net_patch(((struct net_device *)dev)->net, patch, e);
}

/* Frames still in the TAP or in MMDS's stack are not part of a snapshot
 * (a restored guest sees them as lost on the wire, and TCP resends); those
 * the device already holds are (virtio_net_save). */
static int net_save(void *dev, json_t **state, ember_err *e)
{
	*state = virtio_net_save(((struct net_device *)dev)->net);
	return *state ? 0 : err_set(e, "net: out of memory");
}

static int net_restore(void *dev, json_t *state, ember_err *e)
{
	if (!json_is_object(state))
		return err_set(e, "net state is not an object");
	return virtio_net_restore(((struct net_device *)dev)->net, state, e);
}

const struct device_ops net_device_ops = {
	.kind = "net",
	.metrics_group = &net_metrics_group,
	.create = net_create,
	.destroy = net_destroy,
	.mmio = net_mmio,
	.id = net_id,
	.queue_event = net_queue_event,
	.events = net_events,
	.config_json = net_json,
	.patch = net_patch,
	.save = net_save,
	.restore = net_restore,
};
