/* net-evil: hostile Ethernet frames for the MMDS network stack, run as root
 * inside an Ember test guest. It writes whole frames on an interface through
 * an AF_PACKET raw socket (the kernel's own IP stack never sees them), aimed
 * at the MMDS address: malformed IPv4, TCP and ARP, fragments, floods of
 * SYNs, RSTs and FINs, garbage inside a live connection, frames the size of
 * the MTU, frames that are not MMDS's at all; and, through ordinary kernel
 * sockets, connections that hold partial HTTP requests.
 *
 * Raw TCP uses a source address that is not the guest's (-s), so the
 * guest's kernel drops MMDS's answers (not local, no forwarding) instead of
 * resetting connections it does not know; the packet socket still sees
 * them. Every scenario begins by asking MMDS's MAC with an ARP request and
 * ends with another one, whose answer (MMDS takes frames in order) says
 * that MMDS has handled every frame sent before it. Output, one line per
 * scenario:
 *
 *   EMBER-EVIL <scenario> result=done sent=N arp=A [key=value...]
 *   EMBER-EVIL <scenario> result=no-arp|error:<why> ...
 *
 * sent counts the scenario's frames the kernel accepted (not the ARP
 * requests), arp the ARP requests. Frames not meant for MMDS carry the
 * source MAC 02:ee:ee:00:00:<scenario number> so that the host can find them
 * on the TAP. Exits 0 if every scenario ran, 1 if one could not, 2 on bad
 * usage.
 *
 * Usage: net-evil [-i IFACE] [-a MMDS_IP] [-s SRC_IP] [-n COUNT] [-t SECONDS] SCENARIO...
 *        net-evil -l
 *
 * Built static by tools/guest/build-evil.sh. Linux, x86_64. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "evil-time.h"

#define ETH_HLEN_ 14
#define IP_OFF ETH_HLEN_
#define TCP_OFF (ETH_HLEN_ + 20)
#define MAX_FRAME (ETH_HLEN_ + 65535)
#define MMDS_PORT 80

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10

struct evil {
	int fd;
	int ifindex;
	const char *ifname;
	uint8_t mac[6], mmds_mac[6];
	uint32_t mmds_ip, src_ip; /* host byte order */
	unsigned count;           /* floods: frames per flood */
	double timeout;
	uint64_t rng;
	unsigned number; /* the scenario's place in the table, for its MAC */
	bool marked;     /* the mark is in extra */
	/* Per scenario. */
	unsigned sent, arp;
	char extra[512];
	uint8_t frame[MAX_FRAME];
	uint8_t in[MAX_FRAME];
};

struct scenario {
	const char *name;
	const char *what;
	/* false: could not run (extra says why). */
	bool (*run)(struct evil *ev);
};

static uint32_t rnd(struct evil *ev)
{
	uint64_t x = ev->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ev->rng = x;
	return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

static void note(struct evil *ev, const char *fmt, ...)
{
	size_t used = strlen(ev->extra);
	if (used + 2 >= sizeof(ev->extra))
		return;
	ev->extra[used++] = ' ';
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ev->extra + used, sizeof(ev->extra) - used, fmt, ap);
	va_end(ap);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)(v >> 16));
	wr16(p + 2, (uint16_t)v);
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)rd16(p) << 16 | rd16(p + 2);
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	uint64_t s = sum;
	size_t i = 0;
	for (; i + 1 < len; i += 2)
		s += rd16(p + i);
	if (i < len)
		s += (uint32_t)p[i] << 8;
	while (s >> 32)
		s = (s & 0xffffffffu) + (s >> 32);
	return (uint32_t)s;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ---- building frames ---- */

static void put_eth(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	wr16(f + 12, type);
}

/* The header checksum of the IPv4 header at f + IP_OFF, as its IHL says. */
static void ip_csum(uint8_t *f)
{
	uint8_t *ip = f + IP_OFF;
	size_t hlen = (size_t)(ip[0] & 0xf) * 4;
	wr16(ip + 10, 0);
	wr16(ip + 10, csum_fold(csum_add(0, ip, hlen)));
}

/* The TCP checksum of a segment of len bytes at f + TCP_OFF (20-byte IP
 * header). */
static void tcp_csum(uint8_t *f, size_t len)
{
	uint8_t *ip = f + IP_OFF, *tcp = f + TCP_OFF;
	uint32_t sum = csum_add(0, ip + 12, 8);
	sum += 6 + (uint32_t)len;
	wr16(tcp + 16, 0);
	wr16(tcp + 16, csum_fold(csum_add(sum, tcp, len)));
}

struct seg {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t window;
	const uint8_t *opt;
	size_t optlen; /* a multiple of 4 */
	const uint8_t *data;
	size_t len;
};

/* Writes a correct frame (both checksums right) from us to MMDS; its length. */
static size_t build_tcp(struct evil *ev, uint8_t *f, const struct seg *s)
{
	size_t thlen = 20 + s->optlen, total = 20 + thlen + s->len;
	put_eth(f, ev->mmds_mac, ev->mac, ETHERTYPE_IP);
	uint8_t *ip = f + IP_OFF, *tcp = f + TCP_OFF;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	wr16(ip + 2, (uint16_t)total);
	wr16(ip + 4, (uint16_t)rnd(ev));
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	wr32(ip + 12, ev->src_ip);
	wr32(ip + 16, ev->mmds_ip);
	ip_csum(f);
	memset(tcp, 0, thlen);
	wr16(tcp, s->sport);
	wr16(tcp + 2, s->dport);
	wr32(tcp + 4, s->seq);
	wr32(tcp + 8, s->ack);
	tcp[12] = (uint8_t)(thlen / 4 << 4);
	tcp[13] = s->flags;
	wr16(tcp + 14, s->window);
	if (s->optlen)
		memcpy(tcp + 20, s->opt, s->optlen);
	if (s->len)
		memcpy(tcp + thlen, s->data, s->len);
	tcp_csum(f, thlen + s->len);
	return ETH_HLEN_ + total;
}

/* A SYN to MMDS port 80 from port sport with the MSS option. */
static size_t build_syn(struct evil *ev, uint8_t *f, uint16_t sport, uint32_t seq)
{
	static const uint8_t mss[4] = {2, 4, 0x05, 0xb4};
	struct seg s = {.sport = sport, .dport = MMDS_PORT, .seq = seq, .flags = F_SYN,
			.window = 64240, .opt = mss, .optlen = 4};
	return build_tcp(ev, f, &s);
}

/* An ARP packet (Ethernet/IPv4 layout) from us. */
static size_t build_arp(struct evil *ev, uint8_t *f, const uint8_t *dst, uint16_t op,
			uint32_t tpa)
{
	put_eth(f, dst, ev->mac, ETHERTYPE_ARP);
	uint8_t *a = f + ETH_HLEN_;
	wr16(a, 1);
	wr16(a + 2, ETHERTYPE_IP);
	a[4] = 6;
	a[5] = 4;
	wr16(a + 6, op);
	memcpy(a + 8, ev->mac, 6);
	wr32(a + 14, ev->src_ip);
	memset(a + 18, 0, 6);
	wr32(a + 24, tpa);
	return ETH_HLEN_ + 28;
}

/* ---- the socket ---- */

/* Sends a frame, waiting out a full queue. counted: a scenario frame. */
static bool xmit(struct evil *ev, const uint8_t *f, size_t len, bool counted)
{
	struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = ev->ifindex,
				 .sll_halen = 6};
	memcpy(to.sll_addr, f, 6);
	for (int tries = 0; tries < 2000; tries++) {
		if (sendto(ev->fd, f, len, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)len) {
			ev->sent += counted;
			return true;
		}
		if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR)
			break;
		pause_ms(1);
	}
	return false;
}

/* The next frame for us within the deadline (not one we sent): its length,
 * 0 on timeout. */
static size_t recv_frame(struct evil *ev, double deadline)
{
	for (;;) {
		double left = deadline - now();
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = ev->fd, .events = POLLIN};
		if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(ev->fd, ev->in, sizeof(ev->in), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &fl);
		if (n < ETH_HLEN_ || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		return (size_t)n;
	}
}

static void drain(struct evil *ev)
{
	while (recvfrom(ev->fd, ev->in, sizeof(ev->in), MSG_DONTWAIT, NULL, NULL) >= 0)
		;
}

/* Asks MMDS for its MAC and waits for the answer: also the fence after
 * which every earlier frame has been handled. */
static bool arp_fence(struct evil *ev)
{
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	for (int tries = 0; tries < 3; tries++) {
		size_t len = build_arp(ev, ev->frame, bcast, 1, ev->mmds_ip);
		if (!xmit(ev, ev->frame, len, false))
			return false;
		ev->arp++;
		double deadline = now() + ev->timeout / 3;
		size_t n;
		while ((n = recv_frame(ev, deadline))) {
			const uint8_t *a = ev->in + ETH_HLEN_;
			if (n >= ETH_HLEN_ + 28 && rd16(ev->in + 12) == ETHERTYPE_ARP &&
			    rd16(a + 6) == 2 && rd32(a + 14) == ev->mmds_ip &&
			    rd32(a + 24) == ev->src_ip) {
				memcpy(ev->mmds_mac, a + 8, 6);
				return true;
			}
		}
	}
	return false;
}

/* A TCP segment from MMDS port 80 to port (0: any) within the deadline. */
static bool recv_seg(struct evil *ev, uint16_t port, double deadline, struct seg *s)
{
	size_t n;
	while ((n = recv_frame(ev, deadline))) {
		const uint8_t *ip = ev->in + IP_OFF;
		if (n < TCP_OFF + 20 || rd16(ev->in + 12) != ETHERTYPE_IP || ip[0] != 0x45 ||
		    ip[9] != IPPROTO_TCP || rd32(ip + 12) != ev->mmds_ip ||
		    rd32(ip + 16) != ev->src_ip)
			continue;
		size_t total = rd16(ip + 2);
		const uint8_t *tcp = ev->in + TCP_OFF;
		size_t thlen = (size_t)(tcp[12] >> 4) * 4;
		if (total > n - IP_OFF || total < 20 + thlen || thlen < 20 ||
		    rd16(tcp) != MMDS_PORT || (port && rd16(tcp + 2) != port))
			continue;
		*s = (struct seg){.sport = rd16(tcp), .dport = rd16(tcp + 2), .seq = rd32(tcp + 4),
				  .ack = rd32(tcp + 8), .flags = tcp[13], .window = rd16(tcp + 14),
				  .data = tcp + thlen, .len = total - 20 - thlen};
		return true;
	}
	return false;
}

/* ---- a TCP client of our own over the raw socket ---- */

struct conn {
	uint16_t port;
	uint32_t snd_nxt, rcv_nxt;
	uint16_t window; /* MMDS's */
};

static uint16_t pick_port(struct evil *ev)
{
	return (uint16_t)(20000 + rnd(ev) % 40000);
}

/* Sends a segment on c with the given flags, seq = c->snd_nxt. */
static bool conn_send(struct evil *ev, struct conn *c, uint8_t flags, const void *data, size_t len)
{
	struct seg s = {.sport = c->port, .dport = MMDS_PORT, .seq = c->snd_nxt, .ack = c->rcv_nxt,
			.flags = flags, .window = 65535, .data = data, .len = len};
	return xmit(ev, ev->frame, build_tcp(ev, ev->frame, &s), true);
}

/* SYN (the frame already built in ev->frame, len bytes), SYN-ACK, ACK. */
static bool conn_open_with(struct evil *ev, struct conn *c, size_t len, uint32_t iss)
{
	if (!xmit(ev, ev->frame, len, true))
		return false;
	struct seg s;
	double deadline = now() + ev->timeout;
	while (recv_seg(ev, c->port, deadline, &s)) {
		if ((s.flags & (F_SYN | F_ACK)) == (F_SYN | F_ACK) && s.ack == iss + 1) {
			c->snd_nxt = iss + 1;
			c->rcv_nxt = s.seq + 1;
			c->window = s.window;
			return conn_send(ev, c, F_ACK, NULL, 0);
		}
		if (s.flags & F_RST)
			return false;
	}
	return false;
}

static bool conn_open(struct evil *ev, struct conn *c)
{
	c->port = pick_port(ev);
	uint32_t iss = rnd(ev);
	return conn_open_with(ev, c, build_syn(ev, ev->frame, c->port, iss), iss);
}

static bool conn_abort(struct evil *ev, struct conn *c)
{
	return conn_send(ev, c, F_RST, NULL, 0);
}

/* Reads MMDS's answer on c, acknowledging it: the HTTP status, 0 on a
 * timeout, -1 on a RST. Stops once the headers and Content-Length bytes are
 * in. */
static int conn_response(struct evil *ev, struct conn *c)
{
	static char buf[8192];
	size_t have = 0;
	struct seg s;
	double deadline = now() + ev->timeout;
	while (recv_seg(ev, c->port, deadline, &s)) {
		if (s.flags & F_RST)
			return -1;
		/* MMDS may have taken less than was sent (a window cut). */
		if ((s.flags & F_ACK) && (int32_t)(s.ack - c->snd_nxt) > 0)
			c->snd_nxt = s.ack;
		if (s.seq != c->rcv_nxt || (!s.len && !(s.flags & F_FIN))) {
			if (s.len)
				conn_send(ev, c, F_ACK, NULL, 0); /* say where we are */
			continue;
		}
		size_t take = s.len < sizeof(buf) - 1 - have ? s.len : sizeof(buf) - 1 - have;
		memcpy(buf + have, s.data, take);
		have += take;
		buf[have] = 0;
		c->rcv_nxt += (uint32_t)s.len + !!(s.flags & F_FIN);
		conn_send(ev, c, F_ACK, NULL, 0);
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		char *cl = strcasestr(buf, "\r\nContent-Length:");
		size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
		if (have >= (size_t)(end + 4 - buf) + body) {
			int status = 0;
			return sscanf(buf, "HTTP/1.%*d %d", &status) == 1 ? status : 0;
		}
	}
	return 0;
}

static const char GET[] = "GET /latest/meta-data/ami-id HTTP/1.1\r\nHost: mmds\r\n\r\n";

/* A GET on a fresh raw connection, which is then reset: the status. */
static int raw_get(struct evil *ev)
{
	struct conn c;
	if (!conn_open(ev, &c))
		return -2;
	int status = -3;
	if (conn_send(ev, &c, F_ACK | F_PSH, GET, sizeof(GET) - 1)) {
		c.snd_nxt += sizeof(GET) - 1;
		status = conn_response(ev, &c);
	}
	conn_abort(ev, &c);
	return status;
}

/* ---- one-shot frames ---- */

/* A correct SYN to MMDS:80 in ev->frame; its length. */
static size_t good_syn(struct evil *ev)
{
	return build_syn(ev, ev->frame, pick_port(ev), rnd(ev));
}

static bool send1(struct evil *ev, size_t len)
{
	return xmit(ev, ev->frame, len, true);
}

static bool s_ip_bad_csum(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[IP_OFF + 10] ^= 0x5a;
	return send1(ev, len);
}

static bool s_ip_version(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[IP_OFF] = 0x55;
	ip_csum(ev->frame);
	return send1(ev, len);
}

static bool s_ip_ihl_short(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[IP_OFF] = 0x44;
	return send1(ev, len);
}

static bool s_ip_ihl_long(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[IP_OFF] = 0x4f; /* 60 bytes of header in a 44-byte packet */
	ip_csum(ev->frame);
	return send1(ev, len);
}

static bool s_ip_total_long(struct evil *ev)
{
	size_t len = good_syn(ev);
	wr16(ev->frame + IP_OFF + 2, 1500);
	ip_csum(ev->frame);
	return send1(ev, len);
}

static bool s_ip_total_short(struct evil *ev)
{
	size_t len = good_syn(ev);
	wr16(ev->frame + IP_OFF + 2, 19);
	ip_csum(ev->frame);
	return send1(ev, len);
}

static bool s_ip_frag_mf(struct evil *ev)
{
	size_t len = good_syn(ev);
	wr16(ev->frame + IP_OFF + 6, 0x2000);
	ip_csum(ev->frame);
	return send1(ev, len);
}

static bool s_ip_frag_offset(struct evil *ev)
{
	size_t len = good_syn(ev);
	wr16(ev->frame + IP_OFF + 6, 100); /* 800 bytes in, last fragment */
	ip_csum(ev->frame);
	return send1(ev, len);
}

static bool s_ip_udp(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[IP_OFF + 9] = IPPROTO_UDP;
	ip_csum(ev->frame);
	return send1(ev, len);
}

static bool s_ip_icmp(struct evil *ev)
{
	size_t len = good_syn(ev);
	uint8_t *ip = ev->frame + IP_OFF, *icmp = ev->frame + TCP_OFF;
	ip[9] = IPPROTO_ICMP;
	ip_csum(ev->frame);
	size_t n = len - TCP_OFF;
	memset(icmp, 0, n);
	icmp[0] = 8; /* echo request */
	wr16(icmp + 2, csum_fold(csum_add(0, icmp, n)));
	return send1(ev, len);
}

static bool s_tcp_bad_csum(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[TCP_OFF + 16] ^= 0x5a;
	return send1(ev, len);
}

static bool s_tcp_doff_short(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[TCP_OFF + 12] = 4 << 4;
	tcp_csum(ev->frame, len - TCP_OFF);
	return send1(ev, len);
}

static bool s_tcp_doff_long(struct evil *ev)
{
	size_t len = good_syn(ev);
	ev->frame[TCP_OFF + 12] = 15 << 4; /* 60 bytes of header in 24 */
	tcp_csum(ev->frame, len - TCP_OFF);
	return send1(ev, len);
}

static bool s_tcp_short(struct evil *ev)
{
	size_t len = good_syn(ev);
	/* The IP header leaves 12 bytes of TCP; the frame still has 24. */
	wr16(ev->frame + IP_OFF + 2, 32);
	ip_csum(ev->frame);
	tcp_csum(ev->frame, 12);
	return send1(ev, len);
}

/* A SYN with the option bytes opt (a multiple of 4), checksums right. */
static bool syn_with_options(struct evil *ev, const uint8_t *opt, size_t optlen)
{
	struct seg s = {.sport = pick_port(ev), .dport = MMDS_PORT, .seq = rnd(ev),
			.flags = F_SYN, .window = 64240, .opt = opt, .optlen = optlen};
	return send1(ev, build_tcp(ev, ev->frame, &s));
}

static bool s_tcp_opt_overrun(struct evil *ev)
{
	static const uint8_t opt[4] = {1, 1, 8, 10}; /* timestamps, 10 bytes, in 2 */
	return syn_with_options(ev, opt, sizeof(opt));
}

static bool s_tcp_opt_zero_len(struct evil *ev)
{
	static const uint8_t opt[8] = {3, 0, 1, 1, 1, 1, 1, 1};
	return syn_with_options(ev, opt, sizeof(opt));
}

static bool s_tcp_mss_zero(struct evil *ev)
{
	static const uint8_t opt[4] = {2, 4, 0, 0};
	return syn_with_options(ev, opt, sizeof(opt));
}

static bool s_tcp_mss_len(struct evil *ev)
{
	static const uint8_t opt[8] = {2, 6, 5, 0xb4, 0, 0, 1, 0};
	return syn_with_options(ev, opt, sizeof(opt));
}

static bool s_tcp_port(struct evil *ev)
{
	size_t len = good_syn(ev);
	wr16(ev->frame + TCP_OFF + 2, 8080);
	tcp_csum(ev->frame, len - TCP_OFF);
	return send1(ev, len);
}

static bool s_tcp_sport_zero(struct evil *ev)
{
	size_t len = good_syn(ev);
	wr16(ev->frame + TCP_OFF, 0);
	tcp_csum(ev->frame, len - TCP_OFF);
	return send1(ev, len);
}

static bool s_eth_multicast_src(struct evil *ev)
{
	size_t len = good_syn(ev);
	static const uint8_t mc[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
	memcpy(ev->frame + 6, mc, 6);
	return send1(ev, len);
}

/* An ARP request about MMDS with byte off of the ARP packet set to v. */
static bool arp_with(struct evil *ev, size_t off, uint8_t v)
{
	size_t len = build_arp(ev, ev->frame, ev->mmds_mac, 1, ev->mmds_ip);
	ev->frame[ETH_HLEN_ + off] = v;
	return send1(ev, len);
}

static bool s_arp_garbage(struct evil *ev)
{
	/* hardware type 6, protocol 0x86dd, hardware length 8, protocol
	 * length 16: the target address stays where MMDS looks for it. */
	return arp_with(ev, 1, 6) && arp_with(ev, 2, 0x86) && arp_with(ev, 4, 8) &&
	       arp_with(ev, 5, 16);
}

static bool s_arp_reply(struct evil *ev)
{
	return send1(ev, build_arp(ev, ev->frame, ev->mmds_mac, 2, ev->mmds_ip));
}

static bool s_arp_op_junk(struct evil *ev)
{
	size_t len = build_arp(ev, ev->frame, ev->mmds_mac, 0x1234, ev->mmds_ip);
	return send1(ev, len);
}

static bool s_arp_multicast_sha(struct evil *ev)
{
	size_t len = build_arp(ev, ev->frame, ev->mmds_mac, 1, ev->mmds_ip);
	ev->frame[ETH_HLEN_ + 8] = 0x01;
	return send1(ev, len);
}

/* ---- frames that are not MMDS's: they must reach the TAP ---- */

/* Our marked source MAC, for the host to spot on the TAP. */
static void mark(struct evil *ev, uint8_t *f)
{
	const uint8_t m[6] = {0x02, 0xee, 0xee, 0x00, 0x00, (uint8_t)ev->number};
	memcpy(f + 6, m, 6);
	if (!ev->marked)
		note(ev, "mark=02:ee:ee:00:00:%02x", m[5]);
	ev->marked = true;
}

static bool s_runt(struct evil *ev)
{
	put_eth(ev->frame, ev->mmds_mac, ev->mac, ETHERTYPE_IP);
	mark(ev, ev->frame);
	return send1(ev, ETH_HLEN_); /* the kernel sends nothing shorter */
}

static bool s_ipv4_short(struct evil *ev)
{
	good_syn(ev);
	mark(ev, ev->frame);
	return send1(ev, IP_OFF + 19); /* the destination's last byte is missing */
}

static bool s_arp_short(struct evil *ev)
{
	build_arp(ev, ev->frame, ev->mmds_mac, 1, ev->mmds_ip);
	mark(ev, ev->frame);
	return send1(ev, ETH_HLEN_ + 27);
}

static bool s_vlan(struct evil *ev)
{
	size_t len = good_syn(ev);
	memmove(ev->frame + 16, ev->frame + 12, len - 12);
	wr16(ev->frame + 12, 0x8100);
	wr16(ev->frame + 14, 5); /* VLAN 5 */
	mark(ev, ev->frame);
	return send1(ev, len + 4);
}

static bool s_ethertypes(struct evil *ev)
{
	static const uint16_t types[] = {0x86dd, 0x0000, 0x88b5, 0xffff, 0x0801};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t len = good_syn(ev); /* an IPv4 packet to MMDS behind it */
		wr16(ev->frame + 12, types[i]);
		mark(ev, ev->frame);
		if (!send1(ev, len))
			return false;
	}
	return true;
}

/* ---- TCP without a connection ---- */

/* A segment to MMDS:80 from a fresh port, no connection there. */
static bool stray(struct evil *ev, uint8_t flags, size_t datalen)
{
	static const uint8_t data[64] = "GET / HTTP/1.1\r\n";
	struct seg s = {.sport = pick_port(ev), .dport = MMDS_PORT, .seq = rnd(ev),
			.ack = rnd(ev), .flags = flags, .window = 1000, .data = data,
			.len = datalen};
	return send1(ev, build_tcp(ev, ev->frame, &s));
}

static bool s_tcp_no_conn(struct evil *ev)
{
	if (!stray(ev, F_ACK | F_PSH, 16))
		return false;
	uint16_t port = rd16(ev->frame + TCP_OFF);
	uint32_t ack = rd32(ev->frame + TCP_OFF + 8);
	struct seg s;
	bool rst = recv_seg(ev, port, now() + ev->timeout, &s) && (s.flags & F_RST) &&
		   s.seq == ack;
	note(ev, "rst=%s", rst ? "yes" : "no");
	return true;
}

static bool storm(struct evil *ev, uint8_t flags)
{
	for (unsigned i = 0; i < ev->count; i++)
		if (!stray(ev, flags, 0))
			return false;
	return true;
}

static bool s_rst_storm(struct evil *ev)
{
	return storm(ev, F_RST);
}

static bool s_fin_storm(struct evil *ev)
{
	return storm(ev, F_FIN | F_ACK);
}

/* Counts what MMDS answered until quiet for 1 s (at most timeout). */
static void count_answers(struct evil *ev)
{
	unsigned synacks = 0, rsts = 0, other = 0;
	struct seg s;
	double end = now() + ev->timeout;
	while (now() < end && recv_seg(ev, 0, now() + 1, &s)) {
		if ((s.flags & (F_SYN | F_ACK)) == (F_SYN | F_ACK))
			synacks++;
		else if (s.flags & F_RST)
			rsts++;
		else
			other++;
	}
	note(ev, "synacks=%u rsts=%u other=%u", synacks, rsts, other);
}

static bool s_syn_flood(struct evil *ev)
{
	uint16_t base = (uint16_t)(1024 + rnd(ev) % 10000);
	for (unsigned i = 0; i < ev->count; i++)
		if (!send1(ev, build_syn(ev, ev->frame, (uint16_t)(base + i % 50000), rnd(ev))))
			return false;
	count_answers(ev);
	return true;
}

/* Random frames to the MMDS address: a quarter raw bytes, a quarter with a
 * correct IPv4 header, a quarter with correct IPv4 and TCP checksums to
 * port 80, a quarter ARP with random fields. */
static bool s_garbage(struct evil *ev)
{
	for (unsigned i = 0; i < ev->count; i++) {
		uint8_t *f = ev->frame;
		size_t len = 42 + rnd(ev) % 200;
		for (size_t k = 0; k < len; k++)
			f[k] = (uint8_t)rnd(ev);
		memcpy(f, ev->mmds_mac, 6);
		memcpy(f + 6, ev->mac, 6);
		unsigned kind = i % 4;
		wr16(f + 12, kind == 3 ? ETHERTYPE_ARP : ETHERTYPE_IP);
		wr32(f + (kind == 3 ? ETH_HLEN_ + 24 : IP_OFF + 16), ev->mmds_ip);
		if (kind == 1 || kind == 2) {
			f[IP_OFF] = (uint8_t)(0x45 + (kind == 1 ? rnd(ev) % 11 : 0));
			size_t cut = kind == 1 ? rnd(ev) % 8 : 0;
			wr16(f + IP_OFF + 2, (uint16_t)(len - ETH_HLEN_ - cut));
			f[IP_OFF + 9] = IPPROTO_TCP;
			if (kind == 2) {
				wr16(f + IP_OFF + 6, 0);
				wr16(f + TCP_OFF + 2, MMDS_PORT);
				f[TCP_OFF + 12] = (uint8_t)((5 + rnd(ev) % 3) << 4);
				/* no SYN: random SYNs would fill the table for seconds */
				f[TCP_OFF + 13] &= (uint8_t)~F_SYN;
				tcp_csum(f, len - TCP_OFF);
			}
			ip_csum(f);
		}
		if (!send1(ev, len))
			return false;
	}
	return true;
}

/* ---- hostile segments inside a live connection ---- */

/* A segment on c with explicit seq/ack/flags/data, checksums right. */
static bool conn_raw(struct evil *ev, struct conn *c, uint32_t seq, uint32_t ack, uint8_t flags,
		     const void *data, size_t len)
{
	struct seg s = {.sport = c->port, .dport = MMDS_PORT, .seq = seq, .ack = ack,
			.flags = flags, .window = 65535, .data = data, .len = len};
	return send1(ev, build_tcp(ev, ev->frame, &s));
}

/* Then a GET on the same connection: its status. */
static void get_after(struct evil *ev, struct conn *c)
{
	int status = -3;
	if (conn_send(ev, c, F_ACK | F_PSH, GET, sizeof(GET) - 1)) {
		c->snd_nxt += sizeof(GET) - 1;
		status = conn_response(ev, c);
	}
	note(ev, "status=%d", status);
	conn_abort(ev, c);
}

static bool s_conn_garbage(struct evil *ev)
{
	struct conn c;
	if (!conn_open(ev, &c)) {
		note(ev, "handshake=failed");
		return true;
	}
	static const char junk[] = "GET /junk HTTP/1.1\r\n\r\n";
	size_t n = sizeof(junk) - 1;
	bool ok = conn_raw(ev, &c, c.snd_nxt + 100000, c.rcv_nxt, F_ACK | F_PSH, junk, n) &&
		  conn_raw(ev, &c, c.snd_nxt - 100000, c.rcv_nxt, F_ACK | F_PSH, junk, n) &&
		  conn_raw(ev, &c, c.snd_nxt, c.rcv_nxt + 1000000, F_ACK, NULL, 0) &&
		  conn_raw(ev, &c, c.snd_nxt + 100000, 0, F_RST, NULL, 0) &&
		  conn_raw(ev, &c, c.snd_nxt - 1, c.rcv_nxt, F_RST | F_ACK, NULL, 0) &&
		  conn_raw(ev, &c, c.snd_nxt + 50, c.rcv_nxt, F_FIN | F_ACK, NULL, 0) &&
		  conn_raw(ev, &c, c.snd_nxt, c.rcv_nxt, F_PSH, junk, n); /* no ACK: ignored */
	if (!ok)
		return false;
	pause_ms(100);
	drain(ev); /* MMDS's re-ACKs */
	get_after(ev, &c);
	return true;
}

static bool s_conn_storm(struct evil *ev)
{
	struct conn c;
	if (!conn_open(ev, &c)) {
		note(ev, "handshake=failed");
		return true;
	}
	for (unsigned i = 0; i < ev->count; i++) {
		/* RSTs and FINs outside the window, ACKs of nothing sent. */
		uint32_t far = 3000 + rnd(ev) % 0x70000000u;
		uint8_t flags = i % 3 == 0 ? F_RST : i % 3 == 1 ? F_FIN | F_ACK : F_ACK;
		uint32_t ack = i % 3 == 2 ? c.rcv_nxt + far : c.rcv_nxt;
		uint32_t seq = i % 3 == 2 ? c.snd_nxt : c.snd_nxt + far;
		if (!conn_raw(ev, &c, seq, ack, flags, NULL, 0))
			return false;
	}
	pause_ms(100);
	drain(ev);
	get_after(ev, &c);
	return true;
}

/* One segment far bigger than the window: the request in front is
 * served, the rest is cut at the window. */
static bool s_conn_oversized(struct evil *ev)
{
	struct conn c;
	if (!conn_open(ev, &c)) {
		note(ev, "handshake=failed");
		return true;
	}
	static uint8_t big[60000];
	memset(big, 'x', sizeof(big));
	memcpy(big, GET, sizeof(GET) - 1);
	if (!conn_raw(ev, &c, c.snd_nxt, c.rcv_nxt, F_ACK | F_PSH, big, sizeof(big))) {
		note(ev, "errno=%d", errno);
		conn_abort(ev, &c);
		return true;
	}
	/* MMDS keeps what its window allows; conn_response follows its ACKs. */
	note(ev, "status=%d", conn_response(ev, &c));
	conn_abort(ev, &c);
	return true;
}

/* A frame as big as the interface lets us: a 65535-byte IPv4 packet. */
static bool oversized(struct evil *ev, bool bad_csum)
{
	static uint8_t data[65535 - 40];
	memset(data, 'o', sizeof(data));
	struct seg s = {.sport = pick_port(ev), .dport = MMDS_PORT, .seq = rnd(ev),
			.ack = rnd(ev), .flags = F_ACK, .window = 1000, .data = data,
			.len = sizeof(data)};
	size_t len = build_tcp(ev, ev->frame, &s);
	if (bad_csum)
		ev->frame[TCP_OFF + 16] ^= 1;
	if (!send1(ev, len))
		note(ev, "errno=%d", errno);
	return true;
}

static bool s_oversized(struct evil *ev)
{
	return oversized(ev, false);
}

static bool s_oversized_bad_csum(struct evil *ev)
{
	return oversized(ev, true);
}

/* A correct SYN with 1000 bytes of Ethernet padding after the IP packet:
 * MMDS must ignore the padding and answer. */
static bool s_ip_padding(struct evil *ev)
{
	struct conn c = {.port = pick_port(ev)};
	uint32_t iss = rnd(ev);
	size_t len = build_syn(ev, ev->frame, c.port, iss);
	memset(ev->frame + len, 0xaa, 1000);
	bool ok = conn_open_with(ev, &c, len + 1000, iss);
	note(ev, "synack=%s", ok ? "yes" : "no");
	if (ok)
		conn_abort(ev, &c);
	return true;
}

/* Waits until a fresh connection is served again (a flood may have filled
 * the table with half-open connections for a few seconds). */
static bool s_recover(struct evil *ev)
{
	double start = now();
	int status = 0;
	while (now() - start < 4 * ev->timeout && (status = raw_get(ev)) != 200)
		pause_ms(250);
	note(ev, "status=%d after_ms=%.0f", status, (now() - start) * 1000);
	return true;
}

/* ---- connections through the kernel's own TCP ---- */

#define HOLD_CONNS 40

/* connect() to MMDS:80 within the timeout: the fd, or -errno. */
static int kconnect(struct evil *ev)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(MMDS_PORT),
				 .sin_addr.s_addr = htonl(ev->mmds_ip)};
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int err = ETIMEDOUT;
	socklen_t el = sizeof(err);
	if (poll(&p, 1, (int)(ev->timeout * 1000)) == 1)
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err) {
		close(fd);
		return -err;
	}
	fcntl(fd, F_SETFL, 0);
	struct timeval tv = {.tv_sec = (time_t)ev->timeout};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static bool write_all(int fd, const void *p, size_t len)
{
	const char *c = p;
	while (len) {
		ssize_t n = write(fd, c, len);
		if (n <= 0)
			return false;
		c += n;
		len -= (size_t)n;
	}
	return true;
}

/* A whole GET over a kernel socket: the status, or -errno. */
static int kget(struct evil *ev)
{
	int fd = kconnect(ev);
	if (fd < 0)
		return fd;
	char buf[1024];
	int status = -EIO;
	if (write_all(fd, GET, sizeof(GET) - 1)) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = 0;
			if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
				status = -EPROTO;
		} else {
			status = n < 0 ? -errno : -ECONNABORTED;
		}
	}
	close(fd);
	return status;
}

/* 40 connections, each holding a request that never ends (2000 bytes of
 * it); then one of them goes past the 2500-byte buffer; then all close and
 * a GET must work. */
static bool s_hold_partial(struct evil *ev)
{
	static char partial[2000];
	int fds[HOLD_CONNS], held = 0, refused = 0, other = 0;
	memset(partial, 'a', sizeof(partial));
	memcpy(partial, "GET /latest/meta-data HTTP/1.1\r\nX-Pad: ", 39);
	for (int i = 0; i < HOLD_CONNS; i++) {
		int fd = kconnect(ev);
		if (fd >= 0 && write_all(fd, partial, sizeof(partial))) {
			fds[held++] = fd;
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (fd == -ECONNREFUSED || fd == -ECONNRESET)
			refused++;
		else
			other++;
	}
	pause_ms(500);
	int extra = kget(ev); /* with the table full: refused */
	const char *overflow = "none";
	if (held) {
		static char more[1000];
		memset(more, 'b', sizeof(more));
		char c;
		if (!write_all(fds[0], more, sizeof(more)))
			overflow = "write-failed";
		else if (read(fds[0], &c, 1) < 0)
			overflow = errno == ECONNRESET ? "reset" : "no-reset";
		else
			overflow = "answered";
	}
	for (int i = 0; i < held; i++)
		close(fds[i]);
	pause_ms(1000);
	int after = kget(ev);
	note(ev, "held=%d refused=%d other=%d extra=%d overflow=%s after=%d", held, refused, other,
	     extra, overflow, after);
	return true;
}

/* The guest kernel's own GET: after everything else, MMDS still serves. */
static bool s_kernel_get(struct evil *ev)
{
	note(ev, "status=%d", kget(ev));
	return true;
}

static const struct scenario scenarios[] = {
	/* Not MMDS's: left for the TAP. */
	{"runt", "14-byte frame, IPv4 ethertype, no IP header", s_runt},
	{"ipv4-short", "IPv4 header cut before the destination's last byte", s_ipv4_short},
	{"arp-short", "ARP request cut before the target address's last byte", s_arp_short},
	{"vlan", "802.1Q-tagged SYN to MMDS", s_vlan},
	{"ethertypes", "IPv4 SYN to MMDS behind ethertypes IPv6, 0, 0x88b5, 0xffff, 0x0801",
	 s_ethertypes},
	/* Malformed: MMDS takes and drops them (rx_accepted_err). */
	{"ip-bad-csum", "IPv4 header checksum wrong", s_ip_bad_csum},
	{"ip-version", "IP version 5 under the IPv4 ethertype", s_ip_version},
	{"ip-ihl-short", "IHL 4", s_ip_ihl_short},
	{"ip-ihl-long", "IHL 15 in a 44-byte packet", s_ip_ihl_long},
	{"ip-total-long", "total length 1500 in a 44-byte packet", s_ip_total_long},
	{"ip-total-short", "total length 19, below the header", s_ip_total_short},
	{"tcp-bad-csum", "SYN with a wrong TCP checksum", s_tcp_bad_csum},
	{"tcp-doff-short", "TCP data offset 4", s_tcp_doff_short},
	{"tcp-doff-long", "TCP data offset 15 in a 24-byte segment", s_tcp_doff_long},
	{"tcp-short", "IP total length leaves 12 bytes of TCP", s_tcp_short},
	{"tcp-opt-overrun", "SYN option running past the header", s_tcp_opt_overrun},
	{"tcp-opt-zero-len", "SYN option of length 0", s_tcp_opt_zero_len},
	{"tcp-mss-zero", "SYN with MSS 0", s_tcp_mss_zero},
	{"tcp-mss-len", "SYN with an MSS option of length 6", s_tcp_mss_len},
	{"tcp-port", "SYN to port 8080", s_tcp_port},
	{"tcp-sport-zero", "SYN from port 0", s_tcp_sport_zero},
	{"arp-garbage", "ARP requests with htype 6, ptype 0x86dd, hlen 8, plen 16",
	 s_arp_garbage},
	/* Odd but well-formed (rx_accepted_unusual or rx_bad_eth). */
	{"ip-frag-mf", "SYN with More Fragments", s_ip_frag_mf},
	{"ip-frag-offset", "SYN at fragment offset 800", s_ip_frag_offset},
	{"ip-udp", "UDP to MMDS", s_ip_udp},
	{"ip-icmp", "ICMP echo request to MMDS", s_ip_icmp},
	{"arp-reply", "ARP reply about MMDS", s_arp_reply},
	{"arp-op-junk", "ARP opcode 0x1234", s_arp_op_junk},
	{"arp-multicast-sha", "ARP request from a multicast MAC", s_arp_multicast_sha},
	{"eth-multicast-src", "SYN from a multicast source MAC", s_eth_multicast_src},
	{"tcp-no-conn", "data for no connection (MMDS answers RST)", s_tcp_no_conn},
	{"ip-padding", "SYN followed by 1000 bytes of Ethernet padding", s_ip_padding},
	/* Floods (-n frames each). */
	{"rst-storm", "RSTs from random ports", s_rst_storm},
	{"fin-storm", "FIN+ACKs from random ports", s_fin_storm},
	{"syn-flood", "SYNs from consecutive ports, never completed", s_syn_flood},
	{"recover", "GETs on fresh connections until one is answered", s_recover},
	{"garbage", "random frames to the MMDS address", s_garbage},
	/* Inside a connection. */
	{"conn-garbage", "out-of-window data, RST, FIN; ACK of unsent data; then a GET",
	 s_conn_garbage},
	{"conn-storm", "out-of-window RSTs and FINs, ACKs of unsent data; then a GET",
	 s_conn_storm},
	{"conn-oversized", "a GET in front of a 60000-byte segment", s_conn_oversized},
	/* Needs an MTU of 65535. */
	{"oversized", "65535-byte IPv4 packet, no connection", s_oversized},
	{"oversized-bad-csum", "the same with a wrong TCP checksum", s_oversized_bad_csum},
	/* The kernel's TCP. */
	{"hold-partial", "40 connections holding partial requests, one overflowing",
	 s_hold_partial},
	{"kernel-get", "a GET over a kernel socket", s_kernel_get},
};

#define NR_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static const struct scenario *find_scenario(const char *name)
{
	for (size_t i = 0; i < NR_SCENARIOS; i++)
		if (!strcmp(scenarios[i].name, name))
			return &scenarios[i];
	return NULL;
}

static void setup(struct evil *ev)
{
	ev->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (ev->fd < 0) {
		perror("net-evil: AF_PACKET socket");
		exit(1);
	}
	ev->ifindex = (int)if_nametoindex(ev->ifname);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ev->ifname);
	if (!ev->ifindex || ioctl(ev->fd, SIOCGIFHWADDR, &ifr)) {
		fprintf(stderr, "net-evil: no interface %s\n", ev->ifname);
		exit(1);
	}
	memcpy(ev->mac, ifr.ifr_hwaddr.sa_data, 6);
	struct sockaddr_ll at = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = ev->ifindex};
	int big = 4 << 20;
	if (bind(ev->fd, (struct sockaddr *)&at, sizeof(at))) {
		perror("net-evil: bind");
		exit(1);
	}
	/* Floods draw hundreds of answers: room for them (FORCE: past
	 * rmem_max, as root). */
	if (setsockopt(ev->fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)))
		setsockopt(ev->fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

static bool run(struct evil *ev, const struct scenario *s)
{
	ev->sent = ev->arp = 0;
	ev->extra[0] = 0;
	ev->marked = false;
	ev->number = (unsigned)(s - scenarios);
	drain(ev);
	if (!arp_fence(ev)) {
		printf("EMBER-EVIL %s result=no-arp sent=0 arp=%u\n", s->name, ev->arp);
		return false;
	}
	bool ok = s->run(ev);
	int e = errno;
	bool fenced = arp_fence(ev);
	if (!ok)
		printf("EMBER-EVIL %s result=error:%s sent=%u arp=%u%s\n", s->name, strerror(e),
		       ev->sent, ev->arp, ev->extra);
	else
		printf("EMBER-EVIL %s result=%s sent=%u arp=%u%s\n", s->name,
		       fenced ? "done" : "no-arp", ev->sent, ev->arp, ev->extra);
	return ok && fenced;
}

static bool parse_ip(const char *s, uint32_t *out)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return false;
	*out = ntohl(a.s_addr);
	return true;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: net-evil [-i IFACE] [-a MMDS_IP] [-s SRC_IP] [-n COUNT] [-t SECONDS] "
		   "SCENARIO...\n"
		   "       net-evil -l    (list the scenarios)\n");
}

int main(int argc, char **argv)
{
	static struct evil ev = {.ifname = "eth0", .count = 1000, .timeout = 5};
	parse_ip("169.254.169.254", &ev.mmds_ip);
	parse_ip("192.0.2.7", &ev.src_ip); /* TEST-NET-1: never the guest's */
	int opt;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "i:a:s:n:t:lh")) != -1) {
		switch (opt) {
		case 'i':
			ev.ifname = optarg;
			break;
		case 'a':
		case 's':
			if (!parse_ip(optarg, opt == 'a' ? &ev.mmds_ip : &ev.src_ip)) {
				fprintf(stderr, "net-evil: bad address %s\n", optarg);
				return 2;
			}
			break;
		case 'n':
			ev.count = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 't':
			ev.timeout = atof(optarg);
			break;
		case 'l':
			for (size_t i = 0; i < NR_SCENARIOS; i++)
				printf("%-20s %s\n", scenarios[i].name, scenarios[i].what);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind == argc || !(ev.timeout > 0) || !ev.count || ev.count > 1000000) {
		usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++)
		if (!find_scenario(argv[i])) {
			fprintf(stderr, "net-evil: no scenario %s (-l lists them)\n", argv[i]);
			return 2;
		}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ev.rng = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)getpid() << 16 ^ 1;
	setup(&ev);
	int rc = 0;
	for (int i = optind; i < argc; i++)
		if (!run(&ev, find_scenario(argv[i])))
			rc = 1;
	return rc;
}
