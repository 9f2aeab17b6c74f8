/* Port-I/O and MMIO dispatch: vCPU exits are routed to the device whose
 * range contains the address. Buses are filled while the VM is built and
 * only read afterwards, so lookups need no lock; devices lock themselves. */
#ifndef EMBER_IO_BUS_H
#define EMBER_IO_BUS_H

#include <stdbool.h>
#include <stdint.h>

#define IO_BUS_MAX_DEVICES 32

struct io_device_ops {
	/* offset is relative to the range's base; len is 1, 2, 4 or 8. */
	void (*read)(void *ctx, uint64_t offset, uint8_t *data, uint32_t len);
	void (*write)(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len);
};

struct io_range {
	uint64_t base, len;
	const struct io_device_ops *ops;
	void *ctx;
};

struct io_bus {
	struct io_range ranges[IO_BUS_MAX_DEVICES];
	int nr;
};

/* -1 if the range overlaps another or the bus is full. */
int io_bus_add(struct io_bus *bus, uint64_t base, uint64_t len, const struct io_device_ops *ops,
	       void *ctx);
/* False if nothing claims addr; reads of unclaimed addresses see 0xff. */
bool io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
bool io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

#endif
