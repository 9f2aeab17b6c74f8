/* The virtio-net device (virtio 1.1 section 5.1) with Firecracker's
 * NetworkInterface semantics, backed by a TAP device (or any fd that reads
 * and writes one frame per call with the 12-byte virtio_net_hdr_v1 in
 * front, such as a SOCK_DGRAM socketpair in tests). Pure device logic: it
 * is driven through its virtio-mmio register file and the entry points
 * below, and needs no KVM. docs/net.md describes the behaviour.
 *
 * Locking: not locked. The owner holds one lock per device around every
 * call here (virtio_net_inject_rx included) and around the register
 * accesses of virtio_net_mmio(), as docs/virtio.md says; the mmio ops and
 * hooks, and the TX hook, run with it held.
 *
 * The VMM thread polls five file descriptors per interface:
 *  - the rx queue's ioeventfd (datamatch 0): read it, virtio_net_process_rx_queue()
 *  - the tx queue's ioeventfd (datamatch 1): read it, virtio_net_process_tx_queue()
 *  - virtio_net_backend_fd(), EPOLLIN | EPOLLET: virtio_net_process_backend()
 *  - virtio_net_rx_rate_limiter_fd(), EPOLLIN: virtio_net_rx_rate_limiter_event()
 *  - virtio_net_tx_rate_limiter_fd(), EPOLLIN: virtio_net_tx_rate_limiter_event()
 * The backend must be edge-triggered: the device stops reading it while
 * the guest has no receive buffers and resumes when the guest adds some. */
#ifndef EMBER_VIRTIO_NET_H
#define EMBER_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "devices/net_config.h"
#include "devices/rate_limiter.h"
#include "virtio/mmio.h"
#include "util/err.h"
#include "guest/guest_mem.h"
#include "mmds/metrics.h"
#include "util/metrics.h"

/* Firecracker's network device metrics: "net_<iface_id>" per interface,
 * summed into "net". */
#define METRICS_NET(X, a) \
	X(a, inc, activate_fails) \
	X(a, inc, cfg_fails) \
	X(a, inc, mac_address_updates) \
	X(a, inc, no_rx_avail_buffer) \
	X(a, inc, no_tx_avail_buffer) \
	X(a, inc, event_fails) \
	X(a, inc, rx_queue_event_count) \
	X(a, inc, rx_event_rate_limiter_count) \
	X(a, inc, rx_rate_limiter_throttled) \
	X(a, inc, rx_tap_event_count) \
	X(a, inc, rx_bytes_count) \
	X(a, inc, rx_packets_count) \
	X(a, inc, rx_fails) \
	X(a, inc, rx_count) \
	X(a, inc, tap_read_fails) \
	X(a, inc, tap_write_fails) \
	X(a, latency, tap_write_agg) \
	X(a, inc, tx_bytes_count) \
	X(a, inc, tx_malformed_frames) \
	X(a, inc, tx_fails) \
	X(a, inc, tx_count) \
	X(a, inc, tx_packets_count) \
	X(a, inc, tx_partial_reads) \
	X(a, inc, tx_queue_event_count) \
	X(a, inc, tx_rate_limiter_event_count) \
	X(a, inc, tx_rate_limiter_throttled) \
	X(a, inc, tx_spoofed_mac_count) \
	X(a, inc, tx_remaining_reqs_count)

struct net_metrics { METRICS_NET(METRICS_MEMBER, _) };
extern const struct metrics_group net_metrics_group;


#define VIRTIO_ID_NET 1
#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_RX_QUEUE 0
#define VIRTIO_NET_TX_QUEUE 1
/* Frames per queue per call of the VMM thread at most, each way: a guest
 * that keeps refilling its queues (or a host that keeps its TAP full) must
 * not keep that thread, and so the other devices and the API, to itself.
 * Past it, the device notifies that queue itself (hooks.queue_notify, the
 * ioeventfd's path) and goes on at its next turn in the event loop. */
#define VIRTIO_NET_WORK_BUDGET 64

/* struct virtio_net_hdr_v1: every frame carries it, in both directions. */
#define VIRTIO_NET_HDR_SIZE 12
/* The largest header + frame the device handles (Firecracker's
 * MAX_BUFFER_SIZE): a 64 KiB GSO frame with its Ethernet header. */
#define VIRTIO_NET_MAX_BUFFER 65562
#define VIRTIO_NET_MAX_FRAME (VIRTIO_NET_MAX_BUFFER - VIRTIO_NET_HDR_SIZE)
#define VIRTIO_NET_ETH_HLEN 14

/* Frames virtio_net_inject_rx() holds for the guest, at most. */
#define VIRTIO_NET_INJECT_MAX_FRAMES 64
#define VIRTIO_NET_INJECT_MAX_BYTES (256 * 1024)

/* Feature bits. */
/* virtio_net_hdr.flags: the L4 checksum is partial, for the device to do. */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_S_LINK_UP 1

/* Config space: mac[6], status (le16), max_virtqueue_pairs (le16), mtu
 * (le16). */
#define VIRTIO_NET_CONFIG_SIZE 12

struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};

/* The MMDS detour. tx_frame sees every frame the guest sends, before it
 * would go to the backend: `frame` is the Ethernet frame without the vnet
 * header, a private copy (the guest cannot change it under the callee),
 * `len` bytes (0 to VIRTIO_NET_MAX_FRAME). Returning true consumes it: it
 * never reaches the backend and its tx rate-limiter tokens are given back.
 * It runs with the device's lock held and may call virtio_net_inject_rx();
 * the injected frames go to the guest once the tx queue has been
 * processed. */
struct virtio_net_tx_hook {
	/* hdr_flags: the frame's virtio_net_hdr flags (NEEDS_CSUM: its L4
	 * checksum is left for the device to fill in). */
	bool (*tx_frame)(void *ctx, const uint8_t *frame, size_t len, uint8_t hdr_flags);
	void *ctx;
};

struct virtio_net;

struct virtio_net_params {
	const struct net_config *cfg; /* copied */
	/* The backend. With fd_given false the TAP named cfg->host_dev_name is
	 * opened (virtio_net_tap_open). With fd_given true, `fd` is used; it
	 * is made non-blocking, and the device owns it once create succeeds
	 * (on failure the caller still does). fd_is_tap: apply the
	 * negotiated offloads with TUNSETOFFLOAD on activation (always done
	 * for a TAP the device opened). */
	bool fd_given;
	int fd;
	bool fd_is_tap;
	/* VIRTIO_NET_F_MTU with this MTU (68..65535); 0: not offered. */
	uint16_t mtu;
	const struct guest_mem *gm;
	struct virtio_mmio_hooks hooks;
	/* From metrics_net_register(); NULL counts into a private set. */
	struct net_metrics *metrics;
	/* The global "mmds" group: rx_accepted (a guest frame the TX hook
	 * consumed), tx_frames and tx_bytes (an injected frame delivered).
	 * NULL: not counted. */
	struct mmds_metrics *mmds_metrics;
	/* CLOCK_MONOTONIC nanoseconds for the rate limiters; NULL means
	 * rate_limiter_now_ns. Tests pass a fake clock. */
	uint64_t (*now_ns)(void *ctx);
	void *clock_ctx;
};

/* Opens the TAP (unless an fd is given), sets up both rate limiters and
 * their timers, and the virtio-mmio transport. Errors name the interface. */
int virtio_net_create(struct virtio_net **out, const struct virtio_net_params *p, ember_err *e);
/* Closes the backend and the timers, frees the held frames. NULL is
 * ignored. */
void virtio_net_destroy(struct virtio_net *n);

/* The register file, for the MMIO bus (under the device's lock). */
struct virtio_mmio *virtio_net_mmio(struct virtio_net *n);
struct net_metrics *virtio_net_metrics(struct virtio_net *n);
const char *virtio_net_iface_id(const struct virtio_net *n);
int virtio_net_backend_fd(const struct virtio_net *n);
int virtio_net_rx_rate_limiter_fd(const struct virtio_net *n);
int virtio_net_tx_rate_limiter_fd(const struct virtio_net *n);

/* The rx queue's ioeventfd fired (the caller has read it): the guest added
 * receive buffers, so deferred and waiting frames go in. */
void virtio_net_process_rx_queue(struct virtio_net *n);
/* The tx queue's ioeventfd fired: sends what the guest queued. */
void virtio_net_process_tx_queue(struct virtio_net *n);
/* The backend fd is readable (edge): reads frames until it would block,
 * the guest runs out of buffers or the rx rate limiter says stop. */
void virtio_net_process_backend(struct virtio_net *n);
/* The rate limiters' timerfds are readable. */
void virtio_net_rx_rate_limiter_event(struct virtio_net *n);
void virtio_net_tx_rate_limiter_event(struct virtio_net *n);

/* PATCH /network-interfaces/{id}: new buckets for either limiter (absent
 * ones keep their state); a queue the old limit held resumes at once. */
int virtio_net_update_rate_limiters(struct virtio_net *n, const struct rate_limiter_config *rx,
				    const struct rate_limiter_config *tx, ember_err *e);
int virtio_net_patch(struct virtio_net *n, const struct net_patch *p, ember_err *e);

/* The interface's configuration as now in force (rate limiters after any
 * PATCH), in GET /vm/config's shape. New reference. */
json_t *virtio_net_config_json(const struct virtio_net *n);

/* Snapshots, on the VMM thread with the VM paused. save gives back to the
 * driver's available rings the chains the device took and has not used
 * (a held tx frame, held receive buffers) and returns the frames in
 * flight to the guest (from the TAP, from MMDS); restore, on the device
 * rebuilt from the same config after its transport state, takes them back
 * and delivers what the guest's buffers take. */
json_t *virtio_net_save(struct virtio_net *n);
int virtio_net_restore(struct virtio_net *n, json_t *state, ember_err *e);

/* MMDS. set_tx_hook installs the detour (NULL removes it). inject_rx
 * queues a copy of an Ethernet frame (1 to VIRTIO_NET_MAX_FRAME bytes, no
 * vnet header) for the guest; queued frames go before anything from the
 * backend. -1 when the device is not active, the frame is too big, or
 * the queue (VIRTIO_NET_INJECT_MAX_FRAMES / _BYTES) is full. */
void virtio_net_set_tx_hook(struct virtio_net *n, const struct virtio_net_tx_hook *h);
int virtio_net_inject_rx(struct virtio_net *n, const void *frame, size_t len);
/* Frames waiting in the injection queue. */
unsigned virtio_net_injected_pending(const struct virtio_net *n);

/* The TAP backend (virtio_net_tap.c). */
/* Opens /dev/net/tun and attaches to the TAP `name` with IFF_TAP |
 * IFF_NO_PI | IFF_VNET_HDR (TUNSETIFF, as Firecracker: a missing device
 * is created if the process may), non-blocking and close-on-exec, and sets
 * the vnet header size to 12 (TUNSETVNETHDRSZ). Errors read "Could not
 * open TAP device <name>: ...". */
int virtio_net_tap_open(const char *name, ember_err *e);
/* The TUNSETOFFLOAD flags for the negotiated features: what the guest can
 * receive (GUEST_CSUM -> TUN_F_CSUM, GUEST_TSO4/6 -> TUN_F_TSO4/6,
 * GUEST_UFO -> TUN_F_UFO). Without GUEST_CSUM nothing is offloaded: the
 * others depend on it (spec 5.1.3.1) and the kernel refuses them alone. */
uint32_t virtio_net_tap_offload_flags(uint64_t features);
int virtio_net_tap_set_offload(int fd, uint32_t flags, ember_err *e);

#endif
