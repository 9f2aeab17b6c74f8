/* Firecracker's NetworkInterface object (PUT /network-interfaces/{id},
 * "network-interfaces" in a config file) and its PATCH form. The config
 * struct is shared by the API and the config file; the device that uses it
 * is src/devices/virtio_net.c (issue 5). */
#ifndef EMBER_NET_CONFIG_H
#define EMBER_NET_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "devices/rate_limiter.h"
#include "util/err.h"

/* Linux's IFNAMSIZ minus the NUL. */
#define NET_IFNAME_MAX 15

struct net_config {
	char *iface_id;
	char *host_dev_name;
	bool has_guest_mac;
	uint8_t guest_mac[6];
	uint16_t mtu; /* 0: not set (VIRTIO_NET_F_MTU not offered) */
	struct rate_limiter_config rx, tx;
};

/* PartialNetworkInterface: only the rate limiters change after boot. */
struct net_patch {
	char *iface_id;
	struct rate_limiter_config rx, tx;
};

int net_config_parse(json_t *j, struct net_config *out, ember_err *e);
int net_patch_parse(json_t *j, struct net_patch *out, ember_err *e);
void net_config_free(struct net_config *c);
void net_patch_free(struct net_patch *p);
json_t *net_config_json(const struct net_config *c);

#endif
