/* The virtio-vsock device model: the tx queue's packets go to the muxer
 * (vsock_muxer.c), the muxer's packets go into the rx queue's buffers.
 * The event queue carries only the transport reset a restored device sends
 * (virtio_vsock_restore). */
#include "devices/vsock_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/json_strict.h"
#include "util/log.h"

const struct metrics_group vsock_metrics_group =
	METRICS_SINGLE_GROUP("vsock", METRICS_VSOCK, struct vsock_metrics);

enum { VS_BAD_TX, VS_BAD_RX, VS_BROKEN, VS_NOT_READY };

__attribute__((format(printf, 3, 4))) static void complain(struct virtio_vsock *v, int kind,
							   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_guest_errorv(__FILE__, __LINE__, &v->complaints[kind], "vsock", fmt, ap);
	va_end(ap);
}

uint64_t vsock_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Packet headers ---- */

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < n; i++)
		x |= (uint64_t)p[i] << (8 * i);
	return x;
}

static void put_le(uint8_t *p, uint64_t x, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(x >> (8 * i));
}

void vsock_hdr_decode(const uint8_t r[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
	h->src_cid = get_le(r, 8);
	h->dst_cid = get_le(r + 8, 8);
	h->src_port = (uint32_t)get_le(r + 16, 4);
	h->dst_port = (uint32_t)get_le(r + 20, 4);
	h->len = (uint32_t)get_le(r + 24, 4);
	h->type = (uint16_t)get_le(r + 28, 2);
	h->op = (uint16_t)get_le(r + 30, 2);
	h->flags = (uint32_t)get_le(r + 32, 4);
	h->buf_alloc = (uint32_t)get_le(r + 36, 4);
	h->fwd_cnt = (uint32_t)get_le(r + 40, 4);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t r[VSOCK_HDR_SIZE])
{
	put_le(r, h->src_cid, 8);
	put_le(r + 8, h->dst_cid, 8);
	put_le(r + 16, h->src_port, 4);
	put_le(r + 20, h->dst_port, 4);
	put_le(r + 24, h->len, 4);
	put_le(r + 28, h->type, 2);
	put_le(r + 30, h->op, 2);
	put_le(r + 32, h->flags, 4);
	put_le(r + 36, h->buf_alloc, 4);
	put_le(r + 40, h->fwd_cnt, 4);
}

/* ---- Queues ---- */

static bool queue_broken(struct virtio_vsock *v, struct virtq_chain *c, const char *which)
{
	complain(v, VS_BROKEN, "%s queue broken (%s); device needs reset", which,
		 virtq_strerror(c->err));
	virtio_mmio_needs_reset(&v->mmio);
	v->active = false;
	return false;
}

/* Pops the next usable rx chain into v->rx_chain (v->rx_held); false if
 * there is none. */
static bool get_rx_chain(struct virtio_vsock *v)
{
	struct virtq *q = virtio_mmio_queue(&v->mmio, VSOCK_RXQ);
	while (!v->rx_held) {
		switch (virtq_pop(q, v->gm, &v->rx_chain)) {
		case VIRTQ_EMPTY:
			if (virtq_enable_notify(q, v->gm))
				continue;
			return false;
		case VIRTQ_BROKEN:
			metric_inc(&v->m->rx_queue_event_fails);
			return queue_broken(v, &v->rx_chain, "rx");
		case VIRTQ_BAD_CHAIN:
			complain(v, VS_BAD_RX, "bad rx descriptor chain (%s)",
				 virtq_strerror(v->rx_chain.err));
			metric_inc(&v->m->rx_queue_event_fails);
			if (virtq_push(q, v->gm, v->rx_chain.head, 0) == 0)
				v->pushed |= 1u << VSOCK_RXQ;
			continue;
		case VIRTQ_CHAIN:
			break;
		}
		if (v->rx_chain.nr_read || v->rx_chain.write_len < VSOCK_HDR_SIZE) {
			complain(v, VS_BAD_RX, "rx buffer with %u readable and %u writable bytes",
				 v->rx_chain.read_len, v->rx_chain.write_len);
			metric_inc(&v->m->rx_queue_event_fails);
			if (virtq_push(q, v->gm, v->rx_chain.head, 0) == 0)
				v->pushed |= 1u << VSOCK_RXQ;
			continue;
		}
		v->rx_held = true;
	}
	return true;
}

void vsock_fill_rx(struct virtio_vsock *v)
{
	if (!v->active || v->reset_pending)
		return;
	struct virtq *q = virtio_mmio_queue(&v->mmio, VSOCK_RXQ);
	while (vsock_muxer_has_rx(v) && get_rx_chain(v)) {
		uint32_t room = v->rx_chain.write_len - VSOCK_HDR_SIZE;
		if (room > VSOCK_MAX_PKT_BUF_SIZE)
			room = VSOCK_MAX_PKT_BUF_SIZE;
		struct vsock_hdr h;
		if (!vsock_muxer_recv_pkt(v, &h, &v->rx_chain, room))
			continue; /* the chain stays held */
		uint8_t raw[VSOCK_HDR_SIZE];
		vsock_hdr_encode(&h, raw);
		if (virtq_chain_write(v->gm, &v->rx_chain, 0, raw, sizeof(raw)))
			metric_inc(&v->m->rx_queue_event_fails); /* checked above: cannot happen */
		v->rx_held = false;
		if (virtq_push(q, v->gm, v->rx_chain.head, VSOCK_HDR_SIZE + h.len) == 0)
			v->pushed |= 1u << VSOCK_RXQ;
		metric_inc(&v->m->rx_packets_count);
		metric_add(&v->m->rx_bytes_count, h.len);
	}
}

/* The end of an event: one interrupt for what both queues used. */
static void signal_used(struct virtio_vsock *v)
{
	if (v->pushed)
		virtio_mmio_signal_used_queues(&v->mmio, v->pushed);
	v->pushed = 0;
}

/* One tx chain: a header, then h.len bytes of payload. */
static void tx_packet(struct virtio_vsock *v)
{
	const struct virtq_chain *c = &v->tx_chain;
	uint8_t raw[VSOCK_HDR_SIZE];
	struct vsock_hdr h;
	if (virtq_chain_read(v->gm, c, 0, raw, sizeof(raw))) {
		complain(v, VS_BAD_TX, "tx packet of %u readable bytes: no header", c->read_len);
		metric_inc(&v->m->tx_queue_event_fails);
		return;
	}
	vsock_hdr_decode(raw, &h);
	if (h.len > VSOCK_MAX_PKT_BUF_SIZE || h.len > c->read_len - VSOCK_HDR_SIZE) {
		complain(v, VS_BAD_TX, "tx packet says %u bytes of payload, has %u (at most %u)",
			 h.len, c->read_len - VSOCK_HDR_SIZE, VSOCK_MAX_PKT_BUF_SIZE);
		metric_inc(&v->m->tx_queue_event_fails);
		return;
	}
	if (h.op != VSOCK_OP_RW)
		h.len = 0; /* only data packets carry a payload */
	metric_inc(&v->m->tx_packets_count);
	vsock_muxer_send_pkt(v, &h, c);
}

static void process_tx(struct virtio_vsock *v)
{
	if (!v->active)
		return;
	struct virtq *q = virtio_mmio_queue(&v->mmio, VSOCK_TXQ);
	for (unsigned served = 0;; served++) {
		if (served == VSOCK_QUEUE_SIZE) { /* let the VMM thread serve others */
			v->mmio.hooks.queue_notify(v->mmio.hooks.ctx, VSOCK_TXQ);
			break;
		}
		/* Resets owed to the guest wait for its rx buffers; the rest of
		 * the tx queue waits with them (the rx queue event comes back
		 * here), as Firecracker's full rx queue stops tx. */
		if (v->ctlq_len == VSOCK_CTLQ_SIZE)
			break;
		enum virtq_pop_result res = virtq_pop(q, v->gm, &v->tx_chain);
		if (res == VIRTQ_EMPTY) {
			if (virtq_enable_notify(q, v->gm))
				continue;
			break;
		}
		if (res == VIRTQ_BROKEN) {
			metric_inc(&v->m->tx_queue_event_fails);
			queue_broken(v, &v->tx_chain, "tx");
			break;
		}
		if (res == VIRTQ_BAD_CHAIN) {
			complain(v, VS_BAD_TX, "bad tx descriptor chain (%s)",
				 virtq_strerror(v->tx_chain.err));
			metric_inc(&v->m->tx_queue_event_fails);
		} else {
			tx_packet(v);
		}
		if (virtq_push(q, v->gm, v->tx_chain.head, 0) == 0)
			v->pushed |= 1u << VSOCK_TXQ;
	}
}

/* The event queue's avail->idx, read through the bounds-checked accessor;
 * false if the ring is not in guest memory. */
static bool evq_avail_idx(struct virtio_vsock *v, uint16_t *idx)
{
	struct virtq *q = virtio_mmio_queue(&v->mmio, VSOCK_EVQ);
	uint8_t raw[2];
	if (!q->ready || gm_read(v->gm, q->avail + 2, raw, 2))
		return false;
	*idx = (uint16_t)get_le(raw, 2);
	return true;
}

/* Has the driver added an event buffer since the transport reset? */
static bool evq_refilled(struct virtio_vsock *v)
{
	uint16_t idx;
	return !evq_avail_idx(v, &idx) || idx != v->reset_avail_idx;
}

void virtio_vsock_queue_event(struct virtio_vsock *v, unsigned queue)
{
	switch (queue) {
	case VSOCK_RXQ:
		metric_inc(&v->m->rx_queue_event_count);
		vsock_fill_rx(v);
		process_tx(v); /* it may have waited for room for its resets */
		break;
	case VSOCK_TXQ:
		metric_inc(&v->m->tx_queue_event_count);
		process_tx(v);
		break;
	case VSOCK_EVQ:
		/* The driver gives its event buffer back after handling a
		 * transport reset: what waited for it may go now. A look
		 * without a new buffer (the restore's at every queue) is no
		 * answer. */
		if (!v->reset_pending || !evq_refilled(v))
			return;
		v->reset_pending = false;
		break;
	default:
		return;
	}
	vsock_fill_rx(v);
	signal_used(v);
	vsock_muxer_reap(v);
}

void virtio_vsock_backend_event(struct virtio_vsock *v)
{
	vsock_muxer_epoll_event(v);
	vsock_fill_rx(v);
	signal_used(v);
	vsock_muxer_reap(v);
}

void virtio_vsock_timer_event(struct virtio_vsock *v)
{
	vsock_muxer_timer_event(v);
	vsock_fill_rx(v);
	signal_used(v);
	vsock_muxer_reap(v);
}

/* ---- virtio_dev_ops ---- */

static uint64_t vsock_features(void *dev)
{
	(void)dev;
	return 0; /* stream sockets only: no VIRTIO_VSOCK_F_SEQPACKET */
}

static void vsock_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_vsock *v = dev;
	uint8_t cfg[8];
	put_le(cfg, v->cfg.guest_cid, 8);
	memcpy(data, cfg + offset, len); /* offset + len <= 8: checked by the transport */
}

static void vsock_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_vsock *v = dev;
	(void)offset, (void)data, (void)len;
	metric_inc(&v->m->cfg_fails); /* guest_cid is read-only */
}

static int vsock_activate(void *dev, struct virtio_mmio *m)
{
	struct virtio_vsock *v = dev;
	/* The event queue is not needed: Ember sends no events. */
	for (unsigned q = VSOCK_RXQ; q <= VSOCK_TXQ; q++)
		if (!virtio_mmio_queue(m, q)->ready) {
			metric_inc(&v->m->activate_fails);
			complain(v, VS_NOT_READY, "DRIVER_OK without queue %u ready", q);
			return -1;
		}
	v->active = true;
	/* Host connections may be waiting: the VMM thread serves them (this
	 * runs on a vCPU thread, whose seccomp policy has no socket calls). */
	v->mmio.hooks.queue_notify(v->mmio.hooks.ctx, VSOCK_RXQ);
	return 0;
}

/* On a vCPU thread: closes sockets (close only) and frees, nothing else. */
static void vsock_reset(void *dev)
{
	struct virtio_vsock *v = dev;
	v->active = v->rx_held = v->reset_pending = false;
	v->pushed = 0;
	vsock_muxer_reset(v);
}

static const struct virtio_dev_ops vsock_ops = {
	.device_id = VIRTIO_ID_VSOCK,
	.nr_queues = VSOCK_NR_QUEUES,
	.queue_max_size = {VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE, VSOCK_QUEUE_SIZE},
	.config_size = 8,
	.features = vsock_features,
	.config_read = vsock_config_read,
	.config_write = vsock_config_write,
	.activate = vsock_activate,
	.reset = vsock_reset,
};

/* ---- Life cycle ---- */

int virtio_vsock_create(struct virtio_vsock **out, const struct virtio_vsock_params *p,
			ember_err *e)
{
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	if (!v)
		return err_set(e, "vsock: out of memory");
	v->listen_fd = v->epfd = v->timer_fd = -1;
	v->gm = p->gm;
	v->cfg = *p->cfg;
	v->m = p->metrics ? p->metrics : &v->own_metrics;
	virtq_chain_init(&v->rx_chain, v->rx_segs, VSOCK_QUEUE_SIZE);
	virtq_chain_init(&v->tx_chain, v->tx_segs, VSOCK_QUEUE_SIZE);
	if (virtio_mmio_init(&v->mmio, &vsock_ops, v, p->gm, &p->hooks, e) ||
	    vsock_muxer_open(v, e)) {
		virtio_vsock_destroy(v);
		return err_prefix(e, "vsock");
	}
	*out = v;
	return 0;
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	vsock_muxer_close(v);
	free(v);
}

struct virtio_mmio *virtio_vsock_mmio(struct virtio_vsock *v)
{
	return &v->mmio;
}

struct vsock_metrics *virtio_vsock_metrics(struct virtio_vsock *v)
{
	return v->m;
}

int virtio_vsock_epoll_fd(const struct virtio_vsock *v)
{
	return v->epfd;
}

int virtio_vsock_timer_fd(const struct virtio_vsock *v)
{
	return v->timer_fd;
}

size_t virtio_vsock_nr_conns(const struct virtio_vsock *v)
{
	return v->nr_conns;
}

json_t *virtio_vsock_config_json(const struct virtio_vsock *v)
{
	return vsock_config_json(&v->cfg);
}

/* ---- Config ---- */

int vsock_config_parse(json_t *j, struct vsock_config *out, ember_err *e)
{
	struct {
		struct jint guest_cid;
		const char *uds_path, *vsock_id;
	} f;
	static const struct jfield fields[] = {
		JFIELD(__typeof__(f), guest_cid, JF_INT, true),
		JFIELD(__typeof__(f), uds_path, JF_STRING, true),
		JFIELD(__typeof__(f), vsock_id, JF_STRING, false),
	};
	if (json_strict_parse("vsock", j, fields, 3, &f, e))
		return -1;
	struct vsock_config c = {0};
	if (f.guest_cid.v < 3 || f.guest_cid.v > UINT32_MAX)
		return err_set(e, "vsock: guest_cid must be between 3 and %u, not %lld", UINT32_MAX,
			       (long long)f.guest_cid.v);
	c.guest_cid = (uint32_t)f.guest_cid.v;
	size_t n = strlen(f.uds_path);
	if (!n || n > VSOCK_UDS_PATH_MAX)
		return err_set(e, "vsock: uds_path must be 1 to %d bytes long", VSOCK_UDS_PATH_MAX);
	memcpy(c.uds_path, f.uds_path, n + 1);
	if (f.vsock_id) {
		if (!json_id_valid(f.vsock_id))
			return err_set(e, "vsock: vsock_id must be 1 to %d letters, digits or '_'",
				       JSON_ID_MAX);
		snprintf(c.vsock_id, sizeof(c.vsock_id), "%s", f.vsock_id);
	}
	*out = c;
	return 0;
}

json_t *vsock_config_json(const struct vsock_config *c)
{
	json_t *j = json_pack("{s:I,s:s}", "guest_cid", (json_int_t)c->guest_cid, "uds_path",
			      c->uds_path);
	if (j && c->vsock_id[0])
		json_object_set_new(j, "vsock_id", json_string(c->vsock_id));
	return j;
}

/* ---- Snapshots (docs/snapshot-format.md) ---- */

#define VSOCK_EVENT_TRANSPORT_RESET 0

json_t *virtio_vsock_save(struct virtio_vsock *v)
{
	/* The rx buffer popped and not filled goes back on the available
	 * ring (it is the last one popped), so the memory file and the saved
	 * queue agree that the driver still offers it. */
	if (v->rx_held) {
		virtio_mmio_queue(&v->mmio, VSOCK_RXQ)->last_avail--;
		v->rx_held = false;
	}
	/* Connections and queued resets are not saved: a restored device
	 * starts with none, and tells the driver (virtio_vsock_restore). */
	/* The next host port too: the guest may still hold its reset
	 * sockets under the old ports for a while, and answers a new
	 * connection from one of them with a reset. */
	return json_pack("{s:I, s:I}", "guest_cid", (json_int_t)v->cfg.guest_cid,
			 "next_local_port", (json_int_t)v->next_local_port);
}

/* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET into the driver's next event buffer:
 * it drops its connections and reads guest_cid again. -1 if it has no
 * usable buffer (a driver that does not want events). */
static int send_transport_reset(struct virtio_vsock *v)
{
	struct virtq *q = virtio_mmio_queue(&v->mmio, VSOCK_EVQ);
	struct virtq_chain *c = &v->tx_chain; /* no tx chain is in use now */
	uint8_t ev[4];
	put_le(ev, VSOCK_EVENT_TRANSPORT_RESET, 4);
	if (!q->ready)
		return -1;
	switch (virtq_pop(q, v->gm, c)) {
	case VIRTQ_BROKEN:
		queue_broken(v, c, "event");
		return -1;
	case VIRTQ_EMPTY:
		return -1;
	case VIRTQ_BAD_CHAIN:
		virtq_push(q, v->gm, c->head, 0);
		virtio_mmio_signal_used(&v->mmio, q);
		return -1;
	case VIRTQ_CHAIN:
		break;
	}
	int rc = virtq_chain_write(v->gm, c, 0, ev, sizeof(ev));
	virtq_push(q, v->gm, c->head, rc ? 0 : sizeof(ev));
	/* The driver refills the buffer and notifies, which ends the wait
	 * (virtio_vsock_queue_event): with EVENT_IDX it notifies only if
	 * asked. */
	virtq_enable_notify(q, v->gm);
	virtio_mmio_signal_used(&v->mmio, q);
	v->reset_pending = rc == 0 && evq_avail_idx(v, &v->reset_avail_idx);
	/* With EVENT_IDX the driver kicks only when its avail->idx passes
	 * avail_event, which virtq_enable_notify left at our position: its
	 * other event buffers are still ahead of it, so ask for the next one
	 * it adds. avail_event is the le16 after the used ring's entries. */
	if (v->reset_pending && q->event_idx) {
		uint8_t raw[2];
		put_le(raw, v->reset_avail_idx, 2);
		if (gm_write(v->gm, q->used + 4 + 8ULL * q->size, raw, 2))
			v->reset_pending = false;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	return rc;
}

int virtio_vsock_restore(struct virtio_vsock *v, json_t *state, ember_err *e)
{
	json_t *cid = json_object_get(state, "guest_cid");
	if (!json_is_object(state) || !json_is_integer(cid))
		return err_set(e, "vsock state: no guest_cid");
	if (json_integer_value(cid) != (json_int_t)v->cfg.guest_cid)
		return err_set(e, "vsock state: guest_cid %lld, the device's config %u",
			       (long long)json_integer_value(cid), v->cfg.guest_cid);
	json_t *port = json_object_get(state, "next_local_port");
	if (!json_is_integer(port) || json_integer_value(port) < (1 << 30) ||
	    json_integer_value(port) > UINT32_MAX)
		return err_set(e, "vsock state: next_local_port is not in [2^30, 2^32)");
	v->next_local_port = (uint32_t)json_integer_value(port);
	/* The backend is new (listening at uds_path again, no connection):
	 * the driver's connections are gone, and it must learn so. The
	 * vCPUs do not run yet: the interrupt waits in the irqchip. */
	if (v->active && send_transport_reset(v)) {
		metric_inc(&v->m->ev_queue_event_fails);
		LOG_W("vsock: no event buffer for the transport reset: the guest keeps "
		      "connections the host no longer has");
	}
	return 0;
}
