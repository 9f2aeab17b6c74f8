/* The vsock device's Unix-socket backend (Firecracker's muxer): the
 * listening socket at uds_path, host clients sending their CONNECT line,
 * and the connections, each a (host port, guest port) pair with its Unix
 * stream. Every fd is non-blocking and in the backend's own epoll set, so
 * nothing here waits; the VMM thread runs it all. */
#include "devices/vsock_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"

#define MS (1000000ull)
#define MAX_IOV 64

static unsigned hash_of(uint32_t local, uint32_t peer)
{
	return (local * 2654435761u ^ peer) % VSOCK_HASH_SIZE;
}

static struct vsock_conn *conn_find(struct virtio_vsock *v, uint32_t local, uint32_t peer)
{
	for (struct vsock_conn *c = v->hash[hash_of(local, peer)]; c; c = c->hash_next)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static void conn_hash(struct virtio_vsock *v, struct vsock_conn *c)
{
	unsigned h = hash_of(c->local_port, c->peer_port);
	c->hash_next = v->hash[h];
	v->hash[h] = c;
	c->hashed = true;
}

static void conn_unhash(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (!c->hashed)
		return;
	for (struct vsock_conn **p = &v->hash[hash_of(c->local_port, c->peer_port)]; *p;
	     p = &(*p)->hash_next)
		if (*p == c) {
			*p = c->hash_next;
			break;
		}
	c->hashed = false;
}

static uint32_t peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;
	/* A guest claiming to have forwarded more than it was sent, or a
	 * smaller buffer than what is in flight, has no credit. */
	return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static uint32_t ring_size(const struct vsock_conn *c)
{
	return c->buf_alloc + VSOCK_CONNECT_LINE_MAX;
}

/* The credit the guest gets on a new connection (see VSOCK_CONN_TX_BUF_BIG). */
static void conn_set_credit(struct virtio_vsock *v, struct vsock_conn *c)
{
	c->big = v->nr_big < VSOCK_BIG_BUF_CONNS;
	v->nr_big += c->big;
	c->buf_alloc = c->big ? VSOCK_CONN_TX_BUF_BIG : VSOCK_CONN_TX_BUF_SIZE;
}

static bool conn_can_read(const struct vsock_conn *c)
{
	return c->state == CONN_ESTABLISHED && !c->local_eof && !c->peer_shut_rcv;
}

static bool conn_wants_rx(const struct vsock_conn *c)
{
	if (c->state == CONN_DEAD || c->state == CONN_AWAIT_CONNECT)
		return false;
	return c->pending || (conn_can_read(c) && c->readable && peer_credit(c) > 0);
}

static void set_events(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->fd < 0 || c->hup)
		return;
	uint32_t want = 0;
	if (c->state == CONN_AWAIT_CONNECT)
		want = EPOLLIN;
	else if (c->state == CONN_ESTABLISHED) {
		if (conn_can_read(c) && !c->readable)
			want |= EPOLLIN | EPOLLRDHUP;
		if (c->tx_len)
			want |= EPOLLOUT;
	}
	if (want == c->events)
		return;
	struct epoll_event ev = {.events = want, .data.ptr = c};
	if (epoll_ctl(v->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
	else
		metric_inc(&v->m->conn_event_fails);
}

/* After any change: its epoll interest, and its place in the ready list. */
static void conn_update(struct virtio_vsock *v, struct vsock_conn *c)
{
	set_events(v, c);
	bool want = conn_wants_rx(c);
	if (want && !c->in_ready)
		dlist_add_tail(&v->ready, &c->ready);
	else if (!want && c->in_ready)
		dlist_del(&c->ready);
	c->in_ready = want;
}

static void arm_timer(struct virtio_vsock *v, uint64_t at)
{
	if (v->timer_at_ns && v->timer_at_ns <= at)
		return;
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)(at / 1000000000u),
					      .tv_nsec = (long)(at % 1000000000u)}};
	if (timerfd_settime(v->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		v->timer_at_ns = at;
	else
		metric_inc(&v->m->muxer_event_fails);
}

static void set_deadline(struct virtio_vsock *v, struct vsock_conn *c, uint64_t ms)
{
	c->deadline_ns = vsock_now_ns() + ms * MS;
	arm_timer(v, c->deadline_ns);
}

/* close() alone takes the fd out of the epoll set (it has no other
 * copy): this also runs on a vCPU thread (a device reset), whose seccomp
 * policy has no epoll_ctl. */
static void close_fd(struct virtio_vsock *v, struct vsock_conn *c)
{
	(void)v;
	if (c->fd < 0)
		return;
	close(c->fd);
	c->fd = -1;
	free(c->txbuf);
	c->txbuf = NULL;
	c->tx_len = c->ctl_len = 0;
}

static struct vsock_conn *conn_new(struct virtio_vsock *v, int fd, enum vsock_conn_state st,
				   uint32_t events)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->state = st;
	c->events = events;
	dlist_init(&c->all);
	dlist_init(&c->ready);
	struct epoll_event ev = {.events = events, .data.ptr = c};
	if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		metric_inc(&v->m->conn_event_fails);
		free(c);
		return NULL;
	}
	return c;
}

/* Gone for good: freed by vsock_muxer_reap (an epoll batch may still name
 * it). */
static void conn_remove(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state == CONN_DEAD)
		return;
	if (c->state == CONN_AWAIT_CONNECT)
		v->nr_connecting--;
	else {
		v->nr_conns--;
		metric_inc(&v->m->conns_removed);
	}
	conn_unhash(v, c);
	if (c->big)
		v->nr_big--;
	c->big = false;
	if (c->in_ready)
		dlist_del(&c->ready);
	c->in_ready = false;
	close_fd(v, c);
	c->state = CONN_DEAD;
	dlist_del(&c->all);
	dlist_add_tail(&v->dead, &c->all);
}

/* The socket is closed and the guest gets an RST. */
static void conn_reset(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state == CONN_DEAD || c->state == CONN_KILLED)
		return;
	if (c->state == CONN_AWAIT_CONNECT) {
		conn_remove(v, c);
		return;
	}
	close_fd(v, c);
	c->state = CONN_KILLED;
	c->pending = PEND_RST;
	c->deadline_ns = 0;
	conn_update(v, c);
}

static void conn_kill(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state != CONN_DEAD && c->state != CONN_KILLED)
		metric_inc(&v->m->conns_killed);
	conn_reset(v, c);
}

static void ctlq_push(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	if (v->ctlq_len == VSOCK_CTLQ_SIZE) {
		metric_inc(&v->m->muxer_event_fails);
		return;
	}
	v->ctlq[(v->ctlq_head + v->ctlq_len++) % VSOCK_CTLQ_SIZE] = *h;
}

/* An RST answering guest packet h. */
static void reset_reply(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	struct vsock_hdr r = {
		.src_cid = VSOCK_HOST_CID, .dst_cid = v->cfg.guest_cid,
		.src_port = h->dst_port, .dst_port = h->src_port,
		.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
		.buf_alloc = VSOCK_CONN_TX_BUF_SIZE,
	};
	ctlq_push(v, &r);
}

/* Every packet to the guest carries fwd_cnt; a credit update of its own
 * goes only once the guest's view of our free space fell to half the
 * credit (half of it forwarded since the guest last heard): the guest
 * still has the other half to send while the update travels, and a
 * stream costs two updates per credit's worth, not one per packet. */
static void maybe_credit_update(struct vsock_conn *c)
{
	if (c->fwd_cnt - c->last_fwd_cnt_sent >= c->buf_alloc / 2)
		c->pending |= PEND_CREDIT_UPDATE;
}

/* Both ends are done, but the RST waits (for the host to take what the
 * guest sent, or for the guest's answer to our shutdown): as Firecracker,
 * the connection gets VSOCK_CONN_SHUTDOWN_TIMEOUT_MS, then a reset. */
static void shutdown_deadline(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (!c->deadline_ns)
		set_deadline(v, c, VSOCK_CONN_SHUTDOWN_TIMEOUT_MS);
}

/* The guest is done sending and everything it sent reached the socket. */
static void after_drain(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (!c->peer_shut_send)
		return;
	if (c->tx_len) {
		if (c->peer_shut_rcv || c->local_eof)
			shutdown_deadline(v, c);
		return;
	}
	if (c->peer_shut_rcv || c->local_eof) { /* both ends done: the RST ends it */
		conn_reset(v, c);
		return;
	}
	if (!c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
}

/* Writes the tx ring to the socket. */
static void conn_flush(struct virtio_vsock *v, struct vsock_conn *c)
{
	while (c->tx_len) {
		uint32_t first = ring_size(c) - c->tx_head;
		if (first > c->tx_len)
			first = c->tx_len;
		struct iovec iov[2] = {{c->txbuf + c->tx_head, first},
				       {c->txbuf, c->tx_len - first}};
		ssize_t w = writev(c->fd, iov, c->tx_len > first ? 2 : 1);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			metric_inc(&v->m->tx_flush_fails);
			conn_kill(v, c);
			return;
		}
		uint32_t ours = (uint32_t)w < c->ctl_len ? (uint32_t)w : c->ctl_len;
		c->tx_head = (c->tx_head + (uint32_t)w) % ring_size(c);
		c->tx_len -= (uint32_t)w;
		c->ctl_len -= ours;
		c->fwd_cnt += (uint32_t)w - ours;
	}
	if (!c->tx_len) {
		free(c->txbuf);
		c->txbuf = NULL;
		c->tx_head = 0;
	}
	maybe_credit_update(c);
	after_drain(v, c);
}

/* Appends len bytes (from the chain at off, or from src) to the tx ring. */
static int tx_append(struct virtio_vsock *v, struct vsock_conn *c, const struct virtq_chain *ch,
		     uint64_t off, const void *src, uint32_t len)
{
	if (!len)
		return 0;
	uint32_t size = ring_size(c);
	if (c->tx_len - c->ctl_len + len > (src ? size : c->buf_alloc))
		return -1;
	if (!c->txbuf && !(c->txbuf = malloc(size)))
		return -1;
	for (uint32_t done = 0; done < len;) {
		uint32_t tail = (c->tx_head + c->tx_len) % size;
		uint32_t n = size - tail;
		if (n > len - done)
			n = len - done;
		if (src)
			memcpy(c->txbuf + tail, (const uint8_t *)src + done, n);
		else if (virtq_chain_read(v->gm, ch, off + done, c->txbuf + tail, n))
			return -1;
		c->tx_len += n;
		done += n;
	}
	return 0;
}

/* A data packet's payload to the socket: straight from guest memory if
 * nothing is queued before it, the rest into the tx ring. */
static void conn_write(struct virtio_vsock *v, struct vsock_conn *c, const struct virtq_chain *ch,
		       uint32_t len)
{
	uint32_t done = 0;
	metric_add(&v->m->tx_bytes_count, len);
	if (!c->tx_len && len) {
		struct iovec iov[MAX_IOV];
		int n = virtq_chain_iov(v->gm, ch, false, VSOCK_HDR_SIZE, len, iov, MAX_IOV);
		ssize_t w;
		if (n < 0) {
			if (virtq_chain_read(v->gm, ch, VSOCK_HDR_SIZE, v->bounce, len))
				return; /* cannot happen: the length was checked */
			w = write(c->fd, v->bounce, len);
		} else {
			w = writev(c->fd, iov, n);
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			metric_inc(&v->m->tx_write_fails);
			conn_kill(v, c);
			return;
		}
		done = w > 0 ? (uint32_t)w : 0;
		c->fwd_cnt += done;
	}
	if (tx_append(v, c, ch, VSOCK_HDR_SIZE + done, NULL, len - done)) {
		LOG_W("vsock: connection %u:%u: the guest sent past its credit (%u bytes "
		      "queued, %u more); reset",
		      c->local_port, c->peer_port, c->tx_len, len - done);
		metric_inc(&v->m->conn_event_fails);
		conn_kill(v, c);
		return;
	}
	maybe_credit_update(c);
}

/* A guest REQUEST for host port h->dst_port: "<uds_path>_<port>". */
static void peer_connect(struct virtio_vsock *v, const struct vsock_hdr *h)
{
	if (v->nr_conns >= VSOCK_MAX_CONNECTIONS) {
		LOG_W("vsock: connection limit (%d) reached; guest connection to port %u refused",
		      VSOCK_MAX_CONNECTIONS, h->dst_port);
		reset_reply(v, h);
		return;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->cfg.uds_path, h->dst_port);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* A Unix stream connects at once or fails (EAGAIN: a full backlog). */
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		LOG_D("vsock: guest connection to %s refused: %s", sa.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		reset_reply(v, h);
		return;
	}
	struct vsock_conn *c = conn_new(v, fd, CONN_ESTABLISHED, 0);
	if (!c) {
		close(fd);
		reset_reply(v, h);
		return;
	}
	c->local_port = h->dst_port;
	c->peer_port = h->src_port;
	conn_set_credit(v, c);
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->pending = PEND_RESPONSE;
	dlist_add_tail(&v->conns, &c->all);
	v->nr_conns++;
	conn_hash(v, c);
	metric_inc(&v->m->conns_added);
	conn_update(v, c);
}

static void conn_packet(struct virtio_vsock *v, struct vsock_conn *c, const struct vsock_hdr *h,
			const struct virtq_chain *ch)
{
	if (h->op == VSOCK_OP_RST) {
		conn_remove(v, c);
		return;
	}
	if (c->state == CONN_KILLED)
		return; /* our RST is on its way */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state != CONN_REQUEST_SENT || (c->pending & PEND_REQUEST)) {
			conn_kill(v, c);
			return;
		}
		c->state = CONN_ESTABLISHED;
		c->deadline_ns = 0;
		char ok[24];
		int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
		if (tx_append(v, c, NULL, 0, ok, (uint32_t)n) == 0)
			c->ctl_len = (uint32_t)n;
		conn_flush(v, c);
		break;
	case VSOCK_OP_RW:
		if (c->state != CONN_ESTABLISHED) {
			conn_kill(v, c);
			return;
		}
		conn_write(v, c, ch, h->len);
		break;
	case VSOCK_OP_SHUTDOWN:
		c->peer_shut_rcv |= h->flags & VSOCK_FLAGS_SHUTDOWN_RCV;
		c->peer_shut_send |= !!(h->flags & VSOCK_FLAGS_SHUTDOWN_SEND);
		after_drain(v, c);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		c->pending |= PEND_CREDIT_UPDATE;
		break;
	default: /* REQUEST on an open connection, or no such op */
		conn_kill(v, c);
		return;
	}
	if (c->state != CONN_DEAD)
		conn_update(v, c);
}

void vsock_muxer_send_pkt(struct virtio_vsock *v, const struct vsock_hdr *h,
			  const struct virtq_chain *ch)
{
	if (h->src_cid != v->cfg.guest_cid || h->dst_cid != VSOCK_HOST_CID) {
		LOG_D("vsock: dropping a guest packet from CID %llu to CID %llu",
		      (unsigned long long)h->src_cid, (unsigned long long)h->dst_cid);
		metric_inc(&v->m->muxer_event_fails);
		return;
	}
	if (h->type != VSOCK_TYPE_STREAM) {
		metric_inc(&v->m->muxer_event_fails);
		if (h->op != VSOCK_OP_RST)
			reset_reply(v, h);
		return;
	}
	struct vsock_conn *c = conn_find(v, h->dst_port, h->src_port);
	if (c) {
		conn_packet(v, c, h, ch);
		return;
	}
	if (h->op == VSOCK_OP_REQUEST)
		peer_connect(v, h);
	else if (h->op != VSOCK_OP_RST)
		reset_reply(v, h);
}

bool vsock_muxer_has_rx(const struct virtio_vsock *v)
{
	return v->ctlq_len || !dlist_empty(&v->ready);
}

/* Reads host bytes into the chain after the header; -1 with errno. */
static ssize_t read_into_chain(struct virtio_vsock *v, struct vsock_conn *c,
			       const struct virtq_chain *ch, uint32_t max)
{
	struct iovec iov[MAX_IOV];
	int n = virtq_chain_iov(v->gm, ch, true, VSOCK_HDR_SIZE, max, iov, MAX_IOV);
	if (n >= 0)
		return readv(c->fd, iov, n);
	ssize_t r = read(c->fd, v->bounce, max);
	if (r > 0 && virtq_chain_write(v->gm, ch, VSOCK_HDR_SIZE, v->bounce, (uint64_t)r))
		return -1;
	return r;
}

int vsock_muxer_recv_pkt(struct virtio_vsock *v, struct vsock_hdr *h, const struct virtq_chain *ch,
			 uint32_t room)
{
	*h = (struct vsock_hdr){.src_cid = VSOCK_HOST_CID, .dst_cid = v->cfg.guest_cid,
				.type = VSOCK_TYPE_STREAM};
	if (v->ctlq_len) {
		*h = v->ctlq[v->ctlq_head];
		v->ctlq_head = (v->ctlq_head + 1) % VSOCK_CTLQ_SIZE;
		v->ctlq_len--;
		return 1;
	}
	while (!dlist_empty(&v->ready)) {
		struct vsock_conn *c = conn_of(v->ready.next, ready);
		dlist_del(&c->ready);
		c->in_ready = false;
		h->src_port = c->local_port;
		h->dst_port = c->peer_port;
		h->fwd_cnt = c->fwd_cnt;
		h->buf_alloc = c->buf_alloc;
		if (c->pending & PEND_RST) {
			h->op = VSOCK_OP_RST;
			conn_remove(v, c);
			return 1;
		}
		if (c->pending & PEND_REQUEST) {
			h->op = VSOCK_OP_REQUEST;
			c->pending &= ~PEND_REQUEST;
		} else if (c->pending & PEND_RESPONSE) {
			h->op = VSOCK_OP_RESPONSE;
			c->pending &= ~PEND_RESPONSE;
		} else if (c->pending & PEND_SHUTDOWN) {
			h->op = VSOCK_OP_SHUTDOWN;
			h->flags = VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND;
			c->pending &= ~PEND_SHUTDOWN;
		} else if (conn_can_read(c) && c->readable && peer_credit(c)) {
			uint32_t max = peer_credit(c) < room ? peer_credit(c) : room;
			ssize_t r = read_into_chain(v, c, ch, max);
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
				c->readable = false;
				conn_update(v, c);
				continue;
			}
			if (r < 0) {
				metric_inc(&v->m->rx_read_fails);
				metric_inc(&v->m->conns_killed);
				h->op = VSOCK_OP_RST;
				conn_remove(v, c);
				return 1;
			}
			if (r == 0) { /* the host will send no more */
				c->local_eof = true;
				c->readable = false;
				h->op = VSOCK_OP_SHUTDOWN;
				/* Closed, not just shut down for writing (EPOLLHUP):
				 * it will not read either, and the guest, told both,
				 * answers with its RST at once instead of waiting
				 * for its program to shut down its side. */
				h->flags = VSOCK_FLAGS_SHUTDOWN_SEND;
				if (c->hup) {
					h->flags |= VSOCK_FLAGS_SHUTDOWN_RCV;
					c->pending &= ~PEND_SHUTDOWN;
					shutdown_deadline(v, c);
				}
				after_drain(v, c); /* the guest may be done too */
			} else {
				h->op = VSOCK_OP_RW;
				h->len = (uint32_t)r;
				c->rx_cnt += (uint32_t)r;
			}
		} else if (c->pending & PEND_CREDIT_UPDATE) {
			h->op = VSOCK_OP_CREDIT_UPDATE;
		} else {
			conn_update(v, c);
			continue;
		}
		c->pending &= ~PEND_CREDIT_UPDATE; /* every packet carries fwd_cnt */
		c->last_fwd_cnt_sent = c->fwd_cnt;
		conn_update(v, c);
		return 1;
	}
	return 0;
}

/* ---- Host clients ---- */

static void read_connect_line(struct virtio_vsock *v, struct vsock_conn *c);

static void accept_clients(struct virtio_vsock *v)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				metric_inc(&v->m->muxer_event_fails);
			return;
		}
		if (v->nr_conns + v->nr_connecting >= VSOCK_MAX_CONNECTIONS) {
			LOG_W("vsock: connection limit (%d) reached; host connection refused",
			      VSOCK_MAX_CONNECTIONS);
			close(fd);
			continue;
		}
		struct vsock_conn *c = conn_new(v, fd, CONN_AWAIT_CONNECT, EPOLLIN);
		if (!c) {
			close(fd);
			continue;
		}
		dlist_add_tail(&v->connecting, &c->all);
		v->nr_connecting++;
		set_deadline(v, c, VSOCK_CONNECT_LINE_TIMEOUT_MS);
		/* A client writes its line right after connecting: it is often
		 * there already, and its REQUEST then goes to the guest in this
		 * pass, not after another turn of the event loop. */
		read_connect_line(v, c);
	}
}

static uint32_t alloc_local_port(struct virtio_vsock *v)
{
	for (;;) {
		uint32_t p = v->next_local_port++;
		if (v->next_local_port < (1u << 30))
			v->next_local_port = 1u << 30;
		bool used = false;
		for (struct vsock_dlink *l = v->conns.next; l != &v->conns && !used; l = l->next)
			used = conn_of(l, all)->local_port == p;
		if (!used)
			return p;
	}
}

/* "CONNECT <port>" (any case, as Firecracker), or -1. */
static int64_t parse_connect(const char *line)
{
	char word[16];
	unsigned long long port;
	int end = 0;
	if (sscanf(line, " %15s %llu %n", word, &port, &end) != 2 || line[end] ||
	    strcasecmp(word, "connect") || port > UINT32_MAX)
		return -1;
	/* sscanf's %llu takes a sign; a port is digits only. */
	const char *d = line + strspn(line, " \t");
	d += strlen(word);
	d += strspn(d, " \t");
	return *d >= '0' && *d <= '9' ? (int64_t)port : -1;
}

/* The line is read up to its '\n' and no further (the stream follows it):
 * what is there is looked at with MSG_PEEK, then the line's bytes alone
 * are taken, two calls instead of one read per byte. At most
 * VSOCK_CONNECT_LINE_MAX - 2 bytes before the '\n'. */
static void read_connect_line(struct virtio_vsock *v, struct vsock_conn *c)
{
	for (;;) {
		char buf[VSOCK_CONNECT_LINE_MAX];
		size_t want = VSOCK_CONNECT_LINE_MAX - 1 - c->line_len;
		ssize_t r = recv(c->fd, buf, want, MSG_PEEK);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		const char *nl = r > 0 ? memchr(buf, '\n', (size_t)r) : NULL;
		size_t take = nl ? (size_t)(nl - buf) + 1 : (size_t)(r > 0 ? r : 0);
		if (r <= 0 || (!nl && take == want) || read(c->fd, buf, take) != (ssize_t)take) {
			LOG_D("vsock: host client closed or sent no CONNECT line");
			conn_remove(v, c);
			return;
		}
		memcpy(c->line + c->line_len, buf, nl ? take - 1 : take);
		c->line_len = (uint8_t)(c->line_len + (nl ? take - 1 : take));
		if (!nl)
			continue;
		c->line[c->line_len] = 0;
		int64_t port = parse_connect(c->line);
		if (port < 0 || v->nr_conns >= VSOCK_MAX_CONNECTIONS) {
			LOG_I("vsock: host client %s", port < 0 ? "sent a bad CONNECT line"
							      : "refused: connection limit reached");
			conn_remove(v, c);
			return;
		}
		v->nr_connecting--;
		dlist_del(&c->all);
		dlist_add_tail(&v->conns, &c->all);
		v->nr_conns++;
		c->state = CONN_REQUEST_SENT;
		c->peer_port = (uint32_t)port;
		c->local_port = alloc_local_port(v);
		conn_set_credit(v, c);
		c->pending = PEND_REQUEST;
		conn_hash(v, c);
		metric_inc(&v->m->conns_added);
		set_deadline(v, c, VSOCK_CONN_REQUEST_TIMEOUT_MS);
		conn_update(v, c);
		return;
	}
}

/* ---- Events ---- */

static void conn_event(struct virtio_vsock *v, struct vsock_conn *c, uint32_t ev)
{
	bool hup = ev & (EPOLLHUP | EPOLLERR);
	switch (c->state) {
	case CONN_AWAIT_CONNECT:
		read_connect_line(v, c);
		return;
	case CONN_REQUEST_SENT:
		if (hup) /* the host client gave up */
			conn_kill(v, c);
		return;
	case CONN_ESTABLISHED:
		break;
	default:
		return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true; /* the read finds the data, the end or the error */
	if (hup) {
		/* Level-triggered and never cleared: stop watching. What is
		 * left to read is read; a write fails. */
		epoll_ctl(v->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		c->events = 0;
		c->hup = true;
	}
	if ((ev & EPOLLOUT) || (hup && c->tx_len))
		conn_flush(v, c);
	/* Closed after a shutdown for writing whose end of file the guest
	 * already had: it learns that the host will not read either. */
	if (hup && c->local_eof && c->state == CONN_ESTABLISHED) {
		c->pending |= PEND_SHUTDOWN;
		shutdown_deadline(v, c);
	}
	if (c->state == CONN_DEAD || c->state == CONN_KILLED)
		return;
	conn_update(v, c);
}

void vsock_muxer_epoll_event(struct virtio_vsock *v)
{
	struct epoll_event evs[64];
	int n = epoll_wait(v->epfd, evs, 64, 0);
	for (int i = 0; i < n; i++) {
		struct vsock_conn *c = evs[i].data.ptr;
		if (!c)
			accept_clients(v);
		else if (c->state != CONN_DEAD)
			conn_event(v, c, evs[i].events);
	}
}

static void expire(struct virtio_vsock *v, struct vsock_conn *c)
{
	c->deadline_ns = 0;
	switch (c->state) {
	case CONN_AWAIT_CONNECT:
		LOG_I("vsock: host client sent no CONNECT line in %d ms; closed",
		      VSOCK_CONNECT_LINE_TIMEOUT_MS);
		conn_remove(v, c);
		break;
	case CONN_REQUEST_SENT:
		LOG_I("vsock: guest port %u did not answer in %d ms; host connection closed",
		      c->peer_port, VSOCK_CONN_REQUEST_TIMEOUT_MS);
		conn_kill(v, c);
		break;
	case CONN_ESTABLISHED: /* shut down (shutdown_deadline) and not closed */
		LOG_I("vsock: connection %u:%u still open %d ms after both ends shut it down; "
		      "reset",
		      c->local_port, c->peer_port, VSOCK_CONN_SHUTDOWN_TIMEOUT_MS);
		conn_kill(v, c);
		break;
	default:
		break;
	}
}

static void scan_deadlines(struct virtio_vsock *v, struct vsock_dlink *list, uint64_t now,
			   uint64_t *next)
{
	for (struct vsock_dlink *l = list->next, *nx; l != list; l = nx) {
		nx = l->next; /* expire may move it to v->dead */
		struct vsock_conn *c = conn_of(l, all);
		if (!c->deadline_ns)
			continue;
		if (c->deadline_ns <= now)
			expire(v, c);
		else if (!*next || c->deadline_ns < *next)
			*next = c->deadline_ns;
	}
}

void vsock_muxer_timer_event(struct virtio_vsock *v)
{
	uint64_t n;
	if (read(v->timer_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		metric_inc(&v->m->muxer_event_fails);
	v->timer_at_ns = 0;
	uint64_t now = vsock_now_ns(), next = 0;
	scan_deadlines(v, &v->connecting, now, &next);
	scan_deadlines(v, &v->conns, now, &next);
	if (next)
		arm_timer(v, next);
}

void vsock_muxer_reap(struct virtio_vsock *v)
{
	while (!dlist_empty(&v->dead)) {
		struct vsock_conn *c = conn_of(v->dead.next, all);
		dlist_del(&c->all);
		free(c);
	}
}

/* ---- Life cycle ---- */

void vsock_muxer_reset(struct virtio_vsock *v)
{
	while (!dlist_empty(&v->conns))
		conn_remove(v, conn_of(v->conns.next, all));
	v->ctlq_len = 0;
	vsock_muxer_reap(v);
}

/* A non-blocking listener bound to path; -1 and e set (Firecracker's
 * words) if not. */
static int listen_at(const char *path, ember_err *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return err_set(e, "Cannot create backend for vsock device: Error binding to the "
				  "host-side Unix socket: %s (os error %d)", strerror(err), err);
	}
	return fd;
}

int vsock_config_bind(struct vsock_config *c, struct vsock_config *old, ember_err *e)
{
	bool rebind = old && old->bound;
	if (rebind) {
		vsock_config_release(old);
		unlink(old->uds_path);
	}
	int fd = listen_at(c->uds_path, e);
	if (fd < 0) {
		ember_err ignored;
		if (rebind && (old->listen_fd = listen_at(old->uds_path, &ignored)) >= 0)
			old->bound = true;
		return err_prefix(e, "Vsock config error");
	}
	c->listen_fd = fd;
	c->bound = true;
	return 0;
}

void vsock_config_release(struct vsock_config *c)
{
	if (c->bound)
		close(c->listen_fd);
	c->bound = false;
	c->listen_fd = -1;
}

int vsock_muxer_open(struct virtio_vsock *v, ember_err *e)
{
	dlist_init(&v->conns);
	dlist_init(&v->connecting);
	dlist_init(&v->ready);
	dlist_init(&v->dead);
	v->next_local_port = 1u << 30;
	if (v->cfg.bound) { /* PUT /vsock bound it: the config keeps its own fd */
		v->listen_fd = fcntl(v->cfg.listen_fd, F_DUPFD_CLOEXEC, 0);
		v->cfg.bound = false;
		v->cfg.listen_fd = -1;
		if (v->listen_fd < 0)
			return err_set(e, "cannot take the host socket: %s", strerror(errno));
	} else if ((v->listen_fd = listen_at(v->cfg.uds_path, e)) < 0) {
		return -1;
	}
	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (v->epfd < 0 || v->timer_fd < 0 ||
	    epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->listen_fd, &ev))
		return err_set(e, "cannot watch the host socket: %s", strerror(errno));
	return 0;
}

void vsock_muxer_close(struct virtio_vsock *v)
{
	if (v->conns.next) {
		while (!dlist_empty(&v->conns))
			conn_remove(v, conn_of(v->conns.next, all));
		while (!dlist_empty(&v->connecting))
			conn_remove(v, conn_of(v->connecting.next, all));
		vsock_muxer_reap(v);
	}
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	if (v->epfd >= 0)
		close(v->epfd);
	if (v->timer_fd >= 0)
		close(v->timer_fd);
}
