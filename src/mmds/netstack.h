/* The network stack between a guest's virtio-net device and MMDS:
 * Firecracker's "dumbo" (docs/mmds/mmds-design.md, src/vmm/src/mmds/ns.rs
 * and src/vmm/src/dumbo/). It answers ARP for the MMDS address with a fixed
 * MAC and runs HTTP over TCP port 80 on that address, feeding requests to
 * mmds_http_handle(). Pure logic over Ethernet frames: no sockets, no
 * threads, time passed in (a monotonic clock in ms, mmds_now_ms()).
 *
 * Use, per network interface that may reach MMDS:
 *  - each frame the guest sends: mmds_stack_rx(); true means MMDS took it
 *    (it must not go to the TAP), false leaves it untouched;
 *  - whenever the guest has an RX buffer: mmds_stack_tx() until it gives 0
 *    (or the guest has no more buffers), before reading the TAP;
 *  - mmds_stack_pending() says whether a frame is ready; a timer set to
 *    mmds_stack_deadline() catches retransmissions.
 * Not locked: call everything from the thread that owns struct mmds. */
#ifndef EMBER_MMDS_NETSTACK_H
#define EMBER_MMDS_NETSTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmds/http.h"
#include "mmds/net_conn.h"
#include "mmds/metrics.h"

/* Firecracker's MMDS MAC address (ns.rs DEFAULT_MAC_ADDR). */
#define MMDS_NET_MAC {0x06, 0x01, 0x23, 0x45, 0x67, 0x01}
/* Firecracker's limits: concurrent connections, and RSTs waiting to go
 * out (more are not sent). */
#define MMDS_NET_MAX_CONNECTIONS 30
#define MMDS_NET_MAX_RESETS 100
/* With the table full, a SYN replaces a connection idle this long (the one
 * idle longest), which gets a RST; with none, the SYN gets the RST.
 * Firecracker's threshold is ~10 s of TSC cycles. */
#define MMDS_NET_EVICT_MS 10000
/* mmds_stack_tx needs at least this much room; give it a whole frame
 * buffer (the guest's MTU plus 14 bytes) so segments are MSS-sized. */
#define MMDS_NET_MIN_TX 128

/* mmds_stack_rx_flags: the guest left the TCP checksum to an offload
 * (virtio_net_hdr's VIRTIO_NET_HDR_F_NEEDS_CSUM), so it cannot be checked. */
#define MMDS_NET_RX_CSUM_PARTIAL 1u

struct mmds_net_rst {
	uint8_t mac[MMDS_ETH_ALEN];
	uint32_t ip;
	uint16_t port;
	uint32_t seq, ack;
	uint8_t flags;
};

struct mmds_stack {
	struct mmds *mmds;
	struct mmds_metrics *metrics; /* may be NULL */
	uint32_t ipv4;                /* host byte order */
	uint8_t mac[MMDS_ETH_ALEN];
	uint64_t rng; /* initial sequence numbers */
	/* Only the latest ARP request is answered, as Firecracker. */
	bool arp_pending;
	uint8_t arp_mac[MMDS_ETH_ALEN];
	uint32_t arp_ip;
	struct mmds_net_rst rst[MMDS_NET_MAX_RESETS]; /* a ring */
	size_t rst_head, rst_len;
	size_t next_conn; /* where the round-robin over connections resumes */
	struct mmds_conn conn[MMDS_NET_MAX_CONNECTIONS];
};

/* Sets up s (about 80 KiB: embed or allocate it) answering at ipv4 (host
 * byte order, e.g. mmds_config.ipv4_address or MMDS_DEFAULT_IPV4) from m.
 * seed makes the initial sequence numbers; 0 takes one from getrandom(2). */
void mmds_stack_init(struct mmds_stack *s, struct mmds *m, uint32_t ipv4,
		     struct mmds_metrics *metrics, uint64_t seed);
/* Frees the connections' response buffers. */
void mmds_stack_free(struct mmds_stack *s);
/* A new MMDS address (PUT /mmds/config): connections, RSTs and the ARP
 * reply owed for the old one are dropped. */
void mmds_stack_set_ipv4(struct mmds_stack *s, uint32_t ipv4);

/* A frame the guest sent (no virtio_net_hdr). True when it was for MMDS: an
 * ARP packet asking about the MMDS address, or an IPv4 packet to it. MMDS
 * takes those whole, whatever is wrong with them further in (dropped and
 * counted), so nothing addressed to MMDS reaches the TAP; everything else
 * is left alone. Checksums are verified. */
bool mmds_stack_rx(struct mmds_stack *s, const uint8_t *frame, size_t len, uint64_t now_ms);
/* The same with MMDS_NET_RX_* flags from the frame's virtio_net_hdr. */
bool mmds_stack_rx_flags(struct mmds_stack *s, const uint8_t *frame, size_t len, unsigned flags,
			 uint64_t now_ms);

/* Writes the next frame for the guest into buf (complete checksums, no
 * virtio_net_hdr): an ARP reply, a queued RST, or the next segment of a
 * connection, taking connections in turn. Its length, or 0 when nothing is
 * due (or cap is below MMDS_NET_MIN_TX: counted in tx_errors). */
size_t mmds_stack_tx(struct mmds_stack *s, uint8_t *buf, size_t cap, uint64_t now_ms);

/* Whether mmds_stack_tx has a frame to give at now_ms. */
bool mmds_stack_pending(const struct mmds_stack *s, uint64_t now_ms);
/* The earliest time (ms) a retransmission falls due, UINT64_MAX if none:
 * when it passes, mmds_stack_pending() turns true. */
uint64_t mmds_stack_deadline(const struct mmds_stack *s);

#endif
