/* The inside of the virtio-net device, shared by virtio_net.c (life cycle,
 * TX, updates) and virtio_net_rx.c (RX and the MMDS injection queue). Not
 * for other users: they go through devices/virtio_net.h. */
#ifndef EMBER_VIRTIO_NET_INT_H
#define EMBER_VIRTIO_NET_INT_H

#include "devices/virtio_net.h"

/* Receive chains the device holds at most, and their buffers. A chain
 * has at most VIRTIO_NET_QUEUE_SIZE buffers (the queue layer's bound). */
#define NET_RX_HELD_MAX VIRTIO_NET_QUEUE_SIZE
#define NET_RX_SEG_POOL 4096

/* Guest mistakes and host failures, each logged once at WARN and then only
 * counted, so a guest cannot flood the log. */
enum net_complaint {
	NET_TX_BAD_CHAIN,
	NET_TX_WRITABLE,
	NET_TX_MALFORMED,
	NET_TX_WRITE_FAIL,
	NET_RX_BAD_CHAIN,
	NET_RX_SMALL_BUF,
	NET_RX_NO_FIT,
	NET_RX_READ_FAIL,
	NET_RX_RUNT,
	NET_BROKEN_RING,
	NET_TIMER_FAIL,
	NET_NOT_READY,
	NET_NR_COMPLAINTS,
};

/* A receive chain popped from the rx queue and not yet used: its
 * writable buffers are pool[(seg_start + i) % NET_RX_SEG_POOL]. */
struct net_rx_held {
	uint16_t head;
	uint16_t nsegs;
	uint32_t len;
	uint32_t seg_start;
};

struct net_injected {
	uint8_t *data;
	size_t len;
};

struct virtio_net {
	struct virtio_mmio mmio;
	const struct guest_mem *gm;
	struct net_config cfg; /* rate limiters follow PATCH */
	uint16_t mtu;
	int fd;
	bool fd_is_tap;

	struct rate_limiter rx_rl, tx_rl;
	struct rate_limiter_timer rx_timer, tx_timer;
	uint64_t (*now_ns)(void *ctx);
	void *clock_ctx;

	struct net_metrics *m;
	struct net_metrics own_metrics;
	struct mmds_metrics *mmds_m;
	uint64_t complaints[NET_NR_COMPLAINTS];

	struct virtio_net_tx_hook hook;

	bool active;
	bool mrg_rxbuf; /* negotiated VIRTIO_NET_F_MRG_RXBUF */

	/* TX. tx_chain holds a popped frame the rate limiter refused; it goes
	 * first when the queue resumes. */
	bool tx_held;
	bool in_tx;   /* inside the TX loop (and so maybe the hook) */
	bool rx_kick; /* a frame was injected meanwhile: run RX after TX */
	struct virtq_seg tx_segs[VIRTIO_NET_QUEUE_SIZE];
	struct virtq_chain tx_chain;
	struct iovec tx_iov[VIRTIO_NET_QUEUE_SIZE];
	uint8_t tx_buf[VIRTIO_NET_MAX_BUFFER]; /* frames copied for the hook */

	/* RX: chains popped and not yet used, oldest first. */
	struct net_rx_held held[NET_RX_HELD_MAX];
	unsigned held_first, held_count;
	uint64_t held_bytes;
	struct virtq_seg pool[NET_RX_SEG_POOL];
	unsigned pool_first, pool_count;
	struct virtq_seg rx_segs[VIRTIO_NET_QUEUE_SIZE];
	struct virtq_chain rx_chain;
	bool rx_pushed; /* used buffers not yet signalled */
	/* A frame read from the backend and not yet delivered (no buffers or
	 * the rate limiter): header and frame, rx_len bytes. */
	bool rx_pending;
	size_t rx_len;
	uint8_t rx_buf[VIRTIO_NET_MAX_BUFFER];
	/* Frames from virtio_net_inject_rx, a ring. */
	struct net_injected inj[VIRTIO_NET_INJECT_MAX_FRAMES];
	unsigned inj_first, inj_count;
	size_t inj_bytes;
};

void net_complain(struct virtio_net *n, enum net_complaint kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
uint64_t net_now_ns(struct virtio_net *n);
void net_arm_timer(struct virtio_net *n, struct rate_limiter_timer *t, struct rate_limiter *rl);
/* Notifies a queue of the device's own (VIRTIO_NET_RX_QUEUE or _TX_QUEUE):
 * the work left past VIRTIO_NET_WORK_BUDGET waits for the next turn. */
void net_requeue(struct virtio_net *n, uint32_t queue);

/* virtio_net_rx.c */
/* Delivers frames until there are none, the guest has no buffers, or the
 * rx rate limiter refuses; then interrupts the driver if it wants. */
void net_rx_run(struct virtio_net *n);
/* Forgets the held chains, the pending frame and the injected ones. */
void net_rx_reset(struct virtio_net *n);
/* Snapshots: the held receive chains go back on the available ring;
 * the frame read from the backend and not yet delivered, and the injected
 * ones, into the state (restore: back, then delivered what fits). */
json_t *net_rx_save(struct virtio_net *n);
int net_rx_restore(struct virtio_net *n, json_t *st, ember_err *e);

#endif
