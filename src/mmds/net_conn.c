#include "mmds/net_conn.h"

#include <string.h>

/* Sequence numbers compare modulo 2^32 (RFC 793 3.3). */
static bool seq_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static bool seq_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

void mmds_tcp_rst_for(const struct mmds_tcp_in *s, uint32_t *seq, uint32_t *ack, uint8_t *flags)
{
	if (s->flags & MMDS_TCP_ACK) {
		*seq = s->ack;
		*ack = 0;
		*flags = MMDS_TCP_RST;
		return;
	}
	/* SYN and FIN occupy a sequence number each. Firecracker leaves them
	 * out, so its RST to a refused SYN does not acknowledge the SYN and a
	 * Linux guest ignores it; this one ends the guest's connect(). */
	*seq = 0;
	*ack = s->seq + (uint32_t)s->len + !!(s->flags & MMDS_TCP_SYN) + !!(s->flags & MMDS_TCP_FIN);
	*flags = MMDS_TCP_RST | MMDS_TCP_ACK;
}

void mmds_conn_open(struct mmds_conn *c, const uint8_t mac[MMDS_ETH_ALEN], uint32_t ip,
		    const struct mmds_tcp_in *s, uint32_t iss, uint64_t now_ms)
{
	memset(c, 0, sizeof(*c));
	c->state = MMDS_CONN_SYN_RCVD;
	memcpy(c->mac, mac, MMDS_ETH_ALEN);
	c->ip = ip;
	c->port = s->src_port;
	c->mss = s->mss ? s->mss : MMDS_CONN_MSS_DEFAULT;
	c->irs = s->seq;
	c->rcv_nxt = s->seq + 1;
	c->iss = c->snd_una = c->snd_nxt = c->snd_max = iss;
	/* No window scaling is offered, so the guest's window is as written. */
	c->snd_edge = iss + 1 + s->window;
	c->last_wnd = s->window;
	c->last_rx = now_ms;
}

void mmds_conn_release(struct mmds_conn *c)
{
	mmds_buf_free(&c->resp);
	c->state = MMDS_CONN_FREE;
	c->dead = false;
}

void mmds_conn_rst_params(const struct mmds_conn *c, uint32_t *seq, uint32_t *ack,
			  uint8_t *flags)
{
	/* snd_max is where a guest that got everything expects us next (the
	 * exact match RFC 5961 wants); the ACK also answers a guest still in
	 * SYN-SENT, which never saw our SYN-ACK. */
	*seq = c->snd_max;
	*ack = c->rcv_nxt;
	*flags = MMDS_TCP_RST | MMDS_TCP_ACK;
}

void mmds_conn_reset(struct mmds_conn *c)
{
	if (c->rst_pending)
		return;
	mmds_conn_rst_params(c, &c->rst_seq, &c->rst_ack, &c->rst_flags);
	c->rst_pending = true;
}

static void reset_for(struct mmds_conn *c, const struct mmds_tcp_in *s)
{
	if (c->rst_pending)
		return;
	mmds_tcp_rst_for(s, &c->rst_seq, &c->rst_ack, &c->rst_flags);
	c->rst_pending = true;
}

static size_t rx_window(const struct mmds_conn *c)
{
	return MMDS_CONN_RX_BUF - c->rx_len;
}

/* A RST counts only with a sequence number inside our receive window. */
static bool rst_acceptable(const struct mmds_conn *c, uint32_t seq)
{
	size_t wnd = rx_window(c);
	return seq == c->rcv_nxt || (seq_lt(c->rcv_nxt, seq) && seq - c->rcv_nxt < wnd);
}

/* Answers the first complete request, unless a response is still in flight
 * (Firecracker keeps one at a time); closes once the guest has sent FIN and
 * everything it asked is answered and acknowledged. */
static void serve(struct mmds_conn *c, struct mmds *m, uint64_t now_ms)
{
	if (c->state != MMDS_CONN_ESTABLISHED || c->rst_pending || c->closing)
		return;
	if (!c->resp.len && c->rx_len) {
		size_t used = 0;
		bool window_shut = rx_window(c) == 0;
		enum mmds_http_result r = mmds_http_handle(m, c->rx, c->rx_len, now_ms, &used,
							   &c->resp);
		if (r == MMDS_HTTP_RESET || (r == MMDS_HTTP_RESPONSE &&
					     (c->resp.failed || !used || used > c->rx_len ||
					      c->resp.len > MMDS_CONN_MAX_RESPONSE))) {
			mmds_buf_reset(&c->resp);
			mmds_conn_reset(c);
			return;
		}
		if (r == MMDS_HTTP_RESPONSE) {
			memmove(c->rx, c->rx + used, c->rx_len - used);
			c->rx_len -= used;
			c->resp_seq = c->snd_max;
			/* A shut window reopens: say so even with nothing to send. */
			if (window_shut)
				c->ack_pending = true;
		}
	}
	if (c->fin_rcvd && !c->resp.len) {
		c->closing = true;
		c->fin_seq = c->snd_max;
	}
}

static unsigned rx_ack(struct mmds_conn *c, const struct mmds_tcp_in *s, uint64_t now_ms)
{
	if (seq_lt(c->snd_max, s->ack)) {
		/* Acknowledges what was never sent: answer with an ACK, drop it. */
		c->ack_pending = true;
		return MMDS_CONN_UNUSUAL;
	}
	unsigned ev = 0;
	if (seq_lt(c->snd_una, s->ack)) {
		c->snd_una = s->ack;
		c->rto_count = 0;
		c->rto_start = now_ms;
		c->dup_ack = false;
		if (seq_lt(c->snd_nxt, c->snd_una))
			c->snd_nxt = c->snd_una;
		if (c->resp.len && seq_le(c->resp_seq + (uint32_t)c->resp.len, c->snd_una))
			mmds_buf_reset(&c->resp);
	} else if (s->ack == c->snd_una && c->snd_una != c->snd_max && !s->len &&
		   !(s->flags & MMDS_TCP_FIN) && s->window == c->last_wnd) {
		/* A duplicate ACK (RFC 5681's definition): like Firecracker,
		 * resend the first unacknowledged segment on the first one. */
		c->dup_ack = true;
		ev |= MMDS_CONN_UNUSUAL;
	}
	if (!seq_lt(s->ack, c->snd_una)) {
		c->snd_edge = s->ack + s->window;
		c->last_wnd = s->window;
	}
	return ev;
}

static unsigned rx_data(struct mmds_conn *c, const struct mmds_tcp_in *s)
{
	bool fin = s->flags & MMDS_TCP_FIN;
	if (!s->len && !fin)
		return 0;
	/* Whatever comes, the guest hears where we are. */
	c->ack_pending = true;
	const uint8_t *d = s->data;
	size_t len = s->len;
	uint32_t seq = s->seq;
	if (seq_lt(seq, c->rcv_nxt)) {
		/* Skip what we have; wholly old (FIN included) is dropped. */
		uint32_t have = c->rcv_nxt - seq;
		if (have > len)
			return MMDS_CONN_UNUSUAL;
		d += have;
		len -= have;
		seq = c->rcv_nxt;
	}
	if (seq != c->rcv_nxt)
		return MMDS_CONN_UNUSUAL; /* out of order: dropped, re-ACKed */
	if (c->fin_rcvd)
		return len ? MMDS_CONN_UNUSUAL : 0; /* data after the FIN */
	unsigned ev = 0;
	size_t take = len < rx_window(c) ? len : rx_window(c);
	if (take < len) {
		/* Beyond the window: keep what fits; the rest and any FIN
		 * come again. */
		ev |= MMDS_CONN_UNUSUAL;
		fin = false;
	}
	memcpy(c->rx + c->rx_len, d, take);
	c->rx_len += take;
	c->rcv_nxt += (uint32_t)take;
	if (fin) {
		c->fin_rcvd = true;
		c->rcv_nxt++;
	}
	return ev;
}

unsigned mmds_conn_rx(struct mmds_conn *c, const struct mmds_tcp_in *s, struct mmds *m,
		      uint64_t now_ms)
{
	c->last_rx = now_ms;
	if (c->rst_pending)
		return 0;
	if (s->flags & MMDS_TCP_RST) {
		if (!rst_acceptable(c, s->seq))
			return MMDS_CONN_UNUSUAL;
		c->dead = true;
		return 0;
	}
	if (s->flags & MMDS_TCP_SYN) {
		if (c->state == MMDS_CONN_SYN_RCVD && s->seq == c->irs && !(s->flags & MMDS_TCP_ACK)) {
			/* The SYN again: our SYN-ACK was lost or is late. */
			c->synack_sent = false;
			return 0;
		}
		reset_for(c, s);
		return MMDS_CONN_UNUSUAL;
	}
	if (!(s->flags & MMDS_TCP_ACK))
		return 0; /* RFC 793: without ACK, nothing more to look at */
	unsigned ev = 0;
	if (c->state == MMDS_CONN_SYN_RCVD) {
		if (c->snd_max != c->iss + 1 || s->ack != c->snd_max) {
			reset_for(c, s);
			return MMDS_CONN_UNUSUAL;
		}
		c->state = MMDS_CONN_ESTABLISHED;
		c->snd_una = c->snd_nxt = s->ack;
		c->rto_count = 0;
		c->snd_edge = s->ack + s->window;
		c->last_wnd = s->window;
	} else {
		ev |= rx_ack(c, s, now_ms);
		if (seq_lt(c->snd_max, s->ack))
			return ev;
	}
	ev |= rx_data(c, s);
	serve(c, m, now_ms);
	if (c->fin_rcvd && c->closing && c->snd_una == c->fin_seq + 1)
		c->dead = true; /* both FINs sent and acknowledged */
	return ev;
}

static bool rto_expired(const struct mmds_conn *c, uint64_t now_ms)
{
	return now_ms >= c->rto_start + MMDS_CONN_RTO_MS;
}

static bool in_flight(const struct mmds_conn *c)
{
	return c->snd_una != c->snd_max;
}

/* Response bytes from seq on that the guest's window lets us send. */
static size_t sendable(const struct mmds_conn *c, uint32_t seq)
{
	if (!c->resp.len)
		return 0;
	uint32_t end = c->resp_seq + (uint32_t)c->resp.len;
	if (!seq_lt(seq, end) || !seq_lt(seq, c->snd_edge) || seq_lt(seq, c->resp_seq))
		return 0;
	uint32_t n = end - seq, room = c->snd_edge - seq;
	return n < room ? n : room;
}

static bool fin_due_at(const struct mmds_conn *c, uint32_t seq)
{
	return c->closing && seq == c->fin_seq;
}

bool mmds_conn_ready(const struct mmds_conn *c, uint64_t now_ms)
{
	if (c->state == MMDS_CONN_FREE || c->dead)
		return false;
	if (c->rst_pending)
		return true;
	if (c->state == MMDS_CONN_SYN_RCVD)
		return !c->synack_sent || rto_expired(c, now_ms);
	if (in_flight(c) && rto_expired(c, now_ms))
		return true;
	if (c->ack_pending)
		return true;
	if (c->dup_ack && (sendable(c, c->snd_una) || fin_due_at(c, c->snd_una)))
		return true;
	return sendable(c, c->snd_nxt) || fin_due_at(c, c->snd_nxt);
}

uint64_t mmds_conn_deadline(const struct mmds_conn *c)
{
	if (c->state == MMDS_CONN_FREE || c->dead)
		return UINT64_MAX;
	if (c->rst_pending)
		return 0;
	if ((c->state == MMDS_CONN_SYN_RCVD && c->synack_sent) ||
	    (c->state == MMDS_CONN_ESTABLISHED && in_flight(c)))
		return c->rto_start + MMDS_CONN_RTO_MS;
	return UINT64_MAX;
}

static void out_init(const struct mmds_conn *c, struct mmds_tcp_out *o, const uint8_t *mac,
		     uint32_t ip)
{
	*o = (struct mmds_tcp_out){
		.src_mac = mac,
		.dst_mac = c->mac,
		.src_ip = ip,
		.dst_ip = c->ip,
		.src_port = MMDS_NET_PORT,
		.dst_port = c->port,
		.ack = c->rcv_nxt,
		.window = (uint16_t)rx_window(c),
		.flags = MMDS_TCP_ACK,
	};
}

static size_t tx_rst(struct mmds_conn *c, uint8_t *buf, size_t cap, struct mmds_tcp_out *o)
{
	o->seq = c->rst_seq;
	o->ack = c->rst_ack;
	o->flags = c->rst_flags;
	o->window = 0;
	size_t n = mmds_tcp_write(buf, cap, o, NULL, 0);
	if (n)
		c->dead = true;
	return n;
}

static size_t tx_synack(struct mmds_conn *c, uint8_t *buf, size_t cap, struct mmds_tcp_out *o,
			uint64_t now_ms)
{
	o->seq = c->iss;
	o->flags = MMDS_TCP_SYN | MMDS_TCP_ACK;
	o->mss = c->mss; /* Firecracker offers the guest's own MSS back */
	size_t n = mmds_tcp_write(buf, cap, o, NULL, 0);
	if (!n)
		return 0;
	c->synack_sent = true;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->rto_start = now_ms;
	return n;
}

/* One segment from seq: as much data as the MSS, the window and cap allow,
 * with the FIN if it is due there; or, if bare_ok, a bare ACK. 0 if there is
 * nothing. */
static size_t tx_segment(struct mmds_conn *c, uint8_t *buf, size_t cap, struct mmds_tcp_out *o,
			 uint32_t seq, bool bare_ok, size_t *used)
{
	size_t n = sendable(c, seq);
	if (n > c->mss)
		n = c->mss;
	size_t room = cap > MMDS_TCP_FRAME_HLEN ? cap - MMDS_TCP_FRAME_HLEN : 0;
	if (n > room)
		n = room;
	bool fin = !n && fin_due_at(c, seq);
	bool bare = !n && !fin;
	if (bare && (!bare_ok || !c->ack_pending))
		return 0;
	/* A bare ACK carries the highest sequence sent: below what the guest
	 * has received it would look old and be dropped, window and all. */
	o->seq = bare ? c->snd_max : seq;
	if (fin)
		o->flags |= MMDS_TCP_FIN;
	if (n && seq + (uint32_t)n == c->resp_seq + (uint32_t)c->resp.len)
		o->flags |= MMDS_TCP_PSH;
	const uint8_t *data = n ? (const uint8_t *)c->resp.data + (seq - c->resp_seq) : NULL;
	size_t len = mmds_tcp_write(buf, cap, o, data, n);
	if (len) {
		c->ack_pending = false;
		*used = n + fin;
	}
	return len;
}

/* Bookkeeping after a segment of used sequence numbers went out at seq. */
static void sent(struct mmds_conn *c, uint32_t seq, size_t used, bool retransmit,
		 uint64_t now_ms)
{
	uint32_t end = seq + (uint32_t)used;
	/* The timer runs from the first unacknowledged segment, and again
	 * from each retransmission. */
	if (retransmit || !in_flight(c))
		c->rto_start = now_ms;
	if (seq_lt(c->snd_nxt, end))
		c->snd_nxt = end;
	if (seq_lt(c->snd_max, end))
		c->snd_max = end;
}

size_t mmds_conn_tx(struct mmds_conn *c, uint8_t *buf, size_t cap, const uint8_t *mac,
		    uint32_t ip, uint64_t now_ms)
{
	if (c->state == MMDS_CONN_FREE || c->dead)
		return 0;
	struct mmds_tcp_out o;
	out_init(c, &o, mac, ip);
	if (c->rst_pending)
		return tx_rst(c, buf, cap, &o);
	bool expired = rto_expired(c, now_ms);
	if (c->state == MMDS_CONN_SYN_RCVD) {
		if (c->synack_sent && !expired)
			return 0;
		if (c->synack_sent && ++c->rto_count >= MMDS_CONN_RTO_MAX) {
			mmds_conn_reset(c);
			return tx_rst(c, buf, cap, &o);
		}
		return tx_synack(c, buf, cap, &o, now_ms);
	}
	bool retransmit = false;
	if (in_flight(c) && expired) {
		if (++c->rto_count >= MMDS_CONN_RTO_MAX) {
			mmds_conn_reset(c);
			return tx_rst(c, buf, cap, &o);
		}
		/* Go back: everything unacknowledged goes again. */
		c->snd_nxt = c->snd_una;
		c->dup_ack = false;
		c->rto_start = now_ms; /* even if the window lets nothing out */
		retransmit = true;
	}
	size_t used = 0, len = 0;
	uint32_t seq = c->snd_una;
	if (c->dup_ack) {
		c->dup_ack = false;
		len = tx_segment(c, buf, cap, &o, seq, false, &used);
		retransmit = len != 0;
	}
	if (!len) {
		seq = c->snd_nxt;
		len = tx_segment(c, buf, cap, &o, seq, true, &used);
	}
	if (len && used)
		sent(c, seq, used, retransmit, now_ms);
	return len;
}
