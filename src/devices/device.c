#include "devices/device.h"

#include <string.h>

const struct device_ops *const device_kinds[] = {
	&block_device_ops,
	&net_device_ops,
	&entropy_device_ops,
	&vsock_device_ops,
	&balloon_device_ops,
	NULL,
};

const struct device_ops *device_kind_by_key(const char *key)
{
	for (size_t i = 0; device_kinds[i]; i++)
		if (device_kinds[i]->config && !strcmp(device_kinds[i]->config->key, key))
			return device_kinds[i];
	return NULL;
}
