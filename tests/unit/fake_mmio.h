/* A fake virtio driver's register accesses, as Linux's virtio-mmio driver
 * makes them, and its descriptors' encoding, for the device tests and the
 * virtio fuzz targets (nothing here asserts: fuzz/fuzz_driver.h uses it
 * too). */
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

/* Linux's probe up to FEATURES_OK: ACKNOWLEDGE, DRIVER, accepts the
 * offered features masked by `mask`, FEATURES_OK. Returns the features. */
static inline uint64_t mmio_negotiate(struct virtio_mmio *m, uint64_t mask)
{
	mmio_add_status(m, VIRTIO_STATUS_ACKNOWLEDGE);
	mmio_add_status(m, VIRTIO_STATUS_DRIVER);
	uint64_t f = mmio_device_features(m) & mask;
	mmio_w32(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_w32(m, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	mmio_w32(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_w32(m, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	mmio_add_status(m, VIRTIO_STATUS_FEATURES_OK);
	return f;
}

/* Queue `index`: num entries, its rings at desc, avail and used (below
 * 4 GiB), then READY. */
static inline void mmio_queue(struct virtio_mmio *m, uint32_t index, uint32_t num, uint64_t desc,
			      uint64_t avail, uint64_t used)
{
	mmio_w32(m, VIRTIO_MMIO_QUEUE_SEL, index);
	mmio_w32(m, VIRTIO_MMIO_QUEUE_NUM, num);
	mmio_w32(m, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	mmio_w32(m, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	mmio_w32(m, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	mmio_w32(m, VIRTIO_MMIO_QUEUE_READY, 1);
}

/* A split-virtqueue descriptor as the driver lays it in guest memory. */
static inline void fake_desc_encode(uint8_t d[16], uint64_t addr, uint32_t len, uint16_t flags,
				    uint16_t next)
{
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

/* The test benches keep their device's register file in t->m. */
#define r32(t, off) mmio_r32((t)->m, (off))
#define w32(t, off, v) mmio_w32((t)->m, (off), (v))
#define add_status(t, bit) mmio_add_status((t)->m, (bit))
#define device_features(t) mmio_device_features((t)->m)

#endif
