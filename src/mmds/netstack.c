#include "mmds/netstack.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

const struct metrics_group mmds_metrics_group = METRICS_GROUP("mmds", METRICS_MMDS, struct mmds_metrics);

/* Metrics as Firecracker bumps them (ns.rs, endpoint.rs, the net device):
 * rx_accepted per frame taken, rx_count per TCP segment handled, tx_count,
 * tx_frames and tx_bytes per frame given. */
#define BUMP(s, field) \
	do { \
		if ((s)->metrics) \
			metric_inc(&(s)->metrics->field); \
	} while (0)

static uint64_t random_seed(void)
{
	uint64_t v = 0;
	ssize_t r;
	do
		r = getrandom(&v, sizeof(v), 0);
	while (r < 0 && errno == EINTR);
	/* Without entropy the numbers are merely guessable; a guest that
	 * guesses its own connections' sequence numbers gains nothing. */
	return v ? v : 0x9e3779b97f4a7c15ull;
}

void mmds_stack_init(struct mmds_stack *s, struct mmds *m, uint32_t ipv4,
		     struct mmds_metrics *metrics, uint64_t seed)
{
	static const uint8_t mac[MMDS_ETH_ALEN] = MMDS_NET_MAC;
	memset(s, 0, sizeof(*s));
	s->mmds = m;
	s->metrics = metrics;
	s->ipv4 = ipv4;
	memcpy(s->mac, mac, sizeof(mac));
	s->rng = seed ? seed : random_seed();
}

static void drop_conn(struct mmds_stack *s, struct mmds_conn *c)
{
	mmds_conn_release(c);
	BUMP(s, connections_destroyed);
}

void mmds_stack_free(struct mmds_stack *s)
{
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++)
		mmds_conn_release(&s->conn[i]);
}

void mmds_stack_set_ipv4(struct mmds_stack *s, uint32_t ipv4)
{
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++)
		if (s->conn[i].state != MMDS_CONN_FREE)
			drop_conn(s, &s->conn[i]);
	s->rst_len = 0;
	s->arp_pending = false;
	s->ipv4 = ipv4;
}

/* xorshift64*: initial sequence numbers the guest cannot predict from the
 * previous ones without the seed. */
static uint32_t next_isn(struct mmds_stack *s)
{
	uint64_t x = s->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rng = x;
	return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

static void queue_rst(struct mmds_stack *s, const uint8_t *mac, uint32_t ip, uint16_t port,
		      uint32_t seq, uint32_t ack, uint8_t flags)
{
	if (s->rst_len == MMDS_NET_MAX_RESETS)
		return; /* Firecracker forgoes RSTs past its queue too */
	struct mmds_net_rst *r = &s->rst[(s->rst_head + s->rst_len++) % MMDS_NET_MAX_RESETS];
	memcpy(r->mac, mac, MMDS_ETH_ALEN);
	r->ip = ip;
	r->port = port;
	r->seq = seq;
	r->ack = ack;
	r->flags = flags;
}

static struct mmds_conn *find_conn(struct mmds_stack *s, uint32_t ip, uint16_t port)
{
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++) {
		struct mmds_conn *c = &s->conn[i];
		if (c->state != MMDS_CONN_FREE && c->ip == ip && c->port == port)
			return c;
	}
	return NULL;
}

/* A free slot, or the slot of the connection idle longest if that is past
 * MMDS_NET_EVICT_MS (it is sent a RST), or NULL. */
static struct mmds_conn *take_slot(struct mmds_stack *s, uint64_t now_ms)
{
	struct mmds_conn *idlest = NULL;
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++) {
		struct mmds_conn *c = &s->conn[i];
		if (c->state == MMDS_CONN_FREE)
			return c;
		if (!idlest || c->last_rx < idlest->last_rx)
			idlest = c;
	}
	if (!idlest || now_ms < idlest->last_rx + MMDS_NET_EVICT_MS)
		return NULL;
	uint32_t seq, ack;
	uint8_t flags;
	mmds_conn_rst_params(idlest, &seq, &ack, &flags);
	queue_rst(s, idlest->mac, idlest->ip, idlest->port, seq, ack, flags);
	drop_conn(s, idlest);
	return idlest;
}

static void rx_tcp(struct mmds_stack *s, const uint8_t *mac, uint32_t ip,
		   const struct mmds_tcp_in *seg, uint64_t now_ms)
{
	bool syn = (seg->flags & (MMDS_TCP_SYN | MMDS_TCP_ACK | MMDS_TCP_RST | MMDS_TCP_FIN)) ==
		   MMDS_TCP_SYN;
	struct mmds_conn *c = find_conn(s, ip, seg->src_port);
	if (c && syn && c->state == MMDS_CONN_ESTABLISHED) {
		/* A fresh SYN on a connection we still hold: the guest has
		 * forgotten it (rebooted, reused the port). Start over rather
		 * than refuse (Firecracker resets, failing the connect). */
		drop_conn(s, c);
		BUMP(s, rx_accepted_unusual);
		c = NULL;
	}
	if (c) {
		if (mmds_conn_rx(c, seg, s->mmds, now_ms) & MMDS_CONN_UNUSUAL)
			BUMP(s, rx_accepted_unusual);
		if (c->dead)
			drop_conn(s, c);
		return;
	}
	if (syn) {
		c = take_slot(s, now_ms);
		if (c) {
			mmds_conn_open(c, mac, ip, seg, next_isn(s), now_ms);
			BUMP(s, connections_created);
			return;
		}
	}
	/* No connection: anything but a RST is answered with one. */
	BUMP(s, rx_accepted_unusual);
	if (!(seg->flags & MMDS_TCP_RST)) {
		uint32_t seq, ack;
		uint8_t flags;
		mmds_tcp_rst_for(seg, &seq, &ack, &flags);
		queue_rst(s, mac, ip, seg->src_port, seq, ack, flags);
	}
}

static bool multicast(const uint8_t *mac)
{
	return mac[0] & 1;
}

static void rx_ipv4(struct mmds_stack *s, const uint8_t *frame, size_t len, unsigned flags,
		    uint64_t now_ms)
{
	const uint8_t *src_mac = frame + MMDS_ETH_ALEN;
	if (multicast(src_mac)) {
		BUMP(s, rx_bad_eth); /* no unicast address to answer */
		return;
	}
	struct mmds_ipv4_in ip;
	if (mmds_ipv4_parse(frame + MMDS_ETH_HLEN, len - MMDS_ETH_HLEN, &ip) != MMDS_PARSE_OK) {
		BUMP(s, rx_accepted_err);
		return;
	}
	/* Firecracker takes fragments as whole packets; here they are
	 * dropped: no MMDS request needs one, and reassembly costs memory. */
	if (ip.fragment || ip.proto != MMDS_IPPROTO_TCP) {
		BUMP(s, rx_accepted_unusual);
		return;
	}
	struct mmds_tcp_in seg;
	bool verify = !(flags & MMDS_NET_RX_CSUM_PARTIAL);
	if (mmds_tcp_parse(ip.payload, ip.len, ip.src, ip.dst, verify, &seg) != MMDS_PARSE_OK ||
	    seg.dst_port != MMDS_NET_PORT || !seg.src_port) {
		BUMP(s, rx_accepted_err);
		return;
	}
	BUMP(s, rx_count);
	rx_tcp(s, src_mac, ip.src, &seg, now_ms);
}

static void rx_arp(struct mmds_stack *s, const uint8_t *p, size_t len)
{
	struct mmds_arp_in a;
	if (mmds_arp_parse(p, len, &a) != MMDS_PARSE_OK) {
		BUMP(s, rx_accepted_err);
		return;
	}
	if (a.op != 1 || multicast(a.sha)) {
		BUMP(s, rx_accepted_unusual); /* only requests are answered */
		return;
	}
	s->arp_pending = true;
	memcpy(s->arp_mac, a.sha, MMDS_ETH_ALEN);
	s->arp_ip = a.spa;
}

bool mmds_stack_rx_flags(struct mmds_stack *s, const uint8_t *frame, size_t len, unsigned flags,
			 uint64_t now_ms)
{
	/* Which frames are MMDS's is decided as Firecracker decides it
	 * (test_speculative_tpa, test_speculative_dst_addr): by the address
	 * at its place in an untagged frame, whatever the destination MAC,
	 * so a guest that routes MMDS through its gateway still reaches it. */
	if (len < MMDS_ETH_HLEN)
		return false;
	uint16_t type = mmds_rd16(frame + MMDS_ETH_TYPE_OFF);
	if (type == MMDS_ETHERTYPE_ARP) {
		if (len < MMDS_ETH_HLEN + MMDS_ARP_LEN ||
		    mmds_rd32(frame + MMDS_ARP_TPA_OFF) != s->ipv4)
			return false;
		BUMP(s, rx_accepted);
		rx_arp(s, frame + MMDS_ETH_HLEN, len - MMDS_ETH_HLEN);
		return true;
	}
	if (type != MMDS_ETHERTYPE_IPV4 || len < MMDS_ETH_HLEN + MMDS_IPV4_HLEN ||
	    mmds_rd32(frame + MMDS_IPV4_DST_OFF) != s->ipv4)
		return false;
	BUMP(s, rx_accepted);
	rx_ipv4(s, frame, len, flags, now_ms);
	return true;
}

bool mmds_stack_rx(struct mmds_stack *s, const uint8_t *frame, size_t len, uint64_t now_ms)
{
	return mmds_stack_rx_flags(s, frame, len, 0, now_ms);
}

static size_t tx_rst(struct mmds_stack *s, uint8_t *buf, size_t cap)
{
	const struct mmds_net_rst *r = &s->rst[s->rst_head];
	struct mmds_tcp_out o = {
		.src_mac = s->mac,
		.dst_mac = r->mac,
		.src_ip = s->ipv4,
		.dst_ip = r->ip,
		.src_port = MMDS_NET_PORT,
		.dst_port = r->port,
		.seq = r->seq,
		.ack = r->ack,
		.flags = r->flags,
	};
	size_t n = mmds_tcp_write(buf, cap, &o, NULL, 0);
	if (n) {
		s->rst_head = (s->rst_head + 1) % MMDS_NET_MAX_RESETS;
		s->rst_len--;
	}
	return n;
}

static size_t tx_conn(struct mmds_stack *s, uint8_t *buf, size_t cap, uint64_t now_ms)
{
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++) {
		size_t k = (s->next_conn + i) % MMDS_NET_MAX_CONNECTIONS;
		struct mmds_conn *c = &s->conn[k];
		if (!mmds_conn_ready(c, now_ms))
			continue;
		size_t n = mmds_conn_tx(c, buf, cap, s->mac, s->ipv4, now_ms);
		if (c->dead)
			drop_conn(s, c);
		if (n) {
			s->next_conn = k + 1;
			return n;
		}
	}
	return 0;
}

size_t mmds_stack_tx(struct mmds_stack *s, uint8_t *buf, size_t cap, uint64_t now_ms)
{
	if (cap < MMDS_NET_MIN_TX) {
		if (mmds_stack_pending(s, now_ms))
			BUMP(s, tx_errors);
		return 0;
	}
	size_t n;
	if (s->arp_pending) {
		n = mmds_arp_write_reply(buf, cap, s->mac, s->ipv4, s->arp_mac, s->arp_ip);
		s->arp_pending = false;
	} else if (s->rst_len) {
		n = tx_rst(s, buf, cap);
	} else {
		n = tx_conn(s, buf, cap, now_ms);
	}
	if (n) {
		BUMP(s, tx_count);
		BUMP(s, tx_frames);
		if (s->metrics)
			metric_add(&s->metrics->tx_bytes, n);
	}
	return n;
}

bool mmds_stack_pending(const struct mmds_stack *s, uint64_t now_ms)
{
	if (s->arp_pending || s->rst_len)
		return true;
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++)
		if (mmds_conn_ready(&s->conn[i], now_ms))
			return true;
	return false;
}

uint64_t mmds_stack_deadline(const struct mmds_stack *s)
{
	uint64_t t = UINT64_MAX;
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++) {
		uint64_t d = mmds_conn_deadline(&s->conn[i]);
		if (d < t)
			t = d;
	}
	return t;
}
