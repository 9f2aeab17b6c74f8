/* One TCP connection from the guest to MMDS port 80, as Firecracker's dumbo
 * runs it (src/vmm/src/dumbo/tcp/connection.rs and endpoint.rs): passive
 * open only, in-order data only, no congestion control, the MSS option and
 * nothing else, one HTTP response in flight at a time. The request bytes sit
 * in a fixed receive buffer whose free space is the window advertised, so a
 * well-behaved guest never overruns it; a request that fills it without
 * ending resets the connection (mmds_http_handle's MMDS_HTTP_RESET).
 *
 * Time is the caller's monotonic clock in milliseconds. Nothing here knows
 * about other connections, the RST queue or metrics: netstack.c does. */
#ifndef EMBER_MMDS_NET_CONN_H
#define EMBER_MMDS_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmds/buf.h"
#include "mmds/http.h"
#include "mmds/net_wire.h"

#define MMDS_NET_PORT 80
/* Firecracker's endpoint receive buffer: also the largest window offered. */
#define MMDS_CONN_RX_BUF MMDS_HTTP_MAX_REQUEST
/* RFC 1122's default when the SYN carries no MSS option (Firecracker's too). */
#define MMDS_CONN_MSS_DEFAULT 536
/* Retransmission: a fixed timeout and no backoff, as Firecracker (which
 * counts ~300 ms in TSC cycles); after 15 timeouts in a row the connection
 * is reset. */
#define MMDS_CONN_RTO_MS 300
#define MMDS_CONN_RTO_MAX 15
/* Sequence arithmetic needs responses far below 2^31 bytes; anything near
 * this is a misconfigured store limit, and the connection is reset. */
#define MMDS_CONN_MAX_RESPONSE (1u << 30)

enum mmds_conn_state {
	MMDS_CONN_FREE,
	MMDS_CONN_SYN_RCVD, /* SYN seen; SYN-ACK owed or sent */
	MMDS_CONN_ESTABLISHED,
};

struct mmds_conn {
	enum mmds_conn_state state;
	bool dead; /* reset (either way) or closed both ways: remove it */
	/* The guest's end. */
	uint8_t mac[MMDS_ETH_ALEN];
	uint32_t ip;
	uint16_t port;
	uint16_t mss; /* the guest's: the largest payload we send */
	/* Receive side. */
	uint32_t irs, rcv_nxt;
	bool fin_rcvd, ack_pending;
	/* Send side: snd_max is the highest sequence sent, snd_nxt where the
	 * next segment starts (below snd_max after a timeout), snd_edge the
	 * right edge of the guest's window. */
	uint32_t iss, snd_una, snd_nxt, snd_max, snd_edge;
	uint16_t last_wnd;
	bool synack_sent, dup_ack;
	bool closing; /* our FIN is owed, at fin_seq */
	uint32_t fin_seq;
	uint64_t rto_start;
	unsigned rto_count;
	/* A RST to send instead of anything else, then the connection is dead. */
	bool rst_pending;
	uint32_t rst_seq, rst_ack;
	uint8_t rst_flags;
	uint64_t last_rx; /* for eviction */
	/* Request bytes not yet answered, and the response in flight (its
	 * first byte is sequence resp_seq). */
	uint8_t rx[MMDS_CONN_RX_BUF];
	size_t rx_len;
	struct mmds_buf resp;
	uint32_t resp_seq;
};

/* The RST answering segment s, as RFC 793 builds it: seq = s's ACK if it
 * has one, else an ACK of everything s occupies. */
void mmds_tcp_rst_for(const struct mmds_tcp_in *s, uint32_t *seq, uint32_t *ack, uint8_t *flags);

/* Takes a free slot into SYN_RCVD for the guest's SYN s, with our initial
 * sequence number iss. */
void mmds_conn_open(struct mmds_conn *c, const uint8_t mac[MMDS_ETH_ALEN], uint32_t ip,
		    const struct mmds_tcp_in *s, uint32_t iss, uint64_t now_ms);
/* Frees the response buffer and makes the slot free. */
void mmds_conn_release(struct mmds_conn *c);

/* What a received segment did, for the metrics. */
enum {
	MMDS_CONN_UNUSUAL = 1, /* out of order, beyond the window, a bad ACK, ... */
};

/* Handles segment s of this connection: ACKs, data into the receive buffer,
 * FIN, RST; then answers any complete request through mmds_http_handle.
 * Check c->dead afterwards. Returns MMDS_CONN_* flags. */
unsigned mmds_conn_rx(struct mmds_conn *c, const struct mmds_tcp_in *s, struct mmds *m,
		      uint64_t now_ms);

/* Writes the next frame this connection owes the guest (from mac/ip, port
 * 80) into buf: RST, SYN-ACK, data, FIN, or a bare ACK, retransmitting
 * after a timeout. Its length, or 0 when nothing is due or it does not fit.
 * Check c->dead afterwards. */
size_t mmds_conn_tx(struct mmds_conn *c, uint8_t *buf, size_t cap, const uint8_t *mac,
		    uint32_t ip, uint64_t now_ms);

/* Whether mmds_conn_tx has something to write at now_ms. */
bool mmds_conn_ready(const struct mmds_conn *c, uint64_t now_ms);
/* When a retransmission falls due; UINT64_MAX when none is armed. */
uint64_t mmds_conn_deadline(const struct mmds_conn *c);
/* Gives up on the connection: a RST is owed, then it is dead. */
void mmds_conn_reset(struct mmds_conn *c);
/* The RST that gives up on it, for a caller that sends it from elsewhere
 * (an evicted connection's slot is reused at once). */
void mmds_conn_rst_params(const struct mmds_conn *c, uint32_t *seq, uint32_t *ack,
			  uint8_t *flags);

#endif
