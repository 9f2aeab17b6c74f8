#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mmds/json.h"
#include "mmds/netstack.h"

/* The fake guest below builds and reads frames with its own code (not
 * net_wire.c), so a shared mistake cannot hide. */

#define MMDS_IP 0xa9fea9feu /* 169.254.169.254 */
#define GUEST_IP 0x0a000002u
#define T0 1000000
#define BIG_LEN 6000

static const uint8_t guest_mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
static const uint8_t mmds_mac[6] = MMDS_NET_MAC;
static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

enum { FIN = 1, SYN = 2, RST = 4, PSH = 8, ACK = 16 };

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

/* RFC 1071, the plain way. */
static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sum += i & 1 ? p[i] : (uint32_t)p[i] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t pseudo(uint32_t src, uint32_t dst, size_t len)
{
	uint8_t p[12];
	put32(p, src);
	put32(p + 4, dst);
	p[8] = 0;
	p[9] = 6;
	put16(p + 10, (uint32_t)len);
	return sum16(0, p, 12);
}

struct env {
	struct mmds *m;
	struct mmds_stack *s;
	struct mmds_metrics met;
	uint64_t now;
};

/* One guest connection's view. */
struct guest {
	struct env *e;
	uint16_t port;
	uint32_t seq, ack; /* next to send; next expected from MMDS */
	uint16_t win, mss;
	uint32_t ip;
};

/* A frame from MMDS, taken apart and checked. */
struct seg {
	uint8_t f[70000];
	size_t flen;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t window, mss, dport;
	const uint8_t *data;
	size_t len;
};

static uint64_t count(struct metric_inc *m)
{
	return metric_count(m);
}

static struct env *env_new(enum mmds_version v)
{
	struct env *e = calloc(1, sizeof(*e));
	e->m = malloc(sizeof(*e->m));
	mmds_init(e->m, MMDS_DEFAULT_SIZE_LIMIT);
	e->m->version = v;
	char *big = malloc(BIG_LEN + 1);
	for (size_t i = 0; i < BIG_LEN; i++)
		big[i] = (char)('a' + i % 26);
	big[BIG_LEN] = '\0';
	json_t *j = json_pack("{s:{s:s,s:s},s:s}", "name", "first", "John", "second", "Doe",
			      "big", big);
	free(big);
	assert_int_equal(mmds_store_put(&e->m->store, j, NULL), 0);
	json_decref(j);
	e->s = malloc(sizeof(*e->s));
	mmds_stack_init(e->s, e->m, MMDS_IP, &e->met, 42);
	e->now = T0;
	return e;
}

static void env_free(struct env *e)
{
	mmds_stack_free(e->s);
	free(e->s);
	mmds_free(e->m);
	free(e->m);
	free(e);
}

static size_t eth(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, type);
	return 14;
}

/* A TCP/IPv4 frame from the guest, with correct checksums. */
static size_t tcp_frame(uint8_t *f, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
			uint32_t seq, uint32_t ack, uint8_t flags, uint16_t win, uint16_t mss,
			const void *data, size_t len)
{
	size_t thl = mss ? 24 : 20;
	size_t n = eth(f, mmds_mac, 0x0800);
	uint8_t *ip = f + n, *t = ip + 20;
	memset(ip, 0, 20 + thl);
	ip[0] = 0x45;
	put16(ip + 2, (uint32_t)(20 + thl + len));
	put16(ip + 4, 7);
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = 6;
	put32(ip + 12, src);
	put32(ip + 16, dst);
	put16(ip + 10, fold(sum16(0, ip, 20)));
	put16(t, sport);
	put16(t + 2, dport);
	put32(t + 4, seq);
	put32(t + 8, ack);
	t[12] = (uint8_t)(thl / 4 << 4);
	t[13] = flags;
	put16(t + 14, win);
	if (mss) {
		t[20] = 2;
		t[21] = 4;
		put16(t + 22, mss);
	}
	if (len)
		memcpy(t + thl, data, len);
	put16(t + 16, fold(sum16(pseudo(src, dst, thl + len), t, thl + len)));
	return n + 20 + thl + len;
}

static size_t arp_frame(uint8_t *f, uint16_t op, uint32_t spa, uint32_t tpa)
{
	size_t n = eth(f, bcast, 0x0806);
	uint8_t *a = f + n;
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, guest_mac, 6);
	put32(a + 14, spa);
	memset(a + 18, 0, 6);
	put32(a + 24, tpa);
	return n + 28;
}

static struct guest guest_new(struct env *e, uint16_t port)
{
	return (struct guest){e, port, 1000u * port, 0, 8192, 1460, GUEST_IP};
}

/* Sends a segment; returns whether MMDS took the frame. */
static bool g_send_raw(struct guest *g, uint32_t seq, uint8_t flags, const void *data, size_t len)
{
	uint8_t f[4000];
	size_t n = tcp_frame(f, g->ip, MMDS_IP, g->port, 80, seq, g->ack, flags, g->win,
			     flags & SYN ? g->mss : 0, data, len);
	return mmds_stack_rx(g->e->s, f, n, g->e->now);
}

static void g_send(struct guest *g, uint8_t flags, const void *data, size_t len)
{
	assert_true(g_send_raw(g, g->seq, flags, data, len));
	g->seq += (uint32_t)len + !!(flags & SYN) + !!(flags & FIN);
}

/* The next frame from MMDS must be a TCP segment to this guest: checks
 * addresses and both checksums. False when nothing is pending. */
static bool g_recv(struct guest *g, struct seg *s)
{
	bool pending = mmds_stack_pending(g->e->s, g->e->now);
	s->flen = mmds_stack_tx(g->e->s, s->f, sizeof(s->f), g->e->now);
	assert_int_equal(pending, s->flen != 0);
	if (!s->flen)
		return false;
	const uint8_t *f = s->f;
	assert_true(s->flen >= 54);
	assert_memory_equal(f, guest_mac, 6);
	assert_memory_equal(f + 6, mmds_mac, 6);
	assert_int_equal(get16(f + 12), 0x0800);
	const uint8_t *ip = f + 14;
	assert_int_equal(ip[0], 0x45);
	assert_int_equal(get16(ip + 2), s->flen - 14);
	assert_int_equal(ip[9], 6);
	assert_int_equal(fold(sum16(0, ip, 20)), 0);
	assert_int_equal(get32(ip + 12), MMDS_IP);
	assert_int_equal(get32(ip + 16), g->ip);
	const uint8_t *t = ip + 20;
	size_t tlen = s->flen - 34;
	assert_int_equal(fold(sum16(pseudo(MMDS_IP, g->ip, tlen), t, tlen)), 0);
	assert_int_equal(get16(t), 80);
	s->dport = get16(t + 2);
	s->seq = get32(t + 4);
	s->ack = get32(t + 8);
	size_t thl = (size_t)(t[12] >> 4) * 4;
	s->flags = t[13];
	s->window = get16(t + 14);
	s->mss = thl == 24 && t[20] == 2 ? get16(t + 22) : 0;
	s->data = t + thl;
	s->len = tlen - thl;
	return true;
}

static void g_expect_nothing(struct guest *g)
{
	struct seg *s = malloc(sizeof(*s));
	assert_false(g_recv(g, s));
	free(s);
}

/* SYN, SYN-ACK, ACK. */
static void g_connect(struct guest *g)
{
	struct seg *s = malloc(sizeof(*s));
	g_send(g, SYN, NULL, 0);
	assert_true(g_recv(g, s));
	assert_int_equal(s->dport, g->port);
	assert_int_equal(s->flags, SYN | ACK);
	assert_int_equal(s->ack, g->seq);
	assert_int_equal(s->mss, g->mss);
	assert_int_equal(s->window, MMDS_HTTP_MAX_REQUEST);
	g->ack = s->seq + 1;
	g_send(g, ACK, NULL, 0);
	g_expect_nothing(g);
	free(s);
}

/* Reads the response to what was sent, ACKing every segment, until the
 * HTTP message is complete. Returns it, malloc'd and NUL-terminated. */
static char *g_read_response(struct guest *g)
{
	struct seg *s = malloc(sizeof(*s));
	char *out = calloc(1, 100000);
	size_t have = 0;
	for (;;) {
		assert_true(g_recv(g, s));
		assert_int_equal(s->seq, g->ack);
		assert_true(s->flags & ACK);
		assert_false(s->flags & (SYN | RST));
		assert_true(s->len <= g->mss);
		memcpy(out + have, s->data, s->len);
		have += s->len;
		g->ack += (uint32_t)s->len;
		g_send(g, ACK, NULL, 0);
		const char *end = strstr(out, "\r\n\r\n");
		const char *cl = strstr(out, "Content-Length: ");
		if (end && cl && have >= (size_t)(end + 4 - out) + strtoul(cl + 16, NULL, 10))
			break;
	}
	free(s);
	return out;
}

static char *g_get(struct guest *g, const char *req)
{
	g_send(g, ACK | PSH, req, strlen(req));
	return g_read_response(g);
}

static const char *body(const char *resp)
{
	return strstr(resp, "\r\n\r\n") + 4;
}

/* Guest FIN, MMDS's FIN, guest's last ACK: the connection is gone. */
static void g_close(struct guest *g)
{
	struct seg *s = malloc(sizeof(*s));
	g_send(g, FIN | ACK, NULL, 0);
	assert_true(g_recv(g, s));
	assert_int_equal(s->flags, FIN | ACK);
	assert_int_equal(s->ack, g->seq);
	assert_int_equal(s->seq, g->ack);
	g->ack++;
	g_send(g, ACK, NULL, 0);
	g_expect_nothing(g);
	free(s);
}

static size_t live_conns(const struct env *e)
{
	size_t n = 0;
	for (size_t i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++)
		n += e->s->conn[i].state != MMDS_CONN_FREE;
	return n;
}

static void arp(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	uint8_t f[64], out[1514];
	size_t n = arp_frame(f, 1, GUEST_IP, MMDS_IP);
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_true(mmds_stack_pending(e->s, e->now));
	size_t len = mmds_stack_tx(e->s, out, sizeof(out), e->now);
	assert_int_equal(len, 42);
	assert_memory_equal(out, guest_mac, 6);
	assert_memory_equal(out + 6, mmds_mac, 6);
	assert_int_equal(get16(out + 12), 0x0806);
	const uint8_t *a = out + 14;
	assert_int_equal(get16(a), 1);
	assert_int_equal(get16(a + 2), 0x0800);
	assert_int_equal(a[4], 6);
	assert_int_equal(a[5], 4);
	assert_int_equal(get16(a + 6), 2);
	assert_memory_equal(a + 8, mmds_mac, 6);
	assert_int_equal(get32(a + 14), MMDS_IP);
	assert_memory_equal(a + 18, guest_mac, 6);
	assert_int_equal(get32(a + 24), GUEST_IP);
	assert_false(mmds_stack_pending(e->s, e->now));
	assert_int_equal(mmds_stack_tx(e->s, out, sizeof(out), e->now), 0);
	assert_int_equal(count(&e->met.rx_accepted), 1);
	assert_int_equal(count(&e->met.tx_frames), 1);
	assert_int_equal(count(&e->met.tx_bytes), 42);

	/* For another address: not MMDS's. */
	n = arp_frame(f, 1, GUEST_IP, 0x0a000001);
	assert_false(mmds_stack_rx(e->s, f, n, e->now));
	/* A reply about the MMDS address: taken, not answered. */
	n = arp_frame(f, 2, GUEST_IP, MMDS_IP);
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_false(mmds_stack_pending(e->s, e->now));
	assert_int_equal(count(&e->met.rx_accepted_unusual), 1);
	/* Not Ethernet/IPv4 ARP: taken, counted as an error. */
	n = arp_frame(f, 1, GUEST_IP, MMDS_IP);
	f[14 + 4] = 8;
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_false(mmds_stack_pending(e->s, e->now));
	assert_int_equal(count(&e->met.rx_accepted_err), 1);
	/* Two requests: only the latest is answered. */
	n = arp_frame(f, 1, 0x0a000009, MMDS_IP);
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	n = arp_frame(f, 1, GUEST_IP, MMDS_IP);
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_int_equal(mmds_stack_tx(e->s, out, sizeof(out), e->now), 42);
	assert_int_equal(get32(out + 14 + 24), GUEST_IP);
	assert_int_equal(mmds_stack_tx(e->s, out, sizeof(out), e->now), 0);
	env_free(e);
}

static void get_v1(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40000);
	g_connect(&g);
	assert_int_equal(count(&e->met.connections_created), 1);
	char *r = g_get(&g, "GET /name/first HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200 \r\n"));
	assert_string_equal(body(r), "John");
	free(r);
	/* Keep-alive: a second request on the same connection. */
	r = g_get(&g, "GET /name/ HTTP/1.1\r\n\r\n");
	assert_string_equal(body(r), "first\nsecond");
	free(r);
	g_close(&g);
	assert_int_equal(live_conns(e), 0);
	assert_int_equal(count(&e->met.connections_destroyed), 1);
	assert_int_equal(count(&e->met.rx_accepted_err), 0);
	assert_int_equal(count(&e->met.rx_accepted_unusual), 0);
	/* A late segment for the closed connection gets a RST. */
	struct seg *s = malloc(sizeof(*s));
	g_send(&g, ACK, NULL, 0);
	assert_true(g_recv(&g, s));
	assert_int_equal(s->flags, RST);
	assert_int_equal(s->seq, g.ack);
	free(s);
	env_free(e);
}

static void guest_closes_with_request(void **state)
{
	(void)state;
	/* Request and FIN together, and a second request pipelined: both
	 * answered, then MMDS closes. */
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40001);
	g_connect(&g);
	const char *two = "GET /name/first HTTP/1.1\r\n\r\nGET /name/second HTTP/1.0\r\n\r\n";
	g_send(&g, ACK | PSH | FIN, two, strlen(two));
	struct seg *s = malloc(sizeof(*s));
	char *r = g_read_response(&g);
	assert_string_equal(body(r), "John");
	free(r);
	r = g_read_response(&g);
	assert_non_null(strstr(r, "HTTP/1.0 200 \r\n"));
	assert_string_equal(body(r), "Doe");
	free(r);
	/* The last ACK above let MMDS close. */
	assert_true(g_recv(&g, s));
	assert_int_equal(s->flags, FIN | ACK);
	assert_int_equal(s->ack, g.seq);
	g.ack++;
	g_send(&g, ACK, NULL, 0);
	assert_int_equal(live_conns(e), 0);
	free(s);
	env_free(e);
}

static void v2_token(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V2);
	struct guest g = guest_new(e, 40002);
	g_connect(&g);
	char *r = g_get(&g, "GET /name/first HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 401 \r\n"));
	free(r);
	r = g_get(&g, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200 \r\n"));
	char token[MMDS_TOKEN_LEN + 1];
	assert_int_equal(strlen(body(r)), MMDS_TOKEN_LEN);
	memcpy(token, body(r), sizeof(token));
	free(r);
	char req[256];
	snprintf(req, sizeof(req), "GET /name/first HTTP/1.1\r\nX-metadata-token: %s\r\n\r\n",
		 token);
	r = g_get(&g, req);
	assert_string_equal(body(r), "John");
	free(r);
	/* On another connection too, and not after it expires. */
	struct guest h = guest_new(e, 40003);
	g_connect(&h);
	r = g_get(&h, req);
	assert_string_equal(body(r), "John");
	free(r);
	e->now += 61000;
	r = g_get(&h, req);
	assert_non_null(strstr(r, "HTTP/1.1 401 \r\n"));
	free(r);
	env_free(e);
}

static void small_window(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40004);
	g.win = 700;
	g.mss = 500;
	g_connect(&g);
	const char *req = "GET /big HTTP/1.1\r\n\r\n";
	g_send(&g, ACK | PSH, req, strlen(req));
	struct seg *s = malloc(sizeof(*s));
	char *resp = calloc(1, 20000);
	size_t have = 0;
	size_t segs = 0;
	for (;;) {
		/* Everything the window allows, without ACKing. */
		size_t burst = 0;
		while (g_recv(&g, s)) {
			assert_int_equal(s->seq, g.ack + burst);
			assert_true(s->len <= g.mss);
			assert_true(s->len > 0);
			memcpy(resp + have + burst, s->data, s->len);
			burst += s->len;
			segs++;
		}
		assert_true(burst <= g.win);
		if (!burst)
			break;
		have += burst;
		g.ack += (uint32_t)burst;
		g_send(&g, ACK, NULL, 0);
	}
	assert_true(segs >= 2 * (BIG_LEN / 700));
	const char *b = body(resp);
	assert_int_equal(strlen(b), BIG_LEN);
	for (size_t i = 0; i < BIG_LEN; i++)
		assert_int_equal(b[i], 'a' + i % 26);
	/* A shut window: nothing goes, nothing is armed; opening it resumes. */
	g.win = 0;
	g_send(&g, ACK | PSH, req, strlen(req));
	assert_true(g_recv(&g, s)); /* the ACK of the request */
	assert_int_equal(s->len, 0);
	g_expect_nothing(&g);
	assert_int_equal(mmds_stack_deadline(e->s), UINT64_MAX);
	e->now += 5000;
	g_expect_nothing(&g);
	g.win = 1000;
	g_send(&g, ACK, NULL, 0);
	assert_true(g_recv(&g, s));
	assert_int_equal(s->seq, g.ack);
	assert_int_equal(s->len, g.mss);
	free(resp);
	free(s);
	env_free(e);
}

static void retransmission(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40005);
	struct seg *s = malloc(sizeof(*s)), *s2 = malloc(sizeof(*s2));
	/* The SYN-ACK, unanswered, comes again after the timeout. */
	g_send(&g, SYN, NULL, 0);
	assert_true(g_recv(&g, s));
	assert_int_equal(s->flags, SYN | ACK);
	assert_int_equal(mmds_stack_deadline(e->s), e->now + MMDS_CONN_RTO_MS);
	e->now += MMDS_CONN_RTO_MS - 1;
	g_expect_nothing(&g);
	e->now += 1;
	assert_true(g_recv(&g, s2));
	assert_int_equal(s2->flags, SYN | ACK);
	assert_int_equal(s2->seq, s->seq);
	g.ack = s->seq + 1;
	g_send(&g, ACK, NULL, 0);
	assert_int_equal(mmds_stack_deadline(e->s), UINT64_MAX);

	/* Data not acknowledged goes again, the same bytes. */
	const char *req = "GET /name/first HTTP/1.1\r\n\r\n";
	g_send(&g, ACK | PSH, req, strlen(req));
	assert_true(g_recv(&g, s));
	assert_true(s->len > 0);
	g_expect_nothing(&g);
	e->now += MMDS_CONN_RTO_MS;
	assert_true(g_recv(&g, s2));
	assert_int_equal(s2->seq, s->seq);
	assert_int_equal(s2->len, s->len);
	assert_memory_equal(s2->data, s->data, s->len);
	g_expect_nothing(&g);
	/* A duplicate ACK also brings it back, at once. */
	g_send(&g, ACK, NULL, 0);
	assert_true(g_recv(&g, s2));
	assert_int_equal(s2->seq, s->seq);
	assert_int_equal(s2->len, s->len);
	/* Never acknowledged: after MMDS_CONN_RTO_MAX timeouts, a RST. */
	int resent = 0;
	for (int i = 0; i < 100; i++) {
		e->now += MMDS_CONN_RTO_MS;
		assert_true(g_recv(&g, s2));
		if (s2->flags & RST)
			break;
		resent++;
	}
	assert_int_equal(resent, MMDS_CONN_RTO_MAX - 2);
	assert_int_equal(s2->flags, RST | ACK);
	assert_int_equal(s2->seq, s->seq + s->len);
	assert_int_equal(live_conns(e), 0);
	assert_int_equal(count(&e->met.connections_destroyed), 1);
	free(s);
	free(s2);
	env_free(e);
}

static void table_full(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g[MMDS_NET_MAX_CONNECTIONS + 1];
	for (int i = 0; i <= MMDS_NET_MAX_CONNECTIONS; i++)
		g[i] = guest_new(e, (uint16_t)(30000 + i));
	for (int i = 0; i < MMDS_NET_MAX_CONNECTIONS; i++) {
		g_connect(&g[i]);
		e->now += 10;
	}
	struct seg *s = malloc(sizeof(*s));
	struct guest *last = &g[MMDS_NET_MAX_CONNECTIONS];
	g_send(last, SYN, NULL, 0);
	assert_true(g_recv(last, s));
	assert_int_equal(s->dport, last->port);
	/* The RST acknowledges the SYN, so the guest's connect() fails. */
	assert_int_equal(s->flags, RST | ACK);
	assert_int_equal(s->ack, last->seq);
	g_expect_nothing(last);
	assert_int_equal(live_conns(e), MMDS_NET_MAX_CONNECTIONS);
	/* The others still work. */
	char *r = g_get(&g[5], "GET /name/first HTTP/1.1\r\n\r\n");
	assert_string_equal(body(r), "John");
	free(r);
	/* Once the first is idle long enough, it makes room (and gets a RST). */
	e->now = T0 + MMDS_NET_EVICT_MS;
	last->seq--;
	g_send(last, SYN, NULL, 0);
	assert_true(g_recv(&g[0], s));
	assert_int_equal(s->dport, g[0].port);
	assert_int_equal(s->flags, RST | ACK);
	assert_int_equal(s->seq, g[0].ack);
	assert_true(g_recv(last, s));
	assert_int_equal(s->dport, last->port);
	assert_int_equal(s->flags, SYN | ACK);
	assert_int_equal(count(&e->met.connections_created), MMDS_NET_MAX_CONNECTIONS + 1);
	assert_int_equal(count(&e->met.connections_destroyed), 1);
	free(s);
	env_free(e);
}

static void bad_checksums(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	uint8_t f[200];
	size_t n = tcp_frame(f, GUEST_IP, MMDS_IP, 40006, 80, 1, 0, SYN, 1000, 1460, NULL, 0);
	/* IPv4 header checksum. */
	f[14 + 10] ^= 1;
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_false(mmds_stack_pending(e->s, e->now));
	assert_int_equal(count(&e->met.rx_accepted_err), 1);
	f[14 + 10] ^= 1;
	/* TCP checksum. */
	f[34 + 16] ^= 0x80;
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_false(mmds_stack_pending(e->s, e->now));
	assert_int_equal(count(&e->met.rx_accepted_err), 2);
	assert_int_equal(count(&e->met.rx_count), 0);
	/* Left to an offload (VIRTIO_NET_HDR_F_NEEDS_CSUM): not checked. */
	assert_true(mmds_stack_rx_flags(e->s, f, n, MMDS_NET_RX_CSUM_PARTIAL, e->now));
	assert_true(mmds_stack_pending(e->s, e->now));
	assert_int_equal(count(&e->met.rx_count), 1);
	assert_int_equal(live_conns(e), 1);
	/* The IPv4 checksum is the guest's job even with offloads. */
	f[14 + 10] ^= 1;
	assert_true(mmds_stack_rx_flags(e->s, f, n, MMDS_NET_RX_CSUM_PARTIAL, e->now));
	assert_int_equal(count(&e->met.rx_accepted_err), 3);
	assert_int_equal(count(&e->met.rx_accepted), 4);
	env_free(e);
}

static void not_for_mmds(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	uint8_t f[200];
	size_t n = tcp_frame(f, GUEST_IP, 0x0a000001, 40007, 80, 1, 0, SYN, 1000, 0, NULL, 0);
	assert_false(mmds_stack_rx(e->s, f, n, e->now));
	/* IPv6, and a VLAN tag before IPv4 to MMDS. */
	n = tcp_frame(f, GUEST_IP, MMDS_IP, 40007, 80, 1, 0, SYN, 1000, 0, NULL, 0);
	put16(f + 12, 0x86dd);
	assert_false(mmds_stack_rx(e->s, f, n, e->now));
	put16(f + 12, 0x8100);
	assert_false(mmds_stack_rx(e->s, f, n, e->now));
	/* A frame a byte too short for an IPv4 header. */
	n = tcp_frame(f, GUEST_IP, MMDS_IP, 40007, 80, 1, 0, SYN, 1000, 0, NULL, 0);
	assert_false(mmds_stack_rx(e->s, f, 33, e->now));
	assert_int_equal(count(&e->met.rx_accepted), 0);
	assert_false(mmds_stack_pending(e->s, e->now));
	/* To MMDS but not TCP port 80: taken (Firecracker lets nothing for
	 * the MMDS address through), dropped, no RST. */
	n = tcp_frame(f, GUEST_IP, MMDS_IP, 40007, 443, 1, 0, SYN, 1000, 0, NULL, 0);
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_int_equal(count(&e->met.rx_accepted_err), 1);
	n = tcp_frame(f, GUEST_IP, MMDS_IP, 40007, 80, 1, 0, SYN, 1000, 0, NULL, 0);
	f[14 + 9] = 17; /* UDP */
	f[14 + 10] = f[14 + 11] = 0;
	put16(f + 14 + 10, fold(sum16(0, f + 14, 20)));
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_int_equal(count(&e->met.rx_accepted_unusual), 1);
	assert_false(mmds_stack_pending(e->s, e->now));
	/* Sent to any destination MAC, as Firecracker: still MMDS's. */
	n = tcp_frame(f, GUEST_IP, MMDS_IP, 40007, 80, 1, 0, SYN, 1000, 0, NULL, 0);
	memset(f, 0x02, 6);
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_true(mmds_stack_pending(e->s, e->now));
	/* From a multicast source MAC: taken, nobody to answer. */
	n = tcp_frame(f, GUEST_IP, MMDS_IP, 40008, 80, 1, 0, SYN, 1000, 0, NULL, 0);
	f[6] |= 1;
	assert_true(mmds_stack_rx(e->s, f, n, e->now));
	assert_int_equal(count(&e->met.rx_bad_eth), 1);
	assert_int_equal(live_conns(e), 1);
	env_free(e);
}

static void fragments(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	uint8_t f[200];
	static const uint16_t frag[] = {0x2000, 0x0001, 0x2010, 0x4001};
	for (size_t i = 0; i < sizeof(frag) / sizeof(frag[0]); i++) {
		size_t n = tcp_frame(f, GUEST_IP, MMDS_IP, 40009, 80, 1, 0, SYN, 1000, 0, NULL, 0);
		put16(f + 14 + 6, frag[i]);
		f[14 + 10] = f[14 + 11] = 0;
		put16(f + 14 + 10, fold(sum16(0, f + 14, 20)));
		assert_true(mmds_stack_rx(e->s, f, n, e->now));
	}
	assert_int_equal(count(&e->met.rx_accepted_unusual), 4);
	assert_false(mmds_stack_pending(e->s, e->now));
	assert_int_equal(live_conns(e), 0);
	env_free(e);
}

/* Every prefix of a valid frame: no crash, no answer, no connection, and
 * taken exactly when the MMDS address is there to be read. */
static void truncated(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	uint8_t f[200];
	size_t n = tcp_frame(f, GUEST_IP, MMDS_IP, 40010, 80, 1, 0, SYN, 1000, 1460, NULL, 0);
	for (size_t len = 0; len < n; len++) {
		/* A copy exactly len long, so ASan sees any read past it. */
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, f, len);
		assert_int_equal(mmds_stack_rx(e->s, p, len, e->now), len >= 34);
		free(p);
		assert_false(mmds_stack_pending(e->s, e->now));
	}
	n = arp_frame(f, 1, GUEST_IP, MMDS_IP);
	for (size_t len = 0; len < n; len++) {
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, f, len);
		assert_false(mmds_stack_rx(e->s, p, len, e->now));
		free(p);
	}
	assert_false(mmds_stack_pending(e->s, e->now));
	assert_int_equal(live_conns(e), 0);
	assert_int_equal(count(&e->met.rx_count), 0);
	/* Padding after the packet (short Ethernet frames) is ignored. */
	n = tcp_frame(f, GUEST_IP, MMDS_IP, 40010, 80, 1, 0, SYN, 1000, 1460, NULL, 0);
	memset(f + n, 0xee, 20);
	assert_true(mmds_stack_rx(e->s, f, n + 20, e->now));
	assert_true(mmds_stack_pending(e->s, e->now));
	env_free(e);
}

static void out_of_order(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40011);
	g_connect(&g);
	struct seg *s = malloc(sizeof(*s));
	const char *req = "GET /name/first HTTP/1.1\r\n\r\n";
	/* The second half first: dropped, and the ACK repeats where we are. */
	assert_true(g_send_raw(&g, g.seq + 10, ACK, req + 10, strlen(req) - 10));
	assert_true(g_recv(&g, s));
	assert_int_equal(s->ack, g.seq);
	assert_int_equal(s->len, 0);
	g_expect_nothing(&g);
	/* Then the first 10 bytes, and all of it again (overlap is trimmed). */
	g_send(&g, ACK, req, 10);
	assert_true(g_recv(&g, s));
	assert_int_equal(s->ack, g.seq);
	assert_true(g_send_raw(&g, g.seq - 10, ACK | PSH, req, strlen(req)));
	g.seq += (uint32_t)strlen(req) - 10;
	char *r = g_read_response(&g);
	assert_string_equal(body(r), "John");
	free(r);
	assert_true(count(&e->met.rx_accepted_unusual) >= 1);
	free(s);
	env_free(e);
}

static void resets(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40012);
	g_connect(&g);
	/* A RST outside the window is ignored; inside, it ends the connection. */
	assert_true(g_send_raw(&g, g.seq + 100000, RST, NULL, 0));
	assert_int_equal(live_conns(e), 1);
	assert_true(g_send_raw(&g, g.seq, RST, NULL, 0));
	assert_int_equal(live_conns(e), 0);
	g_expect_nothing(&g);
	/* A request that fills the receive buffer without ending: RST. */
	struct guest h = guest_new(e, 40013);
	g_connect(&h);
	char big[MMDS_HTTP_MAX_REQUEST];
	memset(big, 'a', sizeof(big));
	struct seg *s = malloc(sizeof(*s));
	g_send(&h, ACK, big, 1400);
	assert_true(g_recv(&h, s));
	assert_int_equal(s->window, MMDS_HTTP_MAX_REQUEST - 1400);
	g_send(&h, ACK, big, sizeof(big) - 1400);
	assert_true(g_recv(&h, s));
	assert_int_equal(s->flags, RST | ACK);
	assert_int_equal(s->seq, h.ack);
	assert_int_equal(live_conns(e), 0);
	/* A segment with no connection behind it, without ACK: RST+ACK. */
	struct guest k = guest_new(e, 40014);
	assert_true(g_send_raw(&k, 77, FIN, "xy", 2));
	assert_true(g_recv(&k, s));
	assert_int_equal(s->flags, RST | ACK);
	assert_int_equal(s->ack, 77 + 3);
	/* ... and a RST is never answered. */
	assert_true(g_send_raw(&k, 77, RST, NULL, 0));
	g_expect_nothing(&k);
	free(s);
	env_free(e);
}

static void syn_again(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40015);
	struct seg *s = malloc(sizeof(*s));
	/* A retransmitted SYN before the handshake ends: the same SYN-ACK. */
	g_send(&g, SYN, NULL, 0);
	assert_true(g_recv(&g, s));
	uint32_t isn = s->seq;
	assert_true(g_send_raw(&g, g.seq - 1, SYN, NULL, 0));
	assert_true(g_recv(&g, s));
	assert_int_equal(s->flags, SYN | ACK);
	assert_int_equal(s->seq, isn);
	/* A wrong ACK to the SYN-ACK resets it. */
	g.ack = isn + 5;
	g_send(&g, ACK, NULL, 0);
	assert_true(g_recv(&g, s));
	assert_int_equal(s->flags, RST);
	assert_int_equal(s->seq, isn + 5);
	assert_int_equal(live_conns(e), 0);
	/* A fresh SYN on an established port replaces the connection. */
	struct guest h = guest_new(e, 40016);
	g_connect(&h);
	h.seq += 5000;
	h.ack = 0;
	g_connect(&h);
	assert_int_equal(live_conns(e), 1);
	char *r = g_get(&h, "GET /name/first HTTP/1.1\r\n\r\n");
	assert_string_equal(body(r), "John");
	free(r);
	free(s);
	env_free(e);
}

static void our_fin_lost(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40017);
	g_connect(&g);
	struct seg *s = malloc(sizeof(*s));
	g_send(&g, FIN | ACK, NULL, 0);
	assert_true(g_recv(&g, s));
	assert_int_equal(s->flags, FIN | ACK);
	e->now += MMDS_CONN_RTO_MS;
	assert_true(g_recv(&g, s));
	assert_int_equal(s->flags, FIN | ACK);
	assert_int_equal(s->seq, g.ack);
	/* The guest's FIN again: re-ACKed. */
	assert_true(g_send_raw(&g, g.seq - 1, FIN | ACK, NULL, 0));
	assert_true(g_recv(&g, s));
	assert_int_equal(s->ack, g.seq);
	g.ack++;
	g_send(&g, ACK, NULL, 0);
	assert_int_equal(live_conns(e), 0);
	g_expect_nothing(&g);
	free(s);
	env_free(e);
}

static void small_tx_buffer(void **state)
{
	(void)state;
	struct env *e = env_new(MMDS_V1);
	struct guest g = guest_new(e, 40018);
	g_connect(&g);
	g_send(&g, ACK | PSH, "GET /big HTTP/1.1\r\n\r\n", 21);
	uint8_t buf[300];
	assert_int_equal(mmds_stack_tx(e->s, buf, MMDS_NET_MIN_TX - 1, e->now), 0);
	assert_int_equal(count(&e->met.tx_errors), 1);
	/* A small buffer gets small segments. */
	size_t n = mmds_stack_tx(e->s, buf, sizeof(buf), e->now);
	assert_int_equal(n, sizeof(buf));
	env_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(arp),
		cmocka_unit_test(get_v1),
		cmocka_unit_test(guest_closes_with_request),
		cmocka_unit_test(v2_token),
		cmocka_unit_test(small_window),
		cmocka_unit_test(retransmission),
		cmocka_unit_test(table_full),
		cmocka_unit_test(bad_checksums),
		cmocka_unit_test(not_for_mmds),
		cmocka_unit_test(fragments),
		cmocka_unit_test(truncated),
		cmocka_unit_test(out_of_order),
		cmocka_unit_test(resets),
		cmocka_unit_test(syn_again),
		cmocka_unit_test(our_fin_lost),
		cmocka_unit_test(small_tx_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
