#include "devices/net_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/config.h"

bool config_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!(c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z')))
			return false;
	}
	return true;
}

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
	if (!config_id_valid(id))
		return err_set(e, "network-interfaces: iface_id \"%s\" is invalid: use 1 to 64 "
				  "letters, digits or '_'", id);
	return 0;
}

int net_config_parse(json_t *j, struct net_config *out, ember_err *e)
{
	const char *id, *dev, *mac = NULL;
	json_t *rx = NULL, *tx = NULL;
	json_int_t mtu = 0;
	json_error_t je;
	if (json_unpack_ex(j, &je, JSON_STRICT, "{s:s, s:s, s?s, s?I, s?o, s?o}", "iface_id", &id,
			   "host_dev_name", &dev, "guest_mac", &mac, "mtu", &mtu,
			   "rx_rate_limiter", &rx, "tx_rate_limiter", &tx)) {
		static const struct field_spec spec[] = {
			{"iface_id", JSON_STRING, true},
			{"host_dev_name", JSON_STRING, true},
			{"guest_mac", JSON_STRING, false},
			{"mtu", JSON_INTEGER, false},
			{"rx_rate_limiter", JSON_OBJECT, false},
			{"tx_rate_limiter", JSON_OBJECT, false},
		};
		return config_unpack_error("network-interfaces", j, spec, 6, &je, e);
	}
	struct net_config c = {0};
	if (check_id(id, e))
		return -1;
	if (!*dev || strlen(dev) > NET_IFNAME_MAX)
		return err_set(e, "network-interfaces: host_dev_name \"%s\" must be 1 to %d "
				  "characters", dev, NET_IFNAME_MAX);
	if (json_object_get(j, "mtu")) {
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
	const char *id;
	json_t *rx = NULL, *tx = NULL;
	json_error_t je;
	if (json_unpack_ex(j, &je, JSON_STRICT, "{s:s, s?o, s?o}", "iface_id", &id,
			   "rx_rate_limiter", &rx, "tx_rate_limiter", &tx)) {
		static const struct field_spec spec[] = {
			{"iface_id", JSON_STRING, true},
			{"rx_rate_limiter", JSON_OBJECT, false},
			{"tx_rate_limiter", JSON_OBJECT, false},
		};
		return config_unpack_error("network-interfaces", j, spec, 3, &je, e);
	}
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

json_t *net_config_json(const struct net_config *c)
{
	json_t *j = json_pack("{s:s, s:s}", "iface_id", c->iface_id, "host_dev_name",
			      c->host_dev_name);
	if (c->mtu)
		json_object_set_new(j, "mtu", json_integer(c->mtu));
	if (c->has_guest_mac) {
		char mac[18];
		const uint8_t *m = c->guest_mac;
		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
			 m[4], m[5]);
		json_object_set_new(j, "guest_mac", json_string(mac));
	}
	/* No limiter: the field is left out (the spec has no null for it). */
	json_t *rx = rate_limiter_config_json(&c->rx), *tx = rate_limiter_config_json(&c->tx);
	if (json_is_null(rx))
		json_decref(rx);
	else
		json_object_set_new(j, "rx_rate_limiter", rx);
	if (json_is_null(tx))
		json_decref(tx);
	else
		json_object_set_new(j, "tx_rate_limiter", tx);
	return j;
}
