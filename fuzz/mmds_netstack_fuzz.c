/* libFuzzer target: a hostile guest talking to the MMDS network stack.
 * The input is a script: raw frames (to hit the parsers), well-formed TCP
 * segments that keep in step with the stack's sequence numbers (to reach
 * established connections and HTTP), corrupted copies of those, ARP, clock
 * jumps, and drains of what the stack sends, every frame of which is
 * checked (lengths, addresses, both checksums).
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   build-fuzz/fuzz/mmds_netstack_fuzz -max_len=4096 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmds/json.h"
#include "mmds/netstack.h"

#define MMDS_IP 0xa9fea9feu
#define GUEST_IP 0x0a000002u
#define PORTS 40 /* more than MMDS_NET_MAX_CONNECTIONS */

static const uint8_t guest_mac[6] = {0x02, 0, 0, 0, 0, 1};

static const char *const requests[] = {
	"GET / HTTP/1.1\r\n\r\n",
	"GET /latest/meta-data/ HTTP/1.1\r\nAccept: application/json\r\n\r\n",
	"PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n",
	"GET /latest/big HTTP/1.0\r\n\r\n",
	"GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: x\r\n\r\n",
	"GET /nope HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
	"POST / HTTP/1.1\r\n\r\n",
	"GET /",
	" HTTP/1.1\r\n\r\n",
};

struct peer {
	uint32_t seq; /* next sequence number the guest sends */
	uint32_t ack; /* next one it expects from MMDS */
};

struct script {
	const uint8_t *p;
	size_t len, off;
};

static uint8_t take(struct script *s)
{
	return s->off < s->len ? s->p[s->off++] : 0;
}

static uint16_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i < n; i++)
		sum += i & 1 ? p[i] : (uint32_t)p[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
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

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t pseudo(uint32_t src, uint32_t dst, size_t len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + (uint32_t)len;
}

static size_t tcp_frame(uint8_t *f, uint16_t sport, uint32_t seq, uint32_t ack, uint8_t flags,
			uint16_t win, uint16_t mss, const void *data, size_t len)
{
	size_t thl = mss ? 24 : 20;
	memset(f, 0xff, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, 0x0800);
	uint8_t *ip = f + 14, *t = ip + 20;
	memset(ip, 0, 20 + thl);
	ip[0] = 0x45;
	put16(ip + 2, (uint32_t)(20 + thl + len));
	ip[8] = 64;
	ip[9] = 6;
	put32(ip + 12, GUEST_IP);
	put32(ip + 16, MMDS_IP);
	put16(ip + 10, sum16(ip, 20, 0));
	put16(t, sport);
	put16(t + 2, 80);
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
	put16(t + 16, sum16(t, thl + len, pseudo(GUEST_IP, MMDS_IP, thl + len)));
	return 14 + 20 + thl + len;
}

/* Every frame the stack gives must be whole and correct. */
static void check_frame(const uint8_t *f, size_t n, size_t cap, struct peer *peers)
{
	if (n > cap || n < 42)
		abort();
	if (f[12] == 0x08 && f[13] == 0x06) {
		if (n != 42)
			abort();
		return;
	}
	if (f[12] != 0x08 || f[13] != 0x00 || n < 54)
		abort();
	const uint8_t *ip = f + 14, *t = ip + 20;
	size_t tlen = n - 34;
	if (ip[0] != 0x45 || (size_t)(ip[2] << 8 | ip[3]) != n - 14 || sum16(ip, 20, 0) ||
	    get32(ip + 12) != MMDS_IP)
		abort();
	if (sum16(t, tlen, pseudo(MMDS_IP, get32(ip + 16), tlen)))
		abort();
	size_t thl = (size_t)(t[12] >> 4) * 4;
	if (thl < 20 || thl > tlen)
		abort();
	uint16_t port = (uint16_t)(t[2] << 8 | t[3]);
	if (port < 1000 || port >= 1000 + PORTS)
		return;
	struct peer *p = &peers[port - 1000];
	uint32_t seq = get32(t + 4), len = (uint32_t)(tlen - thl);
	if (t[13] & 0x02)
		p->ack = seq + 1;
	else if (!(t[13] & 0x04) && (int32_t)(seq + len - p->ack) > 0 && seq == p->ack)
		p->ack = seq + len + !!(t[13] & 0x01);
}

static void drain(struct mmds_stack *s, struct script *sc, uint64_t now, struct peer *peers)
{
	static uint8_t buf[70000];
	/* A retransmission that is due must show as pending. */
	if (mmds_stack_deadline(s) <= now && !mmds_stack_pending(s, now))
		abort();
	size_t cap = (size_t)take(sc) * 8 + 100;
	int max = take(sc) % 64 + 1;
	for (int i = 0; i < max; i++) {
		bool pending = mmds_stack_pending(s, now);
		size_t n = mmds_stack_tx(s, buf, cap, now);
		if (!n)
			break;
		if (!pending)
			abort();
		check_frame(buf, n, cap, peers);
	}
}

static void step(struct mmds_stack *s, struct script *sc, uint64_t *now, struct peer *peers)
{
	static uint8_t f[5000];
	uint8_t op = take(sc);
	size_t who = (op & 7) == 1 || (op & 7) >= 4 ? take(sc) % PORTS : 0;
	struct peer *p = &peers[who];
	uint16_t port = (uint16_t)(1000 + who);
	unsigned rxflags = op & 0x80 ? MMDS_NET_RX_CSUM_PARTIAL : 0;
	size_t n = 0;
	switch (op & 7) {
	case 0: { /* raw bytes as a frame */
		size_t len = take(sc) * 4u;
		if (len > sc->len - sc->off)
			len = sc->len - sc->off;
		uint8_t *raw = malloc(len ? len : 1);
		memcpy(raw, sc->p + sc->off, len);
		sc->off += len;
		mmds_stack_rx_flags(s, raw, len, rxflags, *now);
		free(raw);
		return;
	}
	case 1: { /* a segment with fuzzed fields near the right numbers */
		uint8_t flags = take(sc) & 0x3f;
		int8_t dseq = (int8_t)take(sc), dack = (int8_t)take(sc);
		uint16_t win = (uint16_t)(take(sc) << 5);
		uint16_t mss = flags & 2 ? (uint16_t)(take(sc) * 8) : 0;
		size_t len = take(sc) % 64;
		if (len > sc->len - sc->off)
			len = sc->len - sc->off;
		n = tcp_frame(f, port, p->seq + (uint32_t)dseq, p->ack + (uint32_t)dack, flags, win,
			      mss, sc->p + sc->off, len);
		sc->off += len;
		if (flags & 2)
			p->seq = p->seq + (uint32_t)dseq + 1;
		break;
	}
	case 2:
		if (op & 0x40)
			mmds_stack_set_ipv4(s, MMDS_IP); /* drops everything */
		else
			*now += (uint64_t)take(sc) * (op & 0x20 ? 997 : 37);
		return;
	case 3:
		drain(s, sc, *now, peers);
		return;
	case 4: { /* a request, in order, with the right ACK */
		static char junk[1400];
		size_t pick = take(sc) % (sizeof(requests) / sizeof(requests[0]) + 1);
		const char *r = junk;
		size_t len = sizeof(junk); /* no end of request: fills the buffer */
		if (pick < sizeof(requests) / sizeof(requests[0])) {
			r = requests[pick];
			len = strlen(r);
		} else {
			memset(junk, 'a', sizeof(junk));
		}
		n = tcp_frame(f, port, p->seq, p->ack, 0x18 | (take(sc) & 1), 4096, 0, r, len);
		p->seq += (uint32_t)len;
		break;
	}
	case 5: /* SYN or a plain ACK */
		if (take(sc) & 1) {
			p->seq = (uint32_t)take(sc) << 20;
			n = tcp_frame(f, port, p->seq++, 0, 0x02, 8192, 1460, NULL, 0);
		} else {
			n = tcp_frame(f, port, p->seq, p->ack, 0x10, (uint16_t)(take(sc) << 6), 0,
				      NULL, 0);
		}
		break;
	case 6: { /* an ARP request, maybe bent */
		memset(f, 0xff, 6);
		memcpy(f + 6, guest_mac, 6);
		put16(f + 12, 0x0806);
		static const uint8_t arp[8] = {0, 1, 8, 0, 6, 4, 0, 1};
		memcpy(f + 14, arp, 8);
		memcpy(f + 22, guest_mac, 6);
		put32(f + 28, GUEST_IP);
		memset(f + 32, 0, 6);
		put32(f + 38, MMDS_IP);
		f[14 + take(sc) % 28] ^= take(sc);
		n = 42;
		break;
	}
	case 7: { /* a good segment with one byte bent, or cut short */
		n = tcp_frame(f, port, p->seq, p->ack, 0x18, 1024, 0, "GET / HTTP/1.1\r\n\r\n", 18);
		size_t at = take(sc) % n;
		uint8_t x = take(sc);
		if (x)
			f[at] ^= x;
		else
			n = at;
		break;
	}
	}
	mmds_stack_rx_flags(s, f, n, rxflags, *now);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	if (len < 1)
		return 0;
	struct mmds *m = malloc(sizeof(*m));
	struct mmds_stack *s = malloc(sizeof(*s));
	struct mmds_metrics *met = calloc(1, sizeof(*met));
	if (!m || !s || !met)
		abort();
	mmds_init(m, 8192);
	m->version = in[0] & 1 ? MMDS_V2 : MMDS_V1;
	char big[6000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_t *j = json_pack("{s:{s:{s:s},s:s}}", "latest", "meta-data", "ami-id", "ami-1", "big",
			      big);
	mmds_store_put(&m->store, j, NULL);
	json_decref(j);
	mmds_stack_init(s, m, MMDS_IP, met, 1 + in[0]);
	struct peer peers[PORTS] = {{0}};
	struct script sc = {in, len, 1};
	uint64_t now = 1000;
	while (sc.off < sc.len)
		step(s, &sc, &now, peers);
	/* In the end everything owed can be sent, and the table empties
	 * once time runs out for all of it. */
	now += 3600 * 1000;
	for (int i = 0; i < 100000 && mmds_stack_pending(s, now); i++) {
		static uint8_t buf[70000];
		size_t n = mmds_stack_tx(s, buf, sizeof(buf), now);
		if (n)
			check_frame(buf, n, sizeof(buf), peers);
		now += MMDS_CONN_RTO_MS;
	}
	if (mmds_stack_pending(s, now))
		abort(); /* something would be owed forever */
	mmds_stack_free(s);
	mmds_free(m);
	free(s);
	free(m);
	free(met);
	return 0;
}
