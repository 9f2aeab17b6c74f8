/* Ethernet, ARP, IPv4 and TCP as the MMDS network stack reads and writes
 * them: byte order, the Internet checksum (RFC 1071) and the header layouts.
 * Every reader takes the number of bytes it may look at and checks each
 * length field against it; every writer takes the room it has. */
#ifndef EMBER_MMDS_NET_WIRE_H
#define EMBER_MMDS_NET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MMDS_ETH_HLEN 14
#define MMDS_ETH_ALEN 6
#define MMDS_ETHERTYPE_IPV4 0x0800
#define MMDS_ETHERTYPE_ARP 0x0806
#define MMDS_ARP_LEN 28 /* an Ethernet/IPv4 ARP packet */
#define MMDS_IPV4_HLEN 20
#define MMDS_IPPROTO_TCP 6
#define MMDS_TCP_HLEN 20
#define MMDS_TCP_MSS_OPT_LEN 4
/* Ethernet, IPv4 and TCP headers without options: what every segment costs. */
#define MMDS_TCP_FRAME_HLEN (MMDS_ETH_HLEN + MMDS_IPV4_HLEN + MMDS_TCP_HLEN)

/* Where a frame's fields are, from its first byte. */
#define MMDS_ETH_TYPE_OFF 12
#define MMDS_IPV4_DST_OFF (MMDS_ETH_HLEN + 16)
#define MMDS_ARP_TPA_OFF (MMDS_ETH_HLEN + 24)

enum {
	MMDS_TCP_FIN = 0x01,
	MMDS_TCP_SYN = 0x02,
	MMDS_TCP_RST = 0x04,
	MMDS_TCP_PSH = 0x08,
	MMDS_TCP_ACK = 0x10,
};

static inline uint16_t mmds_rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t mmds_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void mmds_wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void mmds_wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Adds p[0..len) to a running one's complement sum. Chunks must start at
 * even offsets of the summed data (all but the last have even lengths). */
uint32_t mmds_csum_add(uint32_t sum, const uint8_t *p, size_t len);
/* The checksum field for a running sum: its folded one's complement. A
 * packet whose sum includes a correct checksum field gives 0. */
uint16_t mmds_csum_fold(uint32_t sum);
/* The TCP/UDP pseudo-header of RFC 793 (addresses in host byte order). */
uint32_t mmds_csum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, size_t len);

enum mmds_parse {
	MMDS_PARSE_OK,
	MMDS_PARSE_MALFORMED, /* a length or field that cannot be */
	MMDS_PARSE_BAD_CSUM,
};

/* An IPv4 packet from the guest. */
struct mmds_ipv4_in {
	uint32_t src, dst; /* host byte order */
	uint8_t proto;
	bool fragment; /* more fragments follow, or not the first */
	const uint8_t *payload;
	size_t len; /* payload bytes, as the header's total length says */
};

/* Reads the IPv4 packet at p, of which len bytes are there (an Ethernet
 * frame's padding may follow the packet). Options are skipped. */
enum mmds_parse mmds_ipv4_parse(const uint8_t *p, size_t len, struct mmds_ipv4_in *out);

/* A TCP segment from the guest. */
struct mmds_tcp_in {
	uint16_t src_port, dst_port;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t window;
	uint16_t mss; /* the MSS option of a SYN; 0 when there is none */
	const uint8_t *data;
	size_t len;
};

/* Reads the TCP segment tcp[0..len) sent from src to dst. With verify the
 * checksum must be right; without it (the guest left it to an offload) it
 * is not looked at. Options are read on SYNs only (MSS); a malformed option
 * list there is MMDS_PARSE_MALFORMED. */
enum mmds_parse mmds_tcp_parse(const uint8_t *tcp, size_t len, uint32_t src, uint32_t dst,
			       bool verify, struct mmds_tcp_in *out);

/* A segment to write. */
struct mmds_tcp_out {
	const uint8_t *src_mac, *dst_mac;
	uint32_t src_ip, dst_ip;
	uint16_t src_port, dst_port;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t window;
	uint16_t mss; /* written as the MSS option when not 0 */
};

/* Writes the frame (Ethernet, IPv4 with DF and TTL 64, TCP, data) with both
 * checksums. Its length, or 0 when it does not fit in cap. */
size_t mmds_tcp_write(uint8_t *buf, size_t cap, const struct mmds_tcp_out *o, const uint8_t *data,
		      size_t len);

/* An ARP request from the guest (Ethernet hardware, IPv4 protocol). */
struct mmds_arp_in {
	uint16_t op;
	const uint8_t *sha; /* sender MAC */
	uint32_t spa, tpa;
};

/* Reads the ARP packet p[0..len). MALFORMED unless it is Ethernet/IPv4. */
enum mmds_parse mmds_arp_parse(const uint8_t *p, size_t len, struct mmds_arp_in *out);

/* Writes the frame answering "who has ip" from to_mac/to_ip: ip is at mac.
 * Its length (42), or 0 when cap is too small. */
size_t mmds_arp_write_reply(uint8_t *buf, size_t cap, const uint8_t mac[MMDS_ETH_ALEN],
			    uint32_t ip, const uint8_t to_mac[MMDS_ETH_ALEN], uint32_t to_ip);

#endif
