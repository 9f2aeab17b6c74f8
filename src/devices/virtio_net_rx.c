/* The virtio-net RX path: frames from the MMDS injection queue and the
 * backend into the guest's receive buffers.
 *
 * A frame is read from the backend into a host buffer first, and only
 * when the guest has at least one receive buffer, so frames wait in the
 * kernel's TAP queue while the guest has none. Knowing the frame's length
 * before touching the guest's buffers lets the device take exactly the
 * buffers it needs (with VIRTIO_NET_F_MRG_RXBUF, as many as the frame
 * fills), never truncate, and treat backend and MMDS frames alike. The cost
 * is one copy per received frame. */
#include "devices/virtio_net_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/blob.h"

static struct virtq *rx_queue(struct virtio_net *n)
{
	return virtio_mmio_queue(&n->mmio, VIRTIO_NET_RX_QUEUE);
}

static struct net_rx_held *held_at(struct virtio_net *n, unsigned i)
{
	return &n->held[(n->held_first + i) % NET_RX_HELD_MAX];
}

static const struct virtq_seg *pool_at(struct virtio_net *n, uint32_t i)
{
	return &n->pool[i % NET_RX_SEG_POOL];
}

/* Takes the chain in rx_chain into the held list. */
static void hold(struct virtio_net *n)
{
	const struct virtq_chain *c = &n->rx_chain;
	uint32_t start = (n->pool_first + n->pool_count) % NET_RX_SEG_POOL;
	for (unsigned i = 0; i < c->nr_segs; i++)
		n->pool[(start + i) % NET_RX_SEG_POOL] = c->segs[i];
	n->pool_count += c->nr_segs;
	*held_at(n, n->held_count++) = (struct net_rx_held){
		.head = c->head, .nsegs = c->nr_segs, .len = c->write_len, .seg_start = start};
	n->held_bytes += c->write_len;
}

/* Drops the oldest `count` held chains (they went to the used ring). */
static void unhold(struct virtio_net *n, unsigned count)
{
	for (unsigned i = 0; i < count; i++) {
		struct net_rx_held *h = held_at(n, 0);
		n->pool_first = (n->pool_first + h->nsegs) % NET_RX_SEG_POOL;
		n->pool_count -= h->nsegs;
		n->held_bytes -= h->len;
		n->held_first = (n->held_first + 1) % NET_RX_HELD_MAX;
		n->held_count--;
	}
}

static void push_unused(struct virtio_net *n, uint16_t head)
{
	if (virtq_push(rx_queue(n), n->gm, head, 0) == 0)
		n->rx_pushed = true;
}

enum reserve { RX_READY, RX_EMPTY, RX_NO_FIT, RX_BROKEN };

/* Does what is held take a frame of `need` bytes (header included)? */
static bool fits(struct virtio_net *n, size_t need)
{
	if (!n->held_count)
		return false;
	return n->mrg_rxbuf ? n->held_bytes >= need : held_at(n, 0)->len >= need;
}

/* Pops receive chains until the held ones take `need` bytes. RX_EMPTY: the
 * ring ran dry (notifications are on, so the driver's next buffer wakes
 * the rx queue). RX_NO_FIT: the frame can never fit; drop it. */
static enum reserve reserve(struct virtio_net *n, size_t need)
{
	struct virtq *q = rx_queue(n);
	while (!fits(n, need)) {
		/* Without MRG_RXBUF only the first buffer counts; with it, the
		 * device can hold no more (and the driver has likely given all
		 * it has: chains >= queue size). */
		if ((!n->mrg_rxbuf && n->held_count) || n->held_count >= NET_RX_HELD_MAX ||
		    n->held_count >= q->size || n->pool_count + VIRTIO_NET_QUEUE_SIZE > NET_RX_SEG_POOL)
			return RX_NO_FIT;
		switch (virtq_pop(q, n->gm, &n->rx_chain)) {
		case VIRTQ_EMPTY:
			if (virtq_enable_notify(q, n->gm))
				continue;
			return RX_EMPTY;
		case VIRTQ_BROKEN:
			net_complain(n, NET_BROKEN_RING, "rx queue broken (%s); device needs reset",
				     virtq_strerror(n->rx_chain.err));
			metric_inc(&n->m->rx_fails);
			virtio_mmio_needs_reset(&n->mmio);
			return RX_BROKEN;
		case VIRTQ_BAD_CHAIN:
			net_complain(n, NET_RX_BAD_CHAIN, "bad RX descriptor chain (%s)",
				     virtq_strerror(n->rx_chain.err));
			metric_inc(&n->m->rx_fails);
			push_unused(n, n->rx_chain.head);
			continue;
		case VIRTQ_CHAIN:
			break;
		}
		const struct virtq_chain *c = &n->rx_chain;
		if (c->read_len || c->write_len < VIRTIO_NET_HDR_SIZE) {
			/* A receive buffer must be device-writable and hold
			 * at least the header (spec 5.1.6.3.1). */
			net_complain(n, NET_RX_SMALL_BUF, "RX chain with %u readable and %u writable "
				     "bytes", c->read_len, c->write_len);
			metric_inc(&n->m->rx_fails);
			push_unused(n, c->head);
			continue;
		}
		hold(n);
	}
	return RX_READY;
}

/* Writes len bytes at offset off into held chain h. */
static void held_write(struct virtio_net *n, const struct net_rx_held *h, uint32_t off,
		       const uint8_t *src, uint32_t len)
{
	for (unsigned i = 0; i < h->nsegs && len; i++) {
		const struct virtq_seg *s = pool_at(n, h->seg_start + i);
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		uint32_t k = s->len - off < len ? s->len - off : len;
		/* Cannot fail: the buffer was checked to be in guest memory. */
		(void)gm_write(n->gm, s->gpa + off, src, k);
		src += k;
		len -= k;
		off = 0;
	}
}

/* Puts the first `count` held chains on the used ring with used lengths
 * lens[], published by one used->idx store. A merged frame must appear
 * whole: Linux reads num_buffers from the first buffer and drops the frame
 * if the others are not on the ring yet, so virtq_push (which publishes
 * each) cannot be used for more than one. */
static void used_publish(struct virtio_net *n, const uint32_t *lens, unsigned count)
{
	struct virtq *q = rx_queue(n);
	if (count == 1) {
		if (virtq_push(q, n->gm, held_at(n, 0)->head, lens[0]) == 0)
			n->rx_pushed = true;
		return;
	}
	uint16_t *idx = gm_ptr_w(n->gm, q->used + 2, sizeof(uint16_t));
	if (!q->ready || !idx)
		return;
	for (unsigned i = 0; i < count; i++) {
		uint32_t elem[2] = {held_at(n, i)->head, lens[i]};
		uint16_t slot = (uint16_t)(q->used_idx + i) & (q->size - 1);
		(void)gm_write(n->gm, q->used + 4 + 8ULL * slot, elem, sizeof(elem));
	}
	q->used_idx = (uint16_t)(q->used_idx + count);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(idx, q->used_idx, __ATOMIC_RELAXED);
	n->rx_pushed = true;
}

/* Copies a frame (vnet header hdr, then len bytes of body) into the held
 * chains, which fit() it, and gives them to the driver. */
static void deliver(struct virtio_net *n, const uint8_t *hdr, const uint8_t *body, size_t len)
{
	uint32_t total = (uint32_t)(VIRTIO_NET_HDR_SIZE + len);
	uint32_t lens[NET_RX_HELD_MAX];
	unsigned count = 0;
	uint32_t left = total;
	while (left) {
		uint32_t k = held_at(n, count)->len < left ? held_at(n, count)->len : left;
		lens[count++] = k;
		left -= k;
	}
	struct virtio_net_hdr_v1 h;
	memcpy(&h, hdr, sizeof(h));
	/* num_buffers: the chains used; 1 without MRG_RXBUF (spec 5.1.6.4).
	 * A TAP leaves the field alone, so it is always set here. */
	h.num_buffers = (uint16_t)count;
	held_write(n, held_at(n, 0), 0, (const uint8_t *)&h, sizeof(h));
	uint32_t off = VIRTIO_NET_HDR_SIZE;
	for (unsigned i = 0; i < count; i++) {
		uint32_t k = lens[i] - off;
		held_write(n, held_at(n, i), off, body, k);
		body += k;
		off = 0;
	}
	used_publish(n, lens, count);
	unhold(n, count);
}

/* The next frame to deliver: an injected one, else one from the backend
 * (read now if none is pending). Returns false when there is none. */
static bool next_frame(struct virtio_net *n, bool *injected)
{
	if (n->inj_count) {
		*injected = true;
		return true;
	}
	*injected = false;
	while (!n->rx_pending) {
		/* Read only when the guest has a buffer: otherwise the frame
		 * waits in the kernel, where it costs us nothing. */
		enum reserve r = reserve(n, 1);
		if (r != RX_READY) {
			if (r == RX_EMPTY)
				metric_inc(&n->m->no_rx_avail_buffer);
			return false;
		}
		ssize_t got = read(n->fd, n->rx_buf, sizeof(n->rx_buf));
		if (got < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				metric_inc(&n->m->tap_read_fails);
				net_complain(n, NET_RX_READ_FAIL, "read from %s failed: %s",
					     n->cfg.host_dev_name, strerror(errno));
			}
			return false;
		}
		if (got < VIRTIO_NET_HDR_SIZE) {
			metric_inc(&n->m->tap_read_fails);
			net_complain(n, NET_RX_RUNT, "%zd-byte frame from %s, shorter than its "
				     "header", got, n->cfg.host_dev_name);
			continue;
		}
		n->rx_pending = true;
		n->rx_len = (size_t)got;
	}
	return true;
}

static void drop_injected(struct virtio_net *n)
{
	struct net_injected *f = &n->inj[n->inj_first];
	n->inj_bytes -= f->len;
	free(f->data);
	f->data = NULL;
	n->inj_first = (n->inj_first + 1) % VIRTIO_NET_INJECT_MAX_FRAMES;
	n->inj_count--;
}

void net_rx_run(struct virtio_net *n)
{
	static const uint8_t zero_hdr[VIRTIO_NET_HDR_SIZE];
	if (!n->active)
		return;
	bool injected;
	for (unsigned taken = 0;; taken++) {
		if (taken == VIRTIO_NET_WORK_BUDGET) {
			/* More frames may wait (the backend is edge-triggered:
			 * it would not say so again): the device's next turn
			 * goes on. */
			net_requeue(n, VIRTIO_NET_RX_QUEUE);
			break;
		}
		if (!next_frame(n, &injected))
			break;
		const uint8_t *hdr, *body;
		size_t len;
		if (injected) {
			hdr = zero_hdr;
			body = n->inj[n->inj_first].data;
			len = n->inj[n->inj_first].len;
		} else {
			hdr = n->rx_buf;
			body = n->rx_buf + VIRTIO_NET_HDR_SIZE;
			len = n->rx_len - VIRTIO_NET_HDR_SIZE;
		}
		size_t total = VIRTIO_NET_HDR_SIZE + len;
		enum reserve r = reserve(n, total);
		if (r == RX_EMPTY) {
			/* Deferred: the driver's next buffers resume it. */
			metric_inc(&n->m->no_rx_avail_buffer);
			break;
		}
		if (r == RX_BROKEN)
			break;
		if (r == RX_READY) {
			if (!rate_limiter_consume_both(&n->rx_rl, total, 1, net_now_ns(n))) {
				metric_inc(&n->m->rx_rate_limiter_throttled);
				net_arm_timer(n, &n->rx_timer, &n->rx_rl);
				break;
			}
			deliver(n, hdr, body, len);
			metric_inc(&n->m->rx_count);
			metric_inc(&n->m->rx_packets_count);
			metric_add(&n->m->rx_bytes_count, total);
			if (injected && n->mmds_m) {
				metric_inc(&n->mmds_m->tx_frames);
				metric_add(&n->mmds_m->tx_bytes, len);
			}
		} else {
			/* Bigger than the guest's buffers can ever take. */
			metric_inc(&n->m->rx_fails);
			uint64_t room = !n->held_count ? 0
					: n->mrg_rxbuf	? n->held_bytes
							: held_at(n, 0)->len;
			net_complain(n, NET_RX_NO_FIT, "dropped a %zu-byte frame: the receive buffers "
				     "hold %llu bytes", total, (unsigned long long)room);
		}
		if (injected)
			drop_injected(n);
		else
			n->rx_pending = false;
	}
	if (n->rx_pushed) {
		n->rx_pushed = false;
		virtio_mmio_signal_used(&n->mmio, rx_queue(n));
	}
}

void net_rx_reset(struct virtio_net *n)
{
	n->held_first = n->held_count = 0;
	n->pool_first = n->pool_count = 0;
	n->held_bytes = 0;
	n->rx_pending = n->rx_pushed = false;
	while (n->inj_count)
		drop_injected(n);
	n->inj_first = 0;
}

int virtio_net_inject_rx(struct virtio_net *n, const void *frame, size_t len)
{
	if (!n->active || len == 0 || len > VIRTIO_NET_MAX_FRAME ||
	    n->inj_count == VIRTIO_NET_INJECT_MAX_FRAMES ||
	    n->inj_bytes + len > VIRTIO_NET_INJECT_MAX_BYTES)
		return -1;
	uint8_t *copy = malloc(len);
	if (!copy)
		return -1;
	memcpy(copy, frame, len);
	unsigned slot = (n->inj_first + n->inj_count) % VIRTIO_NET_INJECT_MAX_FRAMES;
	n->inj[slot] = (struct net_injected){.data = copy, .len = len};
	n->inj_count++;
	n->inj_bytes += len;
	/* From the TX hook, RX runs once the tx queue is done; a blocked rx
	 * limiter's timer picks the frame up later. */
	if (n->in_tx)
		n->rx_kick = true;
	else if (!rate_limiter_is_blocked(&n->rx_rl))
		net_rx_run(n);
	return 0;
}

unsigned virtio_net_injected_pending(const struct virtio_net *n)
{
	return n->inj_count;
}

/* ---- Snapshots ---- */

json_t *net_rx_save(struct virtio_net *n)
{
	/* The held receive chains go back on the available ring, as
	 * Firecracker's prepare_save does: they are the last ones popped
	 * (only a bad chain of a misbehaving driver, put on the used ring
	 * meanwhile, could sit between them), so the saved queue and the
	 * memory file agree that the driver still offers them. Kept, they
	 * would be lost to the restored guest, one or more on every
	 * snapshot. A source that resumes pops them again. */
	if (n->held_count) {
		rx_queue(n)->last_avail = (uint16_t)(rx_queue(n)->last_avail - n->held_count);
		unhold(n, n->held_count);
	}
	/* The frames read from the TAP or made by MMDS and not yet in the
	 * guest's buffers go into the state: the restored device delivers
	 * them first (the source keeps them too). */
	json_t *inj = json_array();
	for (unsigned i = 0; inj && i < n->inj_count; i++) {
		const struct net_injected *f = &n->inj[(n->inj_first + i) % VIRTIO_NET_INJECT_MAX_FRAMES];
		json_t *b = blob_json(f->data, f->len);
		if (!b || json_array_append_new(inj, json_pack("{s:o}", "frame", b))) {
			json_decref(inj);
			inj = NULL;
		}
	}
	json_t *pending = n->rx_pending ? blob_json(n->rx_buf, n->rx_len) : json_null();
	if (!inj || !pending) {
		json_decref(inj);
		json_decref(pending);
		return NULL;
	}
	return json_pack("{s:o, s:o}", "rx_frame", pending, "injected", inj);
}

int net_rx_restore(struct virtio_net *n, json_t *st, ember_err *e)
{
	json_t *pending = json_object_get(st, "rx_frame"), *inj = json_object_get(st, "injected");
	/* A state from before frames were saved has neither. */
	if (!pending && !inj)
		return 0;
	if (!pending || !json_is_array(inj))
		return err_set(e, "net: rx_frame and injected expected together");
	size_t count = json_array_size(inj);
	if ((count || !json_is_null(pending)) && !n->active)
		return err_set(e, "net: frames in flight on a device the driver never activated");
	if (count > VIRTIO_NET_INJECT_MAX_FRAMES)
		return err_set(e, "net: %zu injected frames, at most %d", count,
			       VIRTIO_NET_INJECT_MAX_FRAMES);
	if (!json_is_null(pending)) {
		size_t len;
		if (blob_get_var(st, "rx_frame", n->rx_buf, sizeof(n->rx_buf), &len, e))
			return err_prefix(e, "net");
		if (len < VIRTIO_NET_HDR_SIZE)
			return err_set(e, "net: rx_frame: %zu bytes, shorter than its header", len);
		n->rx_pending = true;
		n->rx_len = len;
	}
	for (size_t i = 0; i < count; i++) {
		size_t len;
		int rc = -1;
		uint8_t *buf = malloc(VIRTIO_NET_MAX_FRAME);
		if (!buf)
			return err_set(e, "net: out of memory");
		if (blob_get_var(json_array_get(inj, i), "frame", buf, VIRTIO_NET_MAX_FRAME, &len, e))
			err_prefix(e, "net: injected frame %zu", i);
		else if (!len || n->inj_bytes + len > VIRTIO_NET_INJECT_MAX_BYTES)
			err_set(e, "net: injected frame %zu: %zu bytes, empty or past the queue's %d",
				i, len, VIRTIO_NET_INJECT_MAX_BYTES);
		else
			rc = 0;
		if (rc) {
			free(buf);
			return -1;
		}
		uint8_t *fit = realloc(buf, len);
		buf = fit ? fit : buf;
		n->inj[(n->inj_first + n->inj_count) % VIRTIO_NET_INJECT_MAX_FRAMES] =
			(struct net_injected){.data = buf, .len = len};
		n->inj_count++;
		n->inj_bytes += len;
	}
	/* Into the driver's buffers now (the interrupt waits for the
	 * irqchip's restore); what does not fit waits for more. */
	net_rx_run(n);
	return 0;
}
