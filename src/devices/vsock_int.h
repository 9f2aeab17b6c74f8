/* The vsock device's insides, shared by its two files: virtio_vsock.c (the
 * virtio side: queues, packets, config) and vsock_muxer.c (the connections
 * and their Unix sockets). Not for other modules. */
#ifndef EMBER_VSOCK_INT_H
#define EMBER_VSOCK_INT_H

#include "devices/virtio_vsock.h"

enum vsock_conn_state {
	CONN_AWAIT_CONNECT, /* host client: its "CONNECT <port>\n" line is due */
	CONN_REQUEST_SENT,  /* host-initiated: REQUEST queued or sent to the guest */
	CONN_ESTABLISHED,
	CONN_KILLED,	    /* socket closed; an RST is due to the guest */
	CONN_DEAD,	    /* gone; freed at the end of the current event */
};

/* Control packets a connection owes the guest. */
#define PEND_REQUEST 1u
#define PEND_RESPONSE 2u
#define PEND_CREDIT_UPDATE 4u
#define PEND_SHUTDOWN 8u
#define PEND_RST 16u

struct vsock_dlink {
	struct vsock_dlink *prev, *next;
};

struct vsock_conn {
	struct vsock_dlink all;	  /* v->conns (or v->connecting) */
	struct vsock_dlink ready; /* v->ready: has something for the guest */
	struct vsock_conn *hash_next;
	bool in_ready, hashed;
	enum vsock_conn_state state;
	int fd;
	uint32_t events; /* as registered with the backend's epoll */
	uint32_t local_port, peer_port; /* host side, guest side */
	unsigned pending; /* PEND_* */
	bool readable;	  /* EPOLLIN seen and not yet drained */
	bool local_eof, peer_shut_rcv, peer_shut_send, wr_shut;
	bool hup; /* EPOLLHUP/ERR seen: no longer in the epoll set */
	uint64_t deadline_ns; /* 0: none */
	/* Guest to host: bytes the socket did not take yet (a ring of
	 * buf_alloc + VSOCK_CONNECT_LINE_MAX bytes, allocated while in use);
	 * the first ctl_len of them are Ember's own ("OK <port>\n"), not the
	 * guest's, and do not count in fwd_cnt. */
	uint8_t *txbuf;
	uint32_t tx_head, tx_len, ctl_len;
	uint32_t buf_alloc; /* the credit Ember gives the guest: set once */
	bool big;	    /* buf_alloc is VSOCK_CONN_TX_BUF_BIG */
	uint32_t fwd_cnt, last_fwd_cnt_sent;
	/* Host to guest. */
	uint32_t rx_cnt, peer_buf_alloc, peer_fwd_cnt;
	/* The CONNECT line so far. */
	char line[VSOCK_CONNECT_LINE_MAX];
	uint8_t line_len;
};

#define VSOCK_HASH_SIZE 256

struct virtio_vsock {
	struct virtio_mmio mmio;
	const struct guest_mem *gm;
	struct vsock_config cfg;
	struct vsock_metrics *m;
	struct vsock_metrics own_metrics;
	uint64_t complaints[4];
	bool active;
	/* A transport reset sent after a restore and not yet acknowledged
	 * (the driver refills its event buffer once it has dropped its
	 * connections): nothing goes to the rx queue meanwhile, or a new
	 * connection could reach the driver before the reset and die with
	 * the old ones (Firecracker's pending_event_ack). */
	bool reset_pending;
	uint16_t reset_avail_idx; /* the event queue's avail->idx when it was sent */
	/* The backend. */
	int listen_fd, epfd, timer_fd;
	uint64_t timer_at_ns; /* 0: disarmed */
	struct vsock_dlink conns, connecting, ready, dead;
	size_t nr_conns, nr_connecting;
	size_t nr_big; /* connections with VSOCK_CONN_TX_BUF_BIG */
	struct vsock_conn *hash[VSOCK_HASH_SIZE];
	uint32_t next_local_port;
	/* RSTs for packets of no connection, to the guest. */
	struct vsock_hdr ctlq[VSOCK_CTLQ_SIZE];
	unsigned ctlq_head, ctlq_len;
	/* The rx chain popped and not yet used (nothing to put in it after
	 * all); tx and rx have their own chains. */
	bool rx_held;
	/* Queues (bit per index) with used buffers the driver was not told of
	 * yet: one interrupt for them all at the end of each event. */
	uint32_t pushed;
	struct virtq_seg rx_segs[VSOCK_QUEUE_SIZE], tx_segs[VSOCK_QUEUE_SIZE];
	struct virtq_chain rx_chain, tx_chain;
	uint8_t bounce[VSOCK_MAX_PKT_BUF_SIZE];
};

/* An intrusive doubly-linked list. */
static inline void dlist_init(struct vsock_dlink *l)
{
	l->prev = l->next = l;
}

static inline bool dlist_empty(const struct vsock_dlink *l)
{
	return l->next == l;
}

static inline void dlist_add_tail(struct vsock_dlink *l, struct vsock_dlink *n)
{
	n->prev = l->prev;
	n->next = l;
	l->prev->next = n;
	l->prev = n;
}

static inline void dlist_del(struct vsock_dlink *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define conn_of(link, member) \
	((struct vsock_conn *)((char *)(link) - offsetof(struct vsock_conn, member)))

uint64_t vsock_now_ns(void);

/* ---- vsock_muxer.c ---- */
int vsock_muxer_open(struct virtio_vsock *v, ember_err *e);
void vsock_muxer_close(struct virtio_vsock *v);
/* A good packet from the guest; `c` holds its payload after the header. */
void vsock_muxer_send_pkt(struct virtio_vsock *v, const struct vsock_hdr *h,
			  const struct virtq_chain *c);
/* Fills the header (and payload, at VSOCK_HDR_SIZE into the chain's
 * writable part, at most `room` bytes) of the next packet for the guest.
 * 1: a packet, 0: nothing to send. */
int vsock_muxer_recv_pkt(struct virtio_vsock *v, struct vsock_hdr *h, const struct virtq_chain *c,
			 uint32_t room);
bool vsock_muxer_has_rx(const struct virtio_vsock *v);
/* The guest reset the device: every connection is dropped. */
void vsock_muxer_reset(struct virtio_vsock *v);
void vsock_muxer_epoll_event(struct virtio_vsock *v);
void vsock_muxer_timer_event(struct virtio_vsock *v);
/* Frees what died during an event. */
void vsock_muxer_reap(struct virtio_vsock *v);

/* ---- virtio_vsock.c ---- */
/* Puts what the muxer has for the guest into its rx queue. */
void vsock_fill_rx(struct virtio_vsock *v);

#endif
