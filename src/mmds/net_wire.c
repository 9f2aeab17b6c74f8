#include "mmds/net_wire.h"

#include <string.h>

uint32_t mmds_csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	/* 64-bit accumulator: no carry is lost for any frame size. */
	uint64_t s = sum;
	size_t i = 0;
	for (; i + 1 < len; i += 2)
		s += mmds_rd16(p + i);
	if (i < len)
		s += (uint32_t)p[i] << 8;
	while (s >> 32)
		s = (s & 0xffffffffu) + (s >> 32);
	return (uint32_t)s;
}

uint16_t mmds_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

uint32_t mmds_csum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, size_t len)
{
	uint64_t s = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto +
		     (len & 0xffff) + (len >> 16 & 0xffff);
	while (s >> 32)
		s = (s & 0xffffffffu) + (s >> 32);
	return (uint32_t)s;
}

enum mmds_parse mmds_ipv4_parse(const uint8_t *p, size_t len, struct mmds_ipv4_in *out)
{
	if (len < MMDS_IPV4_HLEN || p[0] >> 4 != 4)
		return MMDS_PARSE_MALFORMED;
	size_t hlen = (size_t)(p[0] & 0xf) * 4;
	size_t total = mmds_rd16(p + 2);
	if (hlen < MMDS_IPV4_HLEN || hlen > total || total > len)
		return MMDS_PARSE_MALFORMED;
	if (mmds_csum_fold(mmds_csum_add(0, p, hlen)) != 0)
		return MMDS_PARSE_BAD_CSUM;
	uint16_t frag = mmds_rd16(p + 6);
	out->fragment = (frag & 0x2000) || (frag & 0x1fff);
	out->proto = p[9];
	out->src = mmds_rd32(p + 12);
	out->dst = mmds_rd32(p + 16);
	out->payload = p + hlen;
	out->len = total - hlen;
	return MMDS_PARSE_OK;
}

/* The MSS option of a SYN: 0 if absent, -1 if the option list is broken. */
static int syn_mss(const uint8_t *opt, size_t len)
{
	int mss = 0;
	size_t i = 0;
	while (i < len) {
		uint8_t kind = opt[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= len || opt[i + 1] < 2 || opt[i + 1] > len - i)
			return -1;
		uint8_t olen = opt[i + 1];
		if (kind == 2) {
			if (olen != MMDS_TCP_MSS_OPT_LEN || mmds_rd16(opt + i + 2) == 0)
				return -1;
			mss = mmds_rd16(opt + i + 2);
		}
		i += olen;
	}
	return mss;
}

enum mmds_parse mmds_tcp_parse(const uint8_t *tcp, size_t len, uint32_t src, uint32_t dst,
			       bool verify, struct mmds_tcp_in *out)
{
	if (len < MMDS_TCP_HLEN || len > 0xffff)
		return MMDS_PARSE_MALFORMED;
	size_t hlen = (size_t)(tcp[12] >> 4) * 4;
	if (hlen < MMDS_TCP_HLEN || hlen > len)
		return MMDS_PARSE_MALFORMED;
	if (verify) {
		uint32_t sum = mmds_csum_pseudo(src, dst, MMDS_IPPROTO_TCP, len);
		if (mmds_csum_fold(mmds_csum_add(sum, tcp, len)) != 0)
			return MMDS_PARSE_BAD_CSUM;
	}
	out->src_port = mmds_rd16(tcp);
	out->dst_port = mmds_rd16(tcp + 2);
	out->seq = mmds_rd32(tcp + 4);
	out->ack = mmds_rd32(tcp + 8);
	out->flags = tcp[13] & 0x3f;
	out->window = mmds_rd16(tcp + 14);
	out->mss = 0;
	if (out->flags & MMDS_TCP_SYN) {
		int mss = syn_mss(tcp + MMDS_TCP_HLEN, hlen - MMDS_TCP_HLEN);
		if (mss < 0)
			return MMDS_PARSE_MALFORMED;
		out->mss = (uint16_t)mss;
	}
	out->data = tcp + hlen;
	out->len = len - hlen;
	return MMDS_PARSE_OK;
}

static uint8_t *write_eth(uint8_t *buf, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(buf, dst, MMDS_ETH_ALEN);
	memcpy(buf + MMDS_ETH_ALEN, src, MMDS_ETH_ALEN);
	mmds_wr16(buf + MMDS_ETH_TYPE_OFF, type);
	return buf + MMDS_ETH_HLEN;
}

size_t mmds_tcp_write(uint8_t *buf, size_t cap, const struct mmds_tcp_out *o, const uint8_t *data,
		      size_t len)
{
	size_t thlen = MMDS_TCP_HLEN + (o->mss ? MMDS_TCP_MSS_OPT_LEN : 0);
	size_t iplen = MMDS_IPV4_HLEN + thlen + len;
	if (iplen > 0xffff || cap < MMDS_ETH_HLEN || cap - MMDS_ETH_HLEN < iplen)
		return 0;
	uint8_t *ip = write_eth(buf, o->dst_mac, o->src_mac, MMDS_ETHERTYPE_IPV4);
	memset(ip, 0, MMDS_IPV4_HLEN);
	ip[0] = 0x45;
	mmds_wr16(ip + 2, (uint16_t)iplen);
	mmds_wr16(ip + 6, 0x4000); /* DF: MMDS segments fit the guest's MSS */
	ip[8] = 64;
	ip[9] = MMDS_IPPROTO_TCP;
	mmds_wr32(ip + 12, o->src_ip);
	mmds_wr32(ip + 16, o->dst_ip);
	mmds_wr16(ip + 10, mmds_csum_fold(mmds_csum_add(0, ip, MMDS_IPV4_HLEN)));

	uint8_t *tcp = ip + MMDS_IPV4_HLEN;
	memset(tcp, 0, thlen);
	mmds_wr16(tcp, o->src_port);
	mmds_wr16(tcp + 2, o->dst_port);
	mmds_wr32(tcp + 4, o->seq);
	mmds_wr32(tcp + 8, o->ack);
	tcp[12] = (uint8_t)(thlen / 4 << 4);
	tcp[13] = o->flags;
	mmds_wr16(tcp + 14, o->window);
	if (o->mss) {
		tcp[20] = 2;
		tcp[21] = MMDS_TCP_MSS_OPT_LEN;
		mmds_wr16(tcp + 22, o->mss);
	}
	if (len)
		memcpy(tcp + thlen, data, len);
	uint32_t sum = mmds_csum_pseudo(o->src_ip, o->dst_ip, MMDS_IPPROTO_TCP, thlen + len);
	mmds_wr16(tcp + 16, mmds_csum_fold(mmds_csum_add(sum, tcp, thlen + len)));
	return MMDS_ETH_HLEN + iplen;
}

enum mmds_parse mmds_arp_parse(const uint8_t *p, size_t len, struct mmds_arp_in *out)
{
	if (len < MMDS_ARP_LEN || mmds_rd16(p) != 1 || mmds_rd16(p + 2) != MMDS_ETHERTYPE_IPV4 ||
	    p[4] != MMDS_ETH_ALEN || p[5] != 4)
		return MMDS_PARSE_MALFORMED;
	out->op = mmds_rd16(p + 6);
	out->sha = p + 8;
	out->spa = mmds_rd32(p + 14);
	out->tpa = mmds_rd32(p + 24);
	return MMDS_PARSE_OK;
}

size_t mmds_arp_write_reply(uint8_t *buf, size_t cap, const uint8_t mac[MMDS_ETH_ALEN],
			    uint32_t ip, const uint8_t to_mac[MMDS_ETH_ALEN], uint32_t to_ip)
{
	if (cap < MMDS_ETH_HLEN + MMDS_ARP_LEN)
		return 0;
	uint8_t *a = write_eth(buf, to_mac, mac, MMDS_ETHERTYPE_ARP);
	mmds_wr16(a, 1);
	mmds_wr16(a + 2, MMDS_ETHERTYPE_IPV4);
	a[4] = MMDS_ETH_ALEN;
	a[5] = 4;
	mmds_wr16(a + 6, 2);
	memcpy(a + 8, mac, MMDS_ETH_ALEN);
	mmds_wr32(a + 14, ip);
	memcpy(a + 18, to_mac, MMDS_ETH_ALEN);
	mmds_wr32(a + 24, to_ip);
	return MMDS_ETH_HLEN + MMDS_ARP_LEN;
}
