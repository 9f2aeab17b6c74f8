#include "mmds/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json_strict.h"

const char *mmds_version_name(enum mmds_version v)
{
	return v == MMDS_V2 ? "V2" : "V1";
}

void mmds_config_free(struct mmds_config *c)
{
	for (size_t i = 0; i < c->n_network_interfaces; i++)
		free(c->network_interfaces[i]);
	free(c->network_interfaces);
	memset(c, 0, sizeof(*c));
}

/* Dotted quad as Rust's Ipv4Addr parses it: four decimal octets, no sign,
 * no leading zero, nothing else. */
static bool parse_ipv4(const char *s, uint32_t *out)
{
	uint32_t addr = 0;
	for (int part = 0; part < 4; part++) {
		if (part && *s++ != '.')
			return false;
		unsigned v = 0, digits = 0;
		const char *start = s;
		while (*s >= '0' && *s <= '9' && digits < 4) {
			v = v * 10 + (unsigned)(*s++ - '0');
			digits++;
		}
		if (!digits || digits > 3 || v > 255 || (digits > 1 && *start == '0'))
			return false;
		addr = addr << 8 | v;
	}
	if (*s)
		return false;
	*out = addr;
	return true;
}

/* RFC 3927 minus its reserved first and last /24, as Firecracker checks. */
static bool link_local_usable(uint32_t a)
{
	unsigned third = a >> 8 & 0xff;
	return (a >> 16) == 0xa9fe && third != 0 && third != 255;
}

int mmds_config_parse(json_t *j, struct mmds_config *out, ember_err *e)
{
	struct {
		const char *version, *ipv4_address;
		json_t *network_interfaces;
		int imds_compat;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), version, JF_STRING, false),
		JFIELD(__typeof__(v), network_interfaces, JF_ARRAY, true),
		JFIELD(__typeof__(v), ipv4_address, JF_STRING, false),
		JFIELD(__typeof__(v), imds_compat, JF_BOOL, false),
	};
	if (json_strict_parse("mmds-config", j, f, 4, &v, e))
		return -1;
	const char *version = v.version;
	json_t *ifaces = v.network_interfaces;
	int compat = v.imds_compat == 1;
	for (size_t i = 0; i < json_array_size(ifaces); i++)
		if (!json_is_string(json_array_get(ifaces, i)))
			return err_set(e, "mmds-config: network_interfaces[%zu]: expected string, "
					  "got %s", i, json_type_name(json_array_get(ifaces, i)));

	struct mmds_config c = {.ipv4_address = MMDS_DEFAULT_IPV4, .imds_compat = compat};
	if (version && !strcmp(version, "V2"))
		c.version = MMDS_V2;
	else if (version && strcmp(version, "V1"))
		return err_set(e, "mmds-config: version must be V1 or V2 (got \"%s\")", version);
	if (!json_array_size(ifaces))
		return err_set(e, "mmds-config: network_interfaces is empty: the list of network "
				  "interface IDs that allow forwarding MMDS requests is empty");
	if (v.ipv4_address) {
		const char *s = v.ipv4_address;
		if (!parse_ipv4(s, &c.ipv4_address))
			return err_set(e, "mmds-config: ipv4_address \"%s\" is not an IPv4 address", s);
		if (!link_local_usable(c.ipv4_address))
			return err_set(e, "mmds-config: ipv4_address %s is not link local (it must be "
					  "in 169.254.1.0 to 169.254.254.255)", s);
	}

	size_t n = json_array_size(ifaces);
	c.network_interfaces = calloc(n, sizeof(char *));
	if (!c.network_interfaces)
		return err_set(e, "mmds-config: out of memory");
	for (; c.n_network_interfaces < n; c.n_network_interfaces++) {
		const char *id = json_string_value(json_array_get(ifaces, c.n_network_interfaces));
		char *dup = strdup(id);
		if (!dup) {
			mmds_config_free(&c);
			return err_set(e, "mmds-config: out of memory");
		}
		c.network_interfaces[c.n_network_interfaces] = dup;
	}
	mmds_config_free(out);
	*out = c;
	return 0;
}

int mmds_config_check_ifaces(const struct mmds_config *c, const char *const *known, size_t n,
			     ember_err *e)
{
	for (size_t i = 0; i < c->n_network_interfaces; i++) {
		size_t k = 0;
		while (k < n && strcmp(known[k], c->network_interfaces[i]))
			k++;
		if (k == n)
			return err_set(e, "mmds-config: network interface \"%s\" does not exist",
				       c->network_interfaces[i]);
	}
	return 0;
}

json_t *mmds_config_json(const struct mmds_config *c)
{
	char ip[16];
	uint32_t a = c->ipv4_address;
	snprintf(ip, sizeof(ip), "%u.%u.%u.%u", a >> 24, a >> 16 & 0xff, a >> 8 & 0xff, a & 0xff);
	json_t *ifaces = json_array();
	for (size_t i = 0; ifaces && i < c->n_network_interfaces; i++)
		if (json_array_append_new(ifaces, json_string(c->network_interfaces[i]))) {
			json_decref(ifaces);
			return NULL;
		}
	if (!ifaces)
		return NULL;
	/* Firecracker's field order. */
	return json_pack("{s:s, s:b, s:o, s:s}", "version", mmds_version_name(c->version),
			 "imds_compat", c->imds_compat, "network_interfaces", ifaces,
			 "ipv4_address", ip);
}
