/* A fake virtio driver's register accesses, as Linux's virtio-mmio driver
 * makes them, for the device tests. */
#ifndef EMBER_TEST_FAKE_MMIO_H
#define EMBER_TEST_FAKE_MMIO_H

#include <stdint.h>
#include <string.h>

#include "virtio/mmio.h"

static inline uint32_t mmio_r32(struct virtio_mmio *m, uint64_t off)
{
	uint8_t b[4];
	virtio_mmio_read(m, off, b, 4);
	uint32_t v;
	memcpy(&v, b, 4);
	return v;
}

static inline void mmio_w32(struct virtio_mmio *m, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	memcpy(b, &v, 4);
	virtio_mmio_write(m, off, b, 4);
}

static inline void mmio_add_status(struct virtio_mmio *m, uint32_t bit)
{
	mmio_w32(m, VIRTIO_MMIO_STATUS, mmio_r32(m, VIRTIO_MMIO_STATUS) | bit);
}

static inline uint64_t mmio_device_features(struct virtio_mmio *m)
{
	mmio_w32(m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint64_t f = (uint64_t)mmio_r32(m, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	mmio_w32(m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	return f | mmio_r32(m, VIRTIO_MMIO_DEVICE_FEATURES);
}

/* The test benches keep their device's register file in t->m. */
#define r32(t, off) mmio_r32((t)->m, (off))
#define w32(t, off, v) mmio_w32((t)->m, (off), (v))
#define add_status(t, bit) mmio_add_status((t)->m, (bit))
#define device_features(t) mmio_device_features((t)->m)

#endif
