/* virtio-vsock (virtio 1.2 section 5.10) with Firecracker's hybrid Unix-
 * socket backend: one device per VM, configured by PUT /vsock or the config
 * file's "vsock" section.
 *
 * Host-initiated: a host client connects to uds_path, writes
 * "CONNECT <port>\n", and once the guest accepts it reads "OK <host_port>\n"
 * and then the byte stream. Guest-initiated: a guest connecting to CID 2
 * port P is connected to the Unix socket "<uds_path>_P"; nothing listening
 * there means a reset.
 *
 * Everything runs on the VMM thread's event loop: the device watches one
 * epoll fd of its own (every socket of the backend is in it, all of them
 * non-blocking) and one timerfd (connect-line, request and shutdown
 * timeouts). Memory is bounded: at most VSOCK_MAX_CONNECTIONS
 * connections, each buffering at most the credit Ember advertises it
 * (VSOCK_CONN_TX_BUF_BIG for at most VSOCK_BIG_BUF_CONNS of them,
 * VSOCK_CONN_TX_BUF_SIZE for the rest) for the host, and host bytes are read only into
 * the guest's own receive buffers, within the guest's advertised credit. */
#ifndef EMBER_VIRTIO_VSOCK_H
#define EMBER_VIRTIO_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"
#include "util/metrics.h"
#include "virtio/mmio.h"
#include "guest/guest_mem.h"

#define VIRTIO_ID_VSOCK 19
#define VSOCK_NR_QUEUES 3 /* rx, tx, event */
#define VSOCK_QUEUE_SIZE 256
#define VSOCK_RXQ 0
#define VSOCK_TXQ 1
#define VSOCK_EVQ 2

#define VSOCK_HOST_CID 2
/* The packet header (struct virtio_vsock_hdr), little-endian. */
#define VSOCK_HDR_SIZE 44
/* Largest payload of one packet, either way (as Firecracker). */
#define VSOCK_MAX_PKT_BUF_SIZE (64 * 1024)

#define VSOCK_TYPE_STREAM 1
#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7
#define VSOCK_FLAGS_SHUTDOWN_RCV 1
#define VSOCK_FLAGS_SHUTDOWN_SEND 2

/* Firecracker's limits. */
#define VSOCK_MAX_CONNECTIONS 1023
#define VSOCK_CONN_TX_BUF_SIZE (64 * 1024)
/* Ember's larger credit for the first VSOCK_BIG_BUF_CONNS connections open
 * at once: 256 KiB, what Linux (and so vhost-vsock) advertises by default.
 * With 64 KiB the guest sends one 64 KiB packet and then waits a whole
 * round trip for the credit update, at every packet. A connection keeps
 * its credit for life (a guest's view of buf_alloc must never shrink). In
 * all, at most 64 x 256 KiB + 959 x 64 KiB (76 MiB) wait for host readers. */
#define VSOCK_CONN_TX_BUF_BIG (256 * 1024)
#define VSOCK_BIG_BUF_CONNS 64
#define VSOCK_CONN_REQUEST_TIMEOUT_MS 2000
/* A connection both ends shut down that is not gone by then (the host not
 * taking what the guest sent before its shutdown, a guest not answering
 * the host's close) is reset. */
#define VSOCK_CONN_SHUTDOWN_TIMEOUT_MS 2000
/* Ember's own: a host client that has not sent its "CONNECT <port>\n" line
 * by then is closed; the line is at most this long. */
#define VSOCK_CONNECT_LINE_TIMEOUT_MS 5000
#define VSOCK_CONNECT_LINE_MAX 32
/* Queued control packets (resets for unknown connections) to the guest;
 * more are dropped (the guest is not reading its rx queue). */
#define VSOCK_CTLQ_SIZE 256

/* Firecracker's "vsock" metrics group. */
#define METRICS_VSOCK(X, a) \
	X(a, inc, activate_fails) \
	X(a, inc, cfg_fails) \
	X(a, inc, rx_queue_event_fails) \
	X(a, inc, tx_queue_event_fails) \
	X(a, inc, ev_queue_event_fails) \
	X(a, inc, muxer_event_fails) \
	X(a, inc, conn_event_fails) \
	X(a, inc, rx_queue_event_count) \
	X(a, inc, tx_queue_event_count) \
	X(a, inc, rx_bytes_count) \
	X(a, inc, tx_bytes_count) \
	X(a, inc, rx_packets_count) \
	X(a, inc, tx_packets_count) \
	X(a, inc, conns_added) \
	X(a, inc, conns_killed) \
	X(a, inc, conns_removed) \
	X(a, inc, killq_resync) \
	X(a, inc, tx_flush_fails) \
	X(a, inc, tx_write_fails) \
	X(a, inc, rx_read_fails)

struct vsock_metrics { METRICS_VSOCK(METRICS_MEMBER, _) };
extern const struct metrics_group vsock_metrics_group;

/* sun_path holds 108 bytes; "<uds_path>_4294967295" must fit. */
#define VSOCK_UDS_PATH_MAX (108 - 1 - 11)

/* Firecracker's Vsock object. */
struct vsock_config {
	uint32_t guest_cid;
	char uds_path[VSOCK_UDS_PATH_MAX + 1];
	char vsock_id[65]; /* "" when not given (deprecated) */
	/* PUT /vsock binds uds_path at once, as Firecracker
	 * (vsock_config_bind): the device then listens on a copy of this
	 * socket. Otherwise (the config file, a snapshot's config) the
	 * device binds it when the VM is built. */
	bool bound;
	int listen_fd;
};

int vsock_config_parse(json_t *j, struct vsock_config *out, ember_err *e);
json_t *vsock_config_json(const struct vsock_config *c);
/* Binds and listens on c->uds_path, which must not exist (Firecracker's
 * message if it does). old: the config c replaces (NULL if none), whose
 * socket file is removed first, as Firecracker; if c cannot bind, old is
 * bound again. On the VMM thread. */
int vsock_config_bind(struct vsock_config *c, struct vsock_config *old, ember_err *e);
/* Closes c's listener if it has one (the socket file stays, as
 * Firecracker leaves it). */
void vsock_config_release(struct vsock_config *c);

/* A packet header in host order. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);

struct virtio_vsock;

struct virtio_vsock_params {
	const struct vsock_config *cfg;
	const struct guest_mem *gm;
	struct virtio_mmio_hooks hooks;
	struct vsock_metrics *metrics; /* NULL counts into a private set */
};

/* Binds and listens on uds_path (which must not exist, as Firecracker). */
int virtio_vsock_create(struct virtio_vsock **out, const struct virtio_vsock_params *p,
			ember_err *e);
void virtio_vsock_destroy(struct virtio_vsock *v);
struct virtio_mmio *virtio_vsock_mmio(struct virtio_vsock *v);
struct vsock_metrics *virtio_vsock_metrics(struct virtio_vsock *v);
json_t *virtio_vsock_config_json(const struct virtio_vsock *v);
/* The guest notified queue `queue`. */
void virtio_vsock_queue_event(struct virtio_vsock *v, unsigned queue);
/* The backend's epoll fd (EPOLLIN: some socket is ready) and its handler. */
int virtio_vsock_epoll_fd(const struct virtio_vsock *v);
void virtio_vsock_backend_event(struct virtio_vsock *v);
/* The timeout timerfd and its handler. */
int virtio_vsock_timer_fd(const struct virtio_vsock *v);
void virtio_vsock_timer_event(struct virtio_vsock *v);
/* Connections open now (host clients still sending their CONNECT line
 * not counted), for tests. */
size_t virtio_vsock_nr_conns(const struct virtio_vsock *v);

/* Snapshots: the device's state besides its transport (its guest_cid; no
 * connection is saved), NULL without memory. Restore, on a device just
 * created from the same config (its listener bound anew, no connection)
 * whose transport is restored: checks the state, then sends the driver
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET if it is active, as Firecracker. */
json_t *virtio_vsock_save(struct virtio_vsock *v);
int virtio_vsock_restore(struct virtio_vsock *v, json_t *state, ember_err *e);

#endif
