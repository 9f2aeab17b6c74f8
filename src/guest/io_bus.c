#include "guest/io_bus.h"

#include <string.h>

int io_bus_add(struct io_bus *bus, uint64_t base, uint64_t len, const struct io_device_ops *ops,
	       void *ctx)
{
	if (bus->nr >= IO_BUS_MAX_DEVICES || len == 0 || base + len < base)
		return -1;
	for (int i = 0; i < bus->nr; i++) {
		const struct io_range *r = &bus->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return -1;
	}
	bus->ranges[bus->nr++] = (struct io_range){base, len, ops, ctx};
	return 0;
}

static const struct io_range *find(const struct io_bus *bus, uint64_t addr, uint32_t len)
{
	for (int i = 0; i < bus->nr; i++) {
		const struct io_range *r = &bus->ranges[i];
		if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base))
			return r;
	}
	return NULL;
}

bool io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
	const struct io_range *r = find(bus, addr, len);
	if (!r || !r->ops->read) {
		memset(data, 0xff, len);
		return r != NULL;
	}
	r->ops->read(r->ctx, addr - r->base, data, len);
	return true;
}

bool io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
	const struct io_range *r = find(bus, addr, len);
	if (!r || !r->ops->write)
		return r != NULL;
	r->ops->write(r->ctx, addr - r->base, data, len);
	return true;
}
