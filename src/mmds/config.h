/* Firecracker's MmdsConfig (PUT /mmds/config, "mmds-config" in a config
 * file): which MMDS version the guest talks to, through which network
 * interfaces, at which link-local address, and whether it answers in IMDS
 * text whatever the guest accepts. */
#ifndef EMBER_MMDS_CONFIG_H
#define EMBER_MMDS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"

enum mmds_version {
	MMDS_V1, /* tokens optional (deprecated by Firecracker, still its default) */
	MMDS_V2, /* GET needs a session token */
};

/* 169.254.169.254, host byte order. */
#define MMDS_DEFAULT_IPV4 0xa9fea9feu

struct mmds_config {
	enum mmds_version version;
	char **network_interfaces; /* iface_id strings, owned */
	size_t n_network_interfaces;
	uint32_t ipv4_address; /* host byte order */
	bool imds_compat;
};

/* Checks a MmdsConfig object strictly (unknown fields, types, version V1 or
 * V2, a non-empty network_interfaces list, ipv4_address in 169.254.1.0 to
 * 169.254.254.255) and replaces *out only when all of it is valid. out must
 * be zeroed or hold a parsed config. */
int mmds_config_parse(json_t *j, struct mmds_config *out, ember_err *e);
void mmds_config_free(struct mmds_config *c);
/* Firecracker checks the listed interfaces exist when the config is set:
 * every id must be among the n ids known. */
int mmds_config_check_ifaces(const struct mmds_config *c, const char *const *known, size_t n,
			     ember_err *e);
const char *mmds_version_name(enum mmds_version v);
/* The JSON view for GET /vm/config ("mmds-config"); NULL when out of memory. */
json_t *mmds_config_json(const struct mmds_config *c);

#endif
