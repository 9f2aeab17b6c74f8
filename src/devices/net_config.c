#include "devices/net_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json_strict.h"

/* "06:00:AC:10:00:02": six two-digit hex bytes separated by colons. */
static int parse_mac(const char *s, uint8_t mac[6])
{
	if (strlen(s) != 17)
		return -1;
	for (int i = 0; i < 6; i++) {
		const char *p = s + i * 3;
		if (i < 5 && p[2] != ':')
			return -1;
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = p[k];
			unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
				     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
				     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
							    : 16;
			if (d == 16)
				return -1;
			v = v * 16 + d;
		}
		mac[i] = (uint8_t)v;
	}
	return 0;
}

static int check_id(const char *id, ember_err *e)
{
	if (!json_id_valid(id))
		return err_set(e, "network-interfaces: iface_id \"%s\" is invalid: use 1 to 64 "
				  "letters, digits or '_'", id);
	return 0;
}

int net_config_parse(json_t *j, struct net_config *out, ember_err *e)
{
	struct {
		const char *iface_id, *host_dev_name, *guest_mac;
		struct jint mtu;
		json_t *rx_rate_limiter, *tx_rate_limiter;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), iface_id, JF_STRING, true),
		JFIELD(__typeof__(v), host_dev_name, JF_STRING, true),
		JFIELD(__typeof__(v), guest_mac, JF_STRING, false),
		JFIELD(__typeof__(v), mtu, JF_INT, false),
		JFIELD(__typeof__(v), rx_rate_limiter, JF_OBJECT, false),
		JFIELD(__typeof__(v), tx_rate_limiter, JF_OBJECT, false),
	};
	if (json_strict_parse("network-interfaces", j, f, 6, &v, e))
		return -1;
	const char *id = v.iface_id, *dev = v.host_dev_name, *mac = v.guest_mac;
	json_t *rx = v.rx_rate_limiter, *tx = v.tx_rate_limiter;
	json_int_t mtu = v.mtu.v;
	struct net_config c = {0};
	if (check_id(id, e))
		return -1;
	if (!*dev || strlen(dev) > NET_IFNAME_MAX)
		return err_set(e, "network-interfaces: host_dev_name \"%s\" must be 1 to %d "
				  "characters", dev, NET_IFNAME_MAX);
	if (v.mtu.set) {
		if (mtu < 68 || mtu > 65535)
			return err_set(e, "network-interfaces: mtu must be between 68 and 65535 "
					  "(got %lld)", (long long)mtu);
		c.mtu = (uint16_t)mtu;
	}
	if (mac) {
		if (parse_mac(mac, c.guest_mac))
			return err_set(e, "network-interfaces: guest_mac \"%s\" is not a MAC address "
					  "like 06:00:AC:10:00:02", mac);
		c.has_guest_mac = true;
	}
	if ((rx && rate_limiter_config_parse_named(rx, "rx_rate_limiter", &c.rx, e)) ||
	    (tx && rate_limiter_config_parse_named(tx, "tx_rate_limiter", &c.tx, e)))
		return err_prefix(e, "network-interfaces");
	c.iface_id = strdup(id);
	c.host_dev_name = strdup(dev);
	net_config_free(out);
	*out = c;
	return 0;
}

int net_patch_parse(json_t *j, struct net_patch *out, ember_err *e)
{
	struct {
		const char *iface_id;
		json_t *rx_rate_limiter, *tx_rate_limiter;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), iface_id, JF_STRING, true),
		JFIELD(__typeof__(v), rx_rate_limiter, JF_OBJECT, false),
		JFIELD(__typeof__(v), tx_rate_limiter, JF_OBJECT, false),
	};
	if (json_strict_parse("network-interfaces", j, f, 3, &v, e))
		return -1;
	const char *id = v.iface_id;
	json_t *rx = v.rx_rate_limiter, *tx = v.tx_rate_limiter;
	struct net_patch p = {0};
	if (check_id(id, e))
		return -1;
	if ((rx && rate_limiter_config_parse_named(rx, "rx_rate_limiter", &p.rx, e)) ||
	    (tx && rate_limiter_config_parse_named(tx, "tx_rate_limiter", &p.tx, e)))
		return err_prefix(e, "network-interfaces");
	p.iface_id = strdup(id);
	net_patch_free(out);
	*out = p;
	return 0;
}

void net_config_free(struct net_config *c)
{
	free(c->iface_id);
	free(c->host_dev_name);
	memset(c, 0, sizeof(*c));
}

void net_patch_free(struct net_patch *p)
{
	free(p->iface_id);
	memset(p, 0, sizeof(*p));
}

/* Firecracker's NetworkInterfaceConfig: every field, null where unset. */
json_t *net_config_json(const struct net_config *c)
{
	json_t *j = json_pack("{s:s, s:s}", "iface_id", c->iface_id, "host_dev_name",
			      c->host_dev_name);
	json_t *mac = json_null();
	if (c->has_guest_mac) {
		char buf[18];
		const uint8_t *m = c->guest_mac;
		snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
			 m[4], m[5]);
		json_decref(mac);
		mac = json_string(buf);
	}
	json_object_set_new(j, "guest_mac", mac);
	json_object_set_new(j, "mtu", c->mtu ? json_integer(c->mtu) : json_null());
	json_object_set_new(j, "rx_rate_limiter", rate_limiter_config_json(&c->rx));
	json_object_set_new(j, "tx_rate_limiter", rate_limiter_config_json(&c->tx));
	return j;
}
