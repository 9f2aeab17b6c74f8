#include "devices/device.h"

const struct device_ops *const device_kinds[] = {
	&block_device_ops,
	&net_device_ops,
	NULL,
};
