/* The virtio-mmio register file, programmed as Linux's virtio_mmio driver
 * does, and then against the rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "virtio/mmio.h"
#include "guest/guest_mem.h"

#define MEM_SIZE (1 << 20)
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define DATA 0x10000

#define ALL_DRV_STATUS                                                                           \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |         \
	 VIRTIO_STATUS_DRIVER_OK)

/* A block-like device: 2 queues, 24 bytes of config. */
#define DEV_FEATURE_RO (1ULL << 5)
#define DEV_FEATURE_FLUSH (1ULL << 9)

static uint8_t backing[MEM_SIZE] __attribute__((aligned(4096)));

struct fake_dev {
	uint64_t features;
	uint8_t config[24];
	int config_reads, config_writes;
	int activations, resets, irqs;
	int notifies[VIRTIO_MMIO_MAX_QUEUES];
	bool fail_activate;
	struct guest_mem gm;
	struct virtio_mmio m;
};

static uint64_t dev_features(void *dev)
{
	return ((struct fake_dev *)dev)->features;
}

static void dev_config_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct fake_dev *d = dev;
	assert_true(off + len <= sizeof(d->config));
	memcpy(data, d->config + off, len);
	d->config_reads++;
}

static void dev_config_write(void *dev, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct fake_dev *d = dev;
	assert_true(off + len <= sizeof(d->config));
	memcpy(d->config + off, data, len);
	d->config_writes++;
}

static int dev_activate(void *dev, struct virtio_mmio *m)
{
	struct fake_dev *d = dev;
	assert_ptr_equal(m, &d->m);
	d->activations++;
	return d->fail_activate ? -1 : 0;
}

static void dev_reset(void *dev)
{
	((struct fake_dev *)dev)->resets++;
}

static void hook_irq(void *ctx)
{
	((struct fake_dev *)ctx)->irqs++;
}

static void hook_notify(void *ctx, uint32_t q)
{
	((struct fake_dev *)ctx)->notifies[q]++;
}

static const struct virtio_dev_ops fake_ops = {
	.device_id = 2,
	.nr_queues = 2,
	.queue_max_size = {256, 16},
	.config_size = 24,
	.features = dev_features,
	.config_read = dev_config_read,
	.config_write = dev_config_write,
	.activate = dev_activate,
	.reset = dev_reset,
};

static struct fake_dev *dev_new(void)
{
	struct fake_dev *d = calloc(1, sizeof(*d));
	assert_non_null(d);
	memset(backing, 0, sizeof(backing));
	gm_init_from(&d->gm, backing, MEM_SIZE, 1ULL << 31);
	/* RING_PACKED (34) is the transport's to offer, and it does not. */
	d->features = DEV_FEATURE_RO | DEV_FEATURE_FLUSH | (1ULL << 34);
	for (int i = 0; i < 24; i++)
		d->config[i] = (uint8_t)(0xa0 + i);
	struct virtio_mmio_hooks hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = d};
	ember_err e;
	assert_int_equal(virtio_mmio_init(&d->m, &fake_ops, d, &d->gm, &hooks, &e), 0);
	return d;
}

static uint32_t r32(struct fake_dev *d, uint64_t off)
{
	uint8_t b[4];
	virtio_mmio_read(&d->m, off, b, 4);
	uint32_t v;
	memcpy(&v, b, 4);
	return v;
}

static void w32(struct fake_dev *d, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	memcpy(b, &v, 4);
	virtio_mmio_write(&d->m, off, b, 4);
}

/* Linux's vm_set_status: read, or in the new bit, write back. */
static void add_status(struct fake_dev *d, uint32_t bit)
{
	w32(d, VIRTIO_MMIO_STATUS, r32(d, VIRTIO_MMIO_STATUS) | bit);
}

static void write_features(struct fake_dev *d, uint64_t f)
{
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
}

static uint64_t read_features(struct fake_dev *d)
{
	w32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	uint64_t f = (uint64_t)r32(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	w32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	return f | r32(d, VIRTIO_MMIO_DEVICE_FEATURES);
}

/* Linux's vm_setup_vq for queue index with num entries at base. */
static void setup_queue(struct fake_dev *d, uint32_t index, uint32_t num, uint64_t base)
{
	w32(d, VIRTIO_MMIO_QUEUE_SEL, index);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(r32(d, VIRTIO_MMIO_QUEUE_NUM_MAX) >= num);
	w32(d, VIRTIO_MMIO_QUEUE_NUM, num);
	uint64_t desc = base, avail = base + 0x1000, used = base + 0x2000;
	w32(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	w32(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	w32(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	w32(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	w32(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	w32(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	w32(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

static const uint64_t linux_features = (1ULL << VIRTIO_F_VERSION_1) |
				       (1ULL << VIRTIO_F_EVENT_IDX) |
				       (1ULL << VIRTIO_F_INDIRECT_DESC) | DEV_FEATURE_FLUSH;

/* Up to FEATURES_OK, as Linux's virtio_dev_probe. */
static void negotiate(struct fake_dev *d, uint64_t features)
{
	w32(d, VIRTIO_MMIO_STATUS, 0);
	add_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	add_status(d, VIRTIO_STATUS_DRIVER);
	write_features(d, features);
	add_status(d, VIRTIO_STATUS_FEATURES_OK);
}

static void bring_up(struct fake_dev *d)
{
	negotiate(d, linux_features);
	assert_true(r32(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(d, 0, 128, DESC);
	add_status(d, VIRTIO_STATUS_DRIVER_OK);
}

static void identity_registers(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	assert_int_equal(r32(d, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(r32(d, VIRTIO_MMIO_VERSION_REG), 2);
	assert_int_equal(r32(d, VIRTIO_MMIO_DEVICE_ID), 2);
	assert_int_equal(r32(d, VIRTIO_MMIO_VENDOR_ID_REG), 0);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0);

	uint64_t f = read_features(d);
	assert_true(f & (1ULL << VIRTIO_F_VERSION_1));
	assert_true(f & (1ULL << VIRTIO_F_EVENT_IDX));
	assert_true(f & (1ULL << VIRTIO_F_INDIRECT_DESC));
	assert_true(f & DEV_FEATURE_RO);
	assert_false(f & (1ULL << 34));
	w32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	assert_int_equal(r32(d, VIRTIO_MMIO_DEVICE_FEATURES), 0);

	assert_int_equal(r32(d, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
	assert_int_equal(r32(d, VIRTIO_MMIO_SHM_BASE_HIGH), 0xffffffff);
	assert_int_equal(r32(d, VIRTIO_MMIO_CONFIG_GENERATION), 0);

	/* Registers are 32-bit and aligned; anything else is ignored. */
	uint8_t b[8];
	memset(b, 0x55, sizeof(b));
	virtio_mmio_read(&d->m, VIRTIO_MMIO_MAGIC_VALUE, b, 2);
	assert_int_equal(b[0] | b[1], 0);
	virtio_mmio_read(&d->m, 2, b, 4);
	assert_int_equal(b[0] | b[1] | b[2] | b[3], 0);
	virtio_mmio_read(&d->m, 0, b, 8);
	assert_int_equal(d->m.stats.bad_access, 3);
	virtio_mmio_read(&d->m, VIRTIO_MMIO_SIZE, b, 4);
	assert_int_equal(d->m.stats.bad_access, 4);
	b[0] = VIRTIO_STATUS_ACKNOWLEDGE;
	virtio_mmio_write(&d->m, VIRTIO_MMIO_STATUS, b, 1);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(d->m.stats.bad_access, 5);

	/* Legacy and unknown registers, read-only and write-only ones. */
	assert_int_equal(r32(d, 0x028), 0); /* GuestPageSize, version 1 only */
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_NOTIFY), 0);
	w32(d, VIRTIO_MMIO_MAGIC_VALUE, 0);
	w32(d, VIRTIO_MMIO_INTERRUPT_STATUS, 1);
	w32(d, 0x0c0, 1); /* QueueReset: VIRTIO_F_RING_RESET not offered */
	assert_int_equal(d->m.stats.bad_register, 5);
	assert_int_equal(r32(d, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);

	/* The io_bus adaptor is the same path. */
	uint32_t v = 0;
	virtio_mmio_io_ops.read(&d->m, VIRTIO_MMIO_VERSION_REG, (uint8_t *)&v, 4);
	assert_int_equal(v, 2);
	free(d);
}

/* Probe, queue setup and a request, register by register as Linux does. */
static void linux_init_sequence(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	assert_int_equal(d->resets, 0);
	w32(d, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(d->resets, 1);
	add_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	add_status(d, VIRTIO_STATUS_DRIVER);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);
	uint64_t offered = read_features(d);
	write_features(d, offered & linux_features);
	add_status(d, VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xb);
	assert_int_equal(virtio_mmio_features(&d->m), linux_features);

	setup_queue(d, 0, 128, DESC);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 1);
	w32(d, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
	w32(d, VIRTIO_MMIO_QUEUE_SEL, 2);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0); /* no third queue */

	/* The driver reads its config (a 64-bit field as two 32-bit reads). */
	uint32_t lo = r32(d, VIRTIO_MMIO_CONFIG), hi = r32(d, VIRTIO_MMIO_CONFIG + 4);
	assert_int_equal(lo, 0xa3a2a1a0);
	assert_int_equal(hi, 0xa7a6a5a4);

	add_status(d, VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xf);
	assert_int_equal(d->activations, 1);
	assert_true(d->m.activated);
	struct virtq *q = virtio_mmio_queue(&d->m, 0);
	assert_non_null(q);
	assert_null(virtio_mmio_queue(&d->m, 2));
	assert_true(q->ready && q->event_idx && q->indirect);
	assert_int_equal(q->size, 128);
	assert_int_equal(q->desc, DESC);
	assert_int_equal(q->avail, DESC + 0x1000);
	assert_int_equal(q->used, DESC + 0x2000);
	assert_false(virtio_mmio_queue(&d->m, 1)->ready);
	assert_true(virtio_mmio_has_feature(&d->m, 9));
	assert_false(virtio_mmio_has_feature(&d->m, 5));

	/* One request: the driver fills a descriptor and notifies. */
	uint8_t desc[16] = {0};
	uint64_t addr = DATA;
	uint32_t len = 16;
	memcpy(desc, &addr, 8);
	memcpy(desc + 8, &len, 4);
	gm_write(&d->gm, q->desc, desc, 16);
	uint16_t one = 1;
	gm_write(&d->gm, q->avail + 2, &one, 2);
	w32(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(d->notifies[0], 1);

	/* The device serves it and interrupts. */
	struct virtq_seg segs[4];
	struct virtq_chain c;
	virtq_chain_init(&c, segs, 4);
	assert_int_equal(virtq_pop(q, &d->gm, &c), VIRTQ_CHAIN);
	assert_int_equal(virtq_push(q, &d->gm, c.head, 0), 0);
	assert_true(virtio_mmio_signal_used(&d->m, q));
	assert_int_equal(d->irqs, 1);
	assert_int_equal(r32(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	w32(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(r32(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_false(virtio_mmio_signal_used(&d->m, q)); /* nothing new */

	/* The same two accesses on the lock-free path (vmm/virtio_devs.c),
	 * which takes those two registers as whole words and nothing else. */
	assert_int_equal(virtio_mmio_interrupt_write(&d->m, VIRTIO_MMIO_INTERRUPT_ACK,
						     (uint8_t[4]){0}, 2), false);
	assert_int_equal(virtio_mmio_interrupt_write(&d->m, VIRTIO_MMIO_STATUS,
						     (uint8_t[4]){0}, 4), false);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_DRIVER_OK);
	uint8_t isr[4] = {0xff, 0xff, 0xff, 0xff};
	assert_false(virtio_mmio_interrupt_read(&d->m, VIRTIO_MMIO_QUEUE_READY, isr, 4));
	assert_int_equal(isr[0], 0xff); /* untouched */
	virtio_mmio_config_changed(&d->m);
	assert_true(virtio_mmio_interrupt_read(&d->m, VIRTIO_MMIO_INTERRUPT_STATUS, isr, 4));
	assert_int_equal(isr[0], VIRTIO_MMIO_INT_CONFIG);
	uint8_t ack[4] = {VIRTIO_MMIO_INT_CONFIG, 0, 0, 0};
	assert_true(virtio_mmio_interrupt_write(&d->m, VIRTIO_MMIO_INTERRUPT_ACK, ack, 4));
	assert_int_equal(r32(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

	/* Notifications of queues that are not there reach nobody. */
	w32(d, VIRTIO_MMIO_QUEUE_NOTIFY, 5);
	assert_int_equal(d->m.stats.bad_notify, 1);

	/* No guest mistakes on the way. */
	struct virtio_mmio_stats zero = {0};
	zero.bad_notify = 1;
	assert_memory_equal(&d->m.stats, &zero, sizeof(zero));
	free(d);
}

static void feature_negotiation_failures(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();

	/* A feature the device did not offer. */
	negotiate(d, linux_features | (1ULL << 7));
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);
	assert_int_equal(d->m.stats.features_rejected, 1);
	assert_int_equal(virtio_mmio_features(&d->m), 0);
	/* Nor can DRIVER_OK follow. */
	add_status(d, VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);
	assert_int_equal(d->activations, 0);

	/* A transport feature the transport does not implement. */
	negotiate(d, linux_features | (1ULL << 34));
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);

	/* A legacy driver. */
	negotiate(d, linux_features & ~(1ULL << VIRTIO_F_VERSION_1));
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);

	/* Features past bit 63. */
	negotiate(d, 0);
	w32(d, VIRTIO_MMIO_STATUS, 0);
	add_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	add_status(d, VIRTIO_STATUS_DRIVER);
	write_features(d, linux_features);
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES, 0); /* zeros are fine */
	add_status(d, VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xb);
	w32(d, VIRTIO_MMIO_STATUS, 0);
	add_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	add_status(d, VIRTIO_STATUS_DRIVER);
	write_features(d, linux_features);
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	add_status(d, VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);

	/* FEATURES_OK and DRIVER_OK in one write, with bad features. */
	negotiate(d, 0);
	w32(d, VIRTIO_MMIO_STATUS, ALL_DRV_STATUS);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);
	assert_int_equal(d->activations, 0);

	/* Features written before DRIVER or after FEATURES_OK are ignored. */
	w32(d, VIRTIO_MMIO_STATUS, 0);
	uint64_t rejected = d->m.stats.features_rejected;
	write_features(d, linux_features);
	assert_int_equal(d->m.driver_features, 0);
	negotiate(d, linux_features);
	write_features(d, linux_features | DEV_FEATURE_RO);
	assert_int_equal(virtio_mmio_features(&d->m), linux_features);
	assert_int_equal(d->m.stats.features_rejected, rejected + 4);
	free(d);
}

static void status_state_machine(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	/* Out of order. */
	w32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_DRIVER);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0);
	w32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0);
	negotiate(d, linux_features);
	w32(d, VIRTIO_MMIO_STATUS, ALL_DRV_STATUS & ~VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xb);
	/* Clearing a bit. */
	w32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xb);
	/* Undefined bits. */
	w32(d, VIRTIO_MMIO_STATUS, 0xb | 0x10);
	w32(d, VIRTIO_MMIO_STATUS, 0xb | 0x100);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xb);
	assert_int_equal(d->m.stats.status_rejected, 6);
	/* Rewriting the same value is harmless. */
	w32(d, VIRTIO_MMIO_STATUS, 0xb);
	assert_int_equal(d->m.stats.status_rejected, 6);

	/* Several steps in one write are fine if in order. */
	w32(d, VIRTIO_MMIO_STATUS, 0);
	w32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 3);

	/* FAILED: nothing more until a reset. */
	add_status(d, VIRTIO_STATUS_FAILED);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0x83);
	write_features(d, linux_features);
	add_status(d, VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0x83);
	w32(d, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0);
	free(d);
}

static void queue_setup_rules(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	struct virtq *q0 = virtio_mmio_queue(&d->m, 0);

	/* Before FEATURES_OK the queue registers are not writable. */
	w32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	w32(d, VIRTIO_MMIO_QUEUE_NUM, 64);
	w32(d, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC);
	assert_int_equal(q0->size, 256);
	assert_int_equal(q0->desc, 0);
	assert_int_equal(d->m.stats.queue_rejected, 2);

	negotiate(d, linux_features);
	/* Sizes that are too big, not a power of two, or truncated to one. */
	static const uint32_t bad_num[] = {512, 100, 0, 0x10040};
	for (size_t i = 0; i < sizeof(bad_num) / sizeof(bad_num[0]); i++) {
		w32(d, VIRTIO_MMIO_QUEUE_SEL, 0);
		w32(d, VIRTIO_MMIO_QUEUE_NUM, bad_num[i]);
		w32(d, VIRTIO_MMIO_QUEUE_READY, 1);
		assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 0);
	}
	assert_int_equal(d->m.stats.queue_invalid, 4);
	/* Rings outside guest memory or misaligned. */
	setup_queue(d, 1, 16, MEM_SIZE - 0x1000);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 0);
	setup_queue(d, 1, 16, DESC + 8);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(d->m.stats.queue_invalid, 6);

	/* A queue that exists not. */
	w32(d, VIRTIO_MMIO_QUEUE_SEL, 7);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 0);
	uint64_t rejected = d->m.stats.queue_rejected;
	w32(d, VIRTIO_MMIO_QUEUE_NUM, 16);
	w32(d, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(d->m.stats.queue_rejected, rejected + 2);

	/* A failed queue 0 makes DRIVER_OK end in DEVICE_NEEDS_RESET ... */
	add_status(d, VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(d->activations, 0);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xf | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(r32(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_int_equal(d->irqs, 1);

	/* ... unless the driver got it right in the end, or gave it up. */
	negotiate(d, linux_features);
	w32(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	w32(d, VIRTIO_MMIO_QUEUE_NUM, 512);
	w32(d, VIRTIO_MMIO_QUEUE_READY, 1);
	setup_queue(d, 0, 256, DESC);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 1);
	setup_queue(d, 1, 16, DESC + 8);
	w32(d, VIRTIO_MMIO_QUEUE_READY, 0);

	/* While ready, the queue's layout is fixed. */
	w32(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	w32(d, VIRTIO_MMIO_QUEUE_NUM, 64);
	w32(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, 0x9000);
	w32(d, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(q0->size, 256);
	assert_int_equal(q0->used, DESC + 0x2000);

	add_status(d, VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xf);
	assert_int_equal(d->activations, 1);

	/* After DRIVER_OK, not even QueueReady changes. */
	w32(d, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 1);
	w32(d, VIRTIO_MMIO_QUEUE_SEL, 1);
	setup_queue(d, 1, 16, 0x20000);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 0);
	free(d);
}

static void activation_failure_and_notify(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	d->fail_activate = true;
	negotiate(d, linux_features);
	setup_queue(d, 0, 128, DESC);
	/* Notifications before the device runs go nowhere. */
	w32(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(d->notifies[0], 0);
	add_status(d, VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(d->activations, 1);
	assert_false(d->m.activated);
	uint32_t st = r32(d, VIRTIO_MMIO_STATUS);
	assert_int_equal(st, 0xf | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(r32(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	w32(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(d->notifies[0], 0);
	/* Writing back NEEDS_RESET neither fails nor clears it. */
	w32(d, VIRTIO_MMIO_STATUS, st);
	w32(d, VIRTIO_MMIO_STATUS, 0xf);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), st);
	assert_int_equal(d->m.stats.status_rejected, 0);

	/* A device that breaks later says so once. */
	d->fail_activate = false;
	bring_up(d);
	assert_true(d->m.activated);
	int irqs = d->irqs;
	virtio_mmio_needs_reset(&d->m);
	virtio_mmio_needs_reset(&d->m);
	assert_int_equal(d->irqs, irqs + 1);
	assert_true(r32(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	free(d);
}

static void config_space(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	uint8_t b[8];
	virtio_mmio_read(&d->m, VIRTIO_MMIO_CONFIG + 23, b, 1);
	assert_int_equal(b[0], 0xa0 + 23);
	virtio_mmio_read(&d->m, VIRTIO_MMIO_CONFIG + 22, b, 2);
	assert_int_equal(b[0], 0xa0 + 22);
	virtio_mmio_read(&d->m, VIRTIO_MMIO_CONFIG + 8, b, 8);
	assert_int_equal(b[7], 0xa0 + 15);
	assert_int_equal(d->config_reads, 3);

	/* Past the end, straddling it, unaligned, odd sizes: zeros, and the
	 * device is never asked. */
	const struct {
		uint64_t off;
		uint32_t len;
	} bad[] = {{24, 1}, {22, 4}, {20, 8}, {1, 4}, {2, 4}, {0, 3}, {0xeff, 1}, {0, 16}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t big[16];
		memset(big, 0x55, sizeof(big));
		virtio_mmio_read(&d->m, VIRTIO_MMIO_CONFIG + bad[i].off, big, bad[i].len);
		for (uint32_t j = 0; j < bad[i].len; j++)
			assert_int_equal(big[j], 0);
		virtio_mmio_write(&d->m, VIRTIO_MMIO_CONFIG + bad[i].off, big, bad[i].len);
	}
	assert_int_equal(d->config_reads, 3);
	assert_int_equal(d->config_writes, 0);
	assert_int_equal(d->m.stats.config_rejected, 16);

	uint32_t v = 0x11223344;
	virtio_mmio_write(&d->m, VIRTIO_MMIO_CONFIG + 20, (uint8_t *)&v, 4);
	assert_int_equal(d->config_writes, 1);
	assert_int_equal(d->config[20], 0x44);

	/* A device without config_write keeps its config. */
	struct virtio_dev_ops ro = fake_ops;
	ro.config_write = NULL;
	d->m.ops = &ro;
	virtio_mmio_write(&d->m, VIRTIO_MMIO_CONFIG, (uint8_t *)&v, 4);
	assert_int_equal(d->config_writes, 1);
	assert_int_equal(d->m.stats.config_rejected, 17);
	d->m.ops = &fake_ops;

	/* Config changes: generation always, interrupt once the driver runs. */
	virtio_mmio_config_changed(&d->m);
	assert_int_equal(r32(d, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_int_equal(d->irqs, 0);
	bring_up(d);
	virtio_mmio_config_changed(&d->m);
	assert_int_equal(r32(d, VIRTIO_MMIO_CONFIG_GENERATION), 2);
	assert_int_equal(d->irqs, 1);
	assert_int_equal(r32(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	free(d);
}

static void reset_clears_everything(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	bring_up(d);
	virtio_mmio_config_changed(&d->m);
	setup_queue(d, 1, 8, 0x20000); /* refused: after DRIVER_OK */
	w32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	w32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	struct virtq *q = virtio_mmio_queue(&d->m, 0);
	q->last_avail = 7;
	q->used_idx = 5;
	q->broken = true;
	int resets = d->resets;

	w32(d, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(d->resets, resets + 1);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(r32(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_false(d->m.activated);
	assert_int_equal(d->m.driver_features, 0);
	assert_int_equal(virtio_mmio_features(&d->m), 0);
	assert_int_equal(d->m.queue_sel, 0);
	assert_int_equal(d->m.device_features_sel, 0);
	assert_int_equal(d->m.driver_features_sel, 0);
	for (unsigned i = 0; i < 2; i++) {
		q = virtio_mmio_queue(&d->m, i);
		assert_false(q->ready || q->broken || q->event_idx || q->indirect);
		assert_int_equal(q->size, fake_ops.queue_max_size[i]);
		assert_int_equal(q->desc | q->avail | q->used, 0);
		assert_int_equal(q->last_avail | q->used_idx | q->signalled_used, 0);
	}
	/* The generation keeps counting across resets. */
	assert_int_equal(r32(d, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	/* Linux's del_vq after a reset: harmless. */
	w32(d, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(r32(d, VIRTIO_MMIO_QUEUE_READY), 0);

	/* And the device comes up again. */
	bring_up(d);
	assert_int_equal(r32(d, VIRTIO_MMIO_STATUS), 0xf);
	assert_true(d->m.activated);
	free(d);
}

static void init_checks_ops(void **state)
{
	(void)state;
	struct virtio_mmio m;
	struct guest_mem gm;
	gm_init_from(&gm, backing, MEM_SIZE, 1ULL << 31);
	ember_err e;
	struct virtio_dev_ops ops = fake_ops;
	ops.nr_queues = VIRTIO_MMIO_MAX_QUEUES + 1;
	assert_int_equal(virtio_mmio_init(&m, &ops, NULL, &gm, NULL, &e), -1);
	ops = fake_ops;
	ops.queue_max_size[1] = 100;
	assert_int_equal(virtio_mmio_init(&m, &ops, NULL, &gm, NULL, &e), -1);
	assert_non_null(strstr(e.msg, "power of two"));
	ops = fake_ops;
	ops.config_size = VIRTIO_MMIO_CONFIG_MAX + 1;
	assert_int_equal(virtio_mmio_init(&m, &ops, NULL, &gm, NULL, &e), -1);
	ops = fake_ops;
	ops.config_read = NULL;
	assert_int_equal(virtio_mmio_init(&m, &ops, NULL, &gm, NULL, &e), -1);
	/* A bare device: no callbacks, no hooks. */
	static const struct virtio_dev_ops bare = {.device_id = 4, .nr_queues = 1,
						   .queue_max_size = {8}};
	assert_int_equal(virtio_mmio_init(&m, &bare, NULL, &gm, NULL, &e), 0);
	uint32_t v = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	virtio_mmio_write(&m, VIRTIO_MMIO_STATUS, (uint8_t *)&v, 4);
	v = 1;
	virtio_mmio_write(&m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, (uint8_t *)&v, 4);
	virtio_mmio_write(&m, VIRTIO_MMIO_DRIVER_FEATURES, (uint8_t *)&v, 4);
	v = ALL_DRV_STATUS;
	virtio_mmio_write(&m, VIRTIO_MMIO_STATUS, (uint8_t *)&v, 4);
	assert_int_equal(m.status, ALL_DRV_STATUS);
	assert_true(m.activated);
	virtio_mmio_config_changed(&m);
	v = 0;
	virtio_mmio_write(&m, VIRTIO_MMIO_QUEUE_NOTIFY, (uint8_t *)&v, 4);
	virtio_mmio_write(&m, VIRTIO_MMIO_STATUS, (uint8_t *)&v, 4);
	assert_int_equal(m.status, 0);
}

/* Snapshot state: a live device saved and restored into a fresh one reads
 * back the same registers and queue positions and is activated again; a
 * state with a ring outside guest memory or another device type is refused
 * and leaves the fresh device as it was. */
static void save_and_restore(void **state)
{
	(void)state;
	struct fake_dev *d = dev_new();
	bring_up(d);
	d->m.queues[0].last_avail = 7;
	d->m.queues[0].used_idx = 5;
	d->m.queues[0].signalled_used = 4;
	json_t *st = virtio_mmio_save(&d->m);
	assert_non_null(st);

	struct fake_dev *n = dev_new();
	ember_err e = {{0}};
	assert_int_equal(virtio_mmio_restore(&n->m, st, &e), 0);
	assert_int_equal(n->activations, 1);
	assert_true(n->m.activated);
	assert_int_equal(r32(n, VIRTIO_MMIO_STATUS), ALL_DRV_STATUS);
	assert_int_equal(virtio_mmio_features(&n->m), virtio_mmio_features(&d->m));
	w32(n, VIRTIO_MMIO_QUEUE_SEL, 0);
	assert_int_equal(r32(n, VIRTIO_MMIO_QUEUE_READY), 1);
	assert_int_equal(n->m.queues[0].size, 128); /* write-only registers */
	assert_int_equal(n->m.queues[0].desc, DESC);
	assert_int_equal(n->m.queues[0].used, DESC + 0x2000);
	assert_int_equal(n->m.queues[0].last_avail, 7);
	assert_int_equal(n->m.queues[0].used_idx, 5);
	assert_int_equal(n->m.queues[0].signalled_used, 4);
	assert_true(n->m.queues[0].event_idx && n->m.queues[0].indirect);
	assert_false(n->m.queues[1].ready);
	json_t *again = virtio_mmio_save(&n->m);
	assert_true(json_equal(st, again));
	json_decref(again);

	/* A ring outside guest memory. */
	struct fake_dev *b = dev_new();
	json_t *q0 = json_array_get(json_object_get(st, "queues"), 0);
	json_object_set_new(q0, "desc", json_string("0000f0ffff000000"));
	assert_int_equal(virtio_mmio_restore(&b->m, st, &e), -1);
	assert_non_null(strstr(e.msg, "queue 0"));
	assert_false(b->m.activated);
	assert_int_equal(r32(b, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(b->activations, 0);
	/* Another device type. */
	json_object_set_new(st, "device_id", json_integer(1));
	assert_int_equal(virtio_mmio_restore(&b->m, st, &e), -1);
	assert_non_null(strstr(e.msg, "type"));
	/* Not an object at all. */
	assert_int_equal(virtio_mmio_restore(&b->m, json_null(), &e), -1);
	json_decref(st);
	free(b);
	free(n);
	free(d);
}

static void kernel_cmdline(void **state)
{
	(void)state;
	char buf[64];
	assert_int_equal(virtio_mmio_cmdline(buf, sizeof(buf), 0xc0001000, VIRTIO_MMIO_SIZE, 5),
			 34);
	assert_string_equal(buf, "virtio_mmio.device=4K@0xc0001000:5");
	virtio_mmio_cmdline(buf, sizeof(buf), 0xd0000000, 512, 12);
	assert_string_equal(buf, "virtio_mmio.device=512@0xd0000000:12");
	assert_int_equal(virtio_mmio_cmdline(buf, 34, 0xc0001000, VIRTIO_MMIO_SIZE, 5), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(identity_registers),
		cmocka_unit_test(linux_init_sequence),
		cmocka_unit_test(feature_negotiation_failures),
		cmocka_unit_test(status_state_machine),
		cmocka_unit_test(queue_setup_rules),
		cmocka_unit_test(activation_failure_and_notify),
		cmocka_unit_test(config_space),
		cmocka_unit_test(reset_clears_everything),
		cmocka_unit_test(init_checks_ops),
		cmocka_unit_test(save_and_restore),
		cmocka_unit_test(kernel_cmdline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
