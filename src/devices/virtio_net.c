/* The virtio-net device: life cycle, features and config space, the TX
 * path (tx queue to the backend or the MMDS hook), rate-limiter events and
 * PATCH. RX is in virtio_net_rx.c. docs/net.md describes the behaviour;
 * the comments here say why where it is not obvious. */
#include "devices/virtio_net_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/log.h"

const struct metrics_group net_metrics_group = METRICS_GROUP("net", METRICS_NET, struct net_metrics);

void net_complain(struct virtio_net *n, enum net_complaint kind, const char *fmt, ...)
{
	char who[80];
	snprintf(who, sizeof(who), "net %s", n->cfg.iface_id);
	va_list ap;
	va_start(ap, fmt);
	log_guest_errorv(__FILE__, __LINE__, &n->complaints[kind], who, fmt, ap);
	va_end(ap);
}

uint64_t net_now_ns(struct virtio_net *n)
{
	return n->now_ns ? n->now_ns(n->clock_ctx) : rate_limiter_now_ns();
}

void net_arm_timer(struct virtio_net *n, struct rate_limiter_timer *t, struct rate_limiter *rl)
{
	ember_err e;
	if (rate_limiter_timer_arm(t, rl, &e)) {
		metric_inc(&n->m->event_fails);
		net_complain(n, NET_TIMER_FAIL, "%s", e.msg);
	}
}

static struct virtq *tx_queue(struct virtio_net *n)
{
	return virtio_mmio_queue(&n->mmio, VIRTIO_NET_TX_QUEUE);
}

/* ---- TX ---- */

/* Available chains the driver has published and the device not taken. */
static uint16_t avail_pending(struct virtio_net *n, struct virtq *q)
{
	uint16_t *idx = gm_ptr(n->gm, q->avail + 2, sizeof(uint16_t));
	return idx ? (uint16_t)(__atomic_load_n(idx, __ATOMIC_RELAXED) - q->last_avail) : 0;
}

/* Is the chain in tx_chain a frame we can send? Counts and complains if
 * not. */
static bool tx_valid(struct virtio_net *n)
{
	const struct virtq_chain *c = &n->tx_chain;
	if (c->write_len) {
		/* Firecracker refuses a TX chain with a write-only buffer too. */
		metric_inc(&n->m->tx_fails);
		net_complain(n, NET_TX_WRITABLE, "TX chain with a device-writable buffer");
		return false;
	}
	if (c->read_len < VIRTIO_NET_HDR_SIZE || c->read_len > VIRTIO_NET_MAX_BUFFER) {
		metric_inc(&n->m->tx_malformed_frames);
		net_complain(n, NET_TX_MALFORMED, "TX frame of %u bytes (header included: %d to %d)",
			     c->read_len, VIRTIO_NET_HDR_SIZE, VIRTIO_NET_MAX_BUFFER);
		return false;
	}
	return true;
}

/* Counts a frame whose source MAC is not the configured guest_mac (it is
 * sent all the same, as in Firecracker). eth points at the Ethernet
 * header, NULL if the frame is too short to have one. */
static void check_spoof(struct virtio_net *n, const uint8_t *eth)
{
	if (n->cfg.has_guest_mac && eth && memcmp(eth + 6, n->cfg.guest_mac, 6))
		metric_inc(&n->m->tx_spoofed_mac_count);
}

/* Sends the frame in tx_chain (len bytes, header included) to the hook or
 * the backend. */
static void tx_send(struct virtio_net *n, uint32_t len)
{
	const struct virtq_chain *c = &n->tx_chain;
	uint8_t eth[VIRTIO_NET_ETH_HLEN];
	const uint8_t *ethp = NULL;
	ssize_t r;
	uint64_t start = metrics_mono_us();
	if (n->hook.tx_frame) {
		/* One private copy: the hook parses bytes the guest cannot
		 * change under it, and the backend gets the same bytes. */
		if (virtq_chain_read(n->gm, c, 0, n->tx_buf, len))
			return; /* cannot happen: the chain was checked */
		if (n->hook.tx_frame(n->hook.ctx, n->tx_buf + VIRTIO_NET_HDR_SIZE,
				     len - VIRTIO_NET_HDR_SIZE, n->tx_buf[0])) {
			/* As Firecracker: MMDS traffic costs no tx tokens. */
			rate_limiter_replenish(&n->tx_rl, 1, RL_OPS, net_now_ns(n));
			rate_limiter_replenish(&n->tx_rl, len, RL_BANDWIDTH, net_now_ns(n));
			if (n->mmds_m)
				metric_inc(&n->mmds_m->rx_accepted);
			return;
		}
		if (len >= VIRTIO_NET_HDR_SIZE + VIRTIO_NET_ETH_HLEN)
			ethp = n->tx_buf + VIRTIO_NET_HDR_SIZE;
		check_spoof(n, ethp);
		start = metrics_mono_us();
		r = write(n->fd, n->tx_buf, len);
	} else {
		int iovcnt = virtq_chain_iov(n->gm, c, false, 0, len, n->tx_iov,
					     VIRTIO_NET_QUEUE_SIZE);
		if (iovcnt < 0)
			return; /* cannot happen: one iovec per buffer */
		if (!virtq_chain_read(n->gm, c, VIRTIO_NET_HDR_SIZE, eth, sizeof(eth)))
			ethp = eth;
		check_spoof(n, ethp);
		r = writev(n->fd, n->tx_iov, iovcnt);
	}
	metric_latency_record(&n->m->tap_write_agg, metrics_mono_us() - start);
	if (r == (ssize_t)len) {
		metric_add(&n->m->tx_bytes_count, len);
		metric_inc(&n->m->tx_packets_count);
		metric_inc(&n->m->tx_count);
		return;
	}
	/* The frame is dropped, as in Firecracker: a TAP takes a frame whole
	 * or refuses it, and a full one refuses with EAGAIN. */
	metric_inc(&n->m->tap_write_fails);
	if (r < 0)
		net_complain(n, NET_TX_WRITE_FAIL, "write of a %u-byte frame to %s failed: %s", len,
			     n->cfg.host_dev_name, strerror(errno));
	else
		net_complain(n, NET_TX_WRITE_FAIL, "write of a %u-byte frame to %s took %zd bytes",
			     len, n->cfg.host_dev_name, r);
}

void net_requeue(struct virtio_net *n, uint32_t queue)
{
	if (n->mmio.hooks.queue_notify)
		n->mmio.hooks.queue_notify(n->mmio.hooks.ctx, queue);
}

/* Works through the tx queue until it is empty, the rate limiter refuses
 * a frame, or it has taken VIRTIO_NET_WORK_BUDGET chains (then the queue
 * is notified again, for the device's next turn). */
static void tx_run(struct virtio_net *n)
{
	if (!n->active)
		return;
	struct virtq *q = tx_queue(n);
	bool used_any = false, pushed = false;
	n->in_tx = true;
	for (unsigned taken = 0;; taken++) {
		if (taken == VIRTIO_NET_WORK_BUDGET) {
			/* As at the end of the ring: notifications back on, so
			 * a chain added now is not missed. */
			if (avail_pending(n, q) || virtq_enable_notify(q, n->gm))
				net_requeue(n, VIRTIO_NET_TX_QUEUE);
			break;
		}
		if (!n->tx_held) {
			enum virtq_pop_result r = virtq_pop(q, n->gm, &n->tx_chain);
			if (r == VIRTQ_EMPTY) {
				if (virtq_enable_notify(q, n->gm))
					continue;
				break;
			}
			if (r == VIRTQ_BROKEN) {
				net_complain(n, NET_BROKEN_RING, "tx queue broken (%s); device needs "
					     "reset", virtq_strerror(n->tx_chain.err));
				metric_inc(&n->m->tx_fails);
				virtio_mmio_needs_reset(&n->mmio);
				break;
			}
			metric_add(&n->m->tx_remaining_reqs_count, avail_pending(n, q));
			if (r == VIRTQ_BAD_CHAIN) {
				net_complain(n, NET_TX_BAD_CHAIN, "bad TX descriptor chain (%s)",
					     virtq_strerror(n->tx_chain.err));
				metric_inc(&n->m->tx_fails);
				pushed |= virtq_push(q, n->gm, n->tx_chain.head, 0) == 0;
				used_any = true;
				continue;
			}
			if (!tx_valid(n)) {
				pushed |= virtq_push(q, n->gm, n->tx_chain.head, 0) == 0;
				used_any = true;
				continue;
			}
		}
		uint32_t len = n->tx_chain.read_len;
		if (!rate_limiter_consume_both(&n->tx_rl, len, 1, net_now_ns(n))) {
			n->tx_held = true;
			metric_inc(&n->m->tx_rate_limiter_throttled);
			net_arm_timer(n, &n->tx_timer, &n->tx_rl);
			break;
		}
		n->tx_held = false;
		tx_send(n, len);
		/* Nothing is written into a TX chain: used length 0. */
		pushed |= virtq_push(q, n->gm, n->tx_chain.head, 0) == 0;
		used_any = true;
	}
	n->in_tx = false;
	if (!used_any)
		metric_inc(&n->m->no_tx_avail_buffer);
	if (pushed)
		virtio_mmio_signal_used(&n->mmio, q);
	/* The hook may have answered: its frames go to the guest now. */
	if (n->rx_kick) {
		n->rx_kick = false;
		if (!rate_limiter_is_blocked(&n->rx_rl))
			net_rx_run(n);
	}
}

void virtio_net_process_tx_queue(struct virtio_net *n)
{
	metric_inc(&n->m->tx_queue_event_count);
	if (rate_limiter_is_blocked(&n->tx_rl))
		metric_inc(&n->m->tx_rate_limiter_throttled);
	else
		tx_run(n);
}

void virtio_net_process_rx_queue(struct virtio_net *n)
{
	metric_inc(&n->m->rx_queue_event_count);
	if (rate_limiter_is_blocked(&n->rx_rl))
		metric_inc(&n->m->rx_rate_limiter_throttled);
	else
		net_rx_run(n);
}

void virtio_net_process_backend(struct virtio_net *n)
{
	metric_inc(&n->m->rx_tap_event_count);
	if (rate_limiter_is_blocked(&n->rx_rl))
		metric_inc(&n->m->rx_rate_limiter_throttled);
	else
		net_rx_run(n);
}

void virtio_net_rx_rate_limiter_event(struct virtio_net *n)
{
	metric_inc(&n->m->rx_event_rate_limiter_count);
	if (rate_limiter_timer_clear(&n->rx_timer) < 0)
		metric_inc(&n->m->event_fails);
	if (rate_limiter_timer_fired(&n->rx_rl, net_now_ns(n)))
		net_rx_run(n);
	else
		net_arm_timer(n, &n->rx_timer, &n->rx_rl);
}

void virtio_net_tx_rate_limiter_event(struct virtio_net *n)
{
	metric_inc(&n->m->tx_rate_limiter_event_count);
	if (rate_limiter_timer_clear(&n->tx_timer) < 0)
		metric_inc(&n->m->event_fails);
	if (rate_limiter_timer_fired(&n->tx_rl, net_now_ns(n)))
		tx_run(n);
	else
		net_arm_timer(n, &n->tx_timer, &n->tx_rl);
}

/* ---- virtio_dev_ops ---- */

static uint64_t net_features(void *dev)
{
	struct virtio_net *n = dev;
	/* Firecracker's set. The transport adds VERSION_1, EVENT_IDX and
	 * INDIRECT_DESC. */
	uint64_t f = (1ULL << VIRTIO_NET_F_CSUM) | (1ULL << VIRTIO_NET_F_GUEST_CSUM) |
		     (1ULL << VIRTIO_NET_F_GUEST_TSO4) | (1ULL << VIRTIO_NET_F_GUEST_TSO6) |
		     (1ULL << VIRTIO_NET_F_GUEST_UFO) | (1ULL << VIRTIO_NET_F_HOST_TSO4) |
		     (1ULL << VIRTIO_NET_F_HOST_TSO6) | (1ULL << VIRTIO_NET_F_HOST_UFO) |
		     (1ULL << VIRTIO_NET_F_MRG_RXBUF);
	if (n->cfg.has_guest_mac)
		f |= 1ULL << VIRTIO_NET_F_MAC;
	if (n->mtu)
		f |= 1ULL << VIRTIO_NET_F_MTU;
	return f;
}

static void net_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_net *n = dev;
	/* Little-endian, as the spec wants and x86 is. The status reads
	 * LINK_UP although VIRTIO_NET_F_STATUS is not offered (Firecracker
	 * offers neither the feature nor a value). */
	uint8_t cfg[VIRTIO_NET_CONFIG_SIZE] = {0};
	uint16_t status = VIRTIO_NET_S_LINK_UP, pairs = 1, mtu = n->mtu;
	if (n->cfg.has_guest_mac)
		memcpy(cfg, n->cfg.guest_mac, 6);
	memcpy(cfg + 6, &status, 2);
	memcpy(cfg + 8, &pairs, 2);
	memcpy(cfg + 10, &mtu, 2);
	memcpy(data, cfg + offset, len); /* bounds checked by the transport */
}

static void net_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_net *n = dev;
	(void)offset;
	(void)data;
	(void)len;
	/* The MAC is read-only for a virtio 1.x driver, as in Firecracker. */
	metric_inc(&n->m->cfg_fails);
}

static int net_activate(void *dev, struct virtio_mmio *m)
{
	struct virtio_net *n = dev;
	if (!virtio_mmio_queue(m, VIRTIO_NET_RX_QUEUE)->ready ||
	    !virtio_mmio_queue(m, VIRTIO_NET_TX_QUEUE)->ready) {
		metric_inc(&n->m->activate_fails);
		net_complain(n, NET_NOT_READY, "DRIVER_OK without both queues ready");
		return -1;
	}
	uint64_t f = virtio_mmio_features(m);
	if (n->fd_is_tap) {
		/* A TAP keeps its offloads from earlier users: always set them,
		 * or a guest without GUEST_TSO could be sent GSO frames. */
		ember_err e;
		if (virtio_net_tap_set_offload(n->fd, virtio_net_tap_offload_flags(f), &e)) {
			metric_inc(&n->m->activate_fails);
			LOG_E("net %s: %s", n->cfg.iface_id, e.msg);
			return -1;
		}
	}
	n->mrg_rxbuf = (f >> VIRTIO_NET_F_MRG_RXBUF) & 1;
	n->active = true;
	/* Frames the backend queued before now signalled their edge while
	 * the device could not take them; a driver that posted its buffers
	 * before DRIVER_OK will not kick again. Wake the rx queue, as
	 * Firecracker's registering the TAP on activation does. */
	if (m->hooks.queue_notify)
		m->hooks.queue_notify(m->hooks.ctx, VIRTIO_NET_RX_QUEUE);
	return 0;
}

static void net_reset(void *dev)
{
	struct virtio_net *n = dev;
	/* Everything is synchronous: nothing is in flight, only forgotten. */
	net_rx_reset(n);
	n->active = n->tx_held = n->rx_kick = false;
}

static const struct virtio_dev_ops net_ops = {
	.device_id = VIRTIO_ID_NET,
	.nr_queues = 2,
	.queue_max_size = {VIRTIO_NET_QUEUE_SIZE, VIRTIO_NET_QUEUE_SIZE},
	.config_size = VIRTIO_NET_CONFIG_SIZE,
	.features = net_features,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.activate = net_activate,
	.reset = net_reset,
};

/* ---- Life cycle and updates ---- */

static int copy_config(struct net_config *dst, const struct net_config *src, ember_err *e)
{
	*dst = *src;
	dst->iface_id = strdup(src->iface_id ? src->iface_id : "");
	dst->host_dev_name = strdup(src->host_dev_name ? src->host_dev_name : "");
	if (!dst->iface_id || !dst->host_dev_name)
		return err_set(e, "out of memory");
	return 0;
}

int virtio_net_create(struct virtio_net **out, const struct virtio_net_params *p, ember_err *e)
{
	const char *id = p->cfg->iface_id ? p->cfg->iface_id : "?";
	if (p->mtu && p->mtu < 68)
		return err_set(e, "network interface %s: mtu %u is out of range [68, 65535]", id,
			       p->mtu);
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return err_set(e, "network interface %s: out of memory", id);
	n->fd = -1;
	n->rx_timer.fd = n->tx_timer.fd = -1;
	n->gm = p->gm;
	n->mtu = p->mtu;
	n->now_ns = p->now_ns;
	n->clock_ctx = p->clock_ctx;
	n->m = p->metrics ? p->metrics : &n->own_metrics;
	n->mmds_m = p->mmds_metrics;
	virtq_chain_init(&n->tx_chain, n->tx_segs, VIRTIO_NET_QUEUE_SIZE);
	virtq_chain_init(&n->rx_chain, n->rx_segs, VIRTIO_NET_QUEUE_SIZE);
	if (copy_config(&n->cfg, p->cfg, e))
		goto fail;
	rate_limiter_init(&n->rx_rl, &n->cfg.rx, net_now_ns(n));
	rate_limiter_init(&n->tx_rl, &n->cfg.tx, net_now_ns(n));
	if (rate_limiter_timer_open(&n->rx_timer, e) || rate_limiter_timer_open(&n->tx_timer, e))
		goto fail;
	if (virtio_mmio_init(&n->mmio, &net_ops, n, p->gm, &p->hooks, e))
		goto fail;
	if (p->fd_given) {
		int fl = fcntl(p->fd, F_GETFL);
		if (fl < 0 || fcntl(p->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			err_set(e, "backend fd %d: %s", p->fd, strerror(errno));
			goto fail;
		}
		n->fd_is_tap = p->fd_is_tap;
		n->fd = p->fd; /* last: from here on the fd is the device's */
	} else {
		n->fd = virtio_net_tap_open(n->cfg.host_dev_name, e);
		if (n->fd < 0)
			goto fail;
		n->fd_is_tap = true;
	}
	*out = n;
	return 0;
fail:
	err_prefix(e, "network interface %s", id);
	if (p->fd_given)
		n->fd = -1; /* still the caller's */
	virtio_net_destroy(n);
	return -1;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	net_rx_reset(n);
	if (n->fd >= 0)
		close(n->fd);
	rate_limiter_timer_close(&n->rx_timer);
	rate_limiter_timer_close(&n->tx_timer);
	net_config_free(&n->cfg);
	free(n);
}

json_t *virtio_net_save(struct virtio_net *n)
{
	/* A frame the tx rate limiter held back goes back on the available
	 * ring (it is the last chain popped): the restored device sends it. */
	if (n->tx_held) {
		tx_queue(n)->last_avail--;
		n->tx_held = false;
	}
	return net_rx_save(n);
}

int virtio_net_restore(struct virtio_net *n, json_t *state, ember_err *e)
{
	return net_rx_restore(n, state, e);
}

int virtio_net_update_rate_limiters(struct virtio_net *n, const struct rate_limiter_config *rx,
				    const struct rate_limiter_config *tx, ember_err *e)
{
	uint64_t now = net_now_ns(n);
	bool kick_rx = rx && rate_limiter_update(&n->rx_rl, rx, now);
	bool kick_tx = tx && rate_limiter_update(&n->tx_rl, tx, now);
	if (rx)
		rate_limiter_config_apply_update(&n->cfg.rx, rx);
	if (tx)
		rate_limiter_config_apply_update(&n->cfg.tx, tx);
	if (rate_limiter_timer_arm(&n->rx_timer, &n->rx_rl, e) ||
	    rate_limiter_timer_arm(&n->tx_timer, &n->tx_rl, e))
		return err_prefix(e, "network interface %s", n->cfg.iface_id);
	if (kick_tx)
		tx_run(n);
	if (kick_rx)
		net_rx_run(n);
	return 0;
}

int virtio_net_patch(struct virtio_net *n, const struct net_patch *p, ember_err *e)
{
	return virtio_net_update_rate_limiters(n, &p->rx, &p->tx, e);
}

void virtio_net_set_tx_hook(struct virtio_net *n, const struct virtio_net_tx_hook *h)
{
	if (h)
		n->hook = *h;
	else
		memset(&n->hook, 0, sizeof(n->hook));
}

/* ---- Accessors ---- */

struct virtio_mmio *virtio_net_mmio(struct virtio_net *n)
{
	return &n->mmio;
}

struct net_metrics *virtio_net_metrics(struct virtio_net *n)
{
	return n->m;
}

const char *virtio_net_iface_id(const struct virtio_net *n)
{
	return n->cfg.iface_id;
}

int virtio_net_backend_fd(const struct virtio_net *n)
{
	return n->fd;
}

int virtio_net_rx_rate_limiter_fd(const struct virtio_net *n)
{
	return n->rx_timer.fd;
}

int virtio_net_tx_rate_limiter_fd(const struct virtio_net *n)
{
	return n->tx_timer.fd;
}

json_t *virtio_net_config_json(const struct virtio_net *n)
{
	struct net_config c = n->cfg;
	rate_limiter_get_config(&n->rx_rl, &c.rx);
	rate_limiter_get_config(&n->tx_rl, &c.tx);
	return net_config_json(&c);
}
