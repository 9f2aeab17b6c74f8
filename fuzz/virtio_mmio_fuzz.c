/* libFuzzer target: a hostile driver against the virtio-mmio transport and
 * the split virtqueue. The input is a script (fuzz_driver.h): register
 * writes and reads, guest memory writes, descriptors, chains and available
 * ring entries, and this target's own ops, which run the device side the
 * way devices do (virtq_pop until empty, copy in and out of the chain,
 * push, notify). Every popped chain is checked: its segments lie in guest
 * memory, its counts and lengths agree, its head is in range.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh virtio_mmio_fuzz (docs/fuzzing.md) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_quiet.h"
#include "fuzz_driver.h"

#define CONFIG_SIZE 24

struct fake_dev {
	uint8_t config[CONFIG_SIZE];
	bool active;
	unsigned irqs, notifies;
};

static uint64_t dev_features(void *dev)
{
	(void)dev;
	return (1ULL << 5) | (1ULL << 9) | (1ULL << 34);
}

static void dev_config_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	struct fake_dev *d = dev;
	if (off + len > CONFIG_SIZE)
		abort(); /* the transport promised to check */
	memcpy(data, d->config + off, len);
}

static void dev_config_write(void *dev, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct fake_dev *d = dev;
	if (off + len > CONFIG_SIZE)
		abort();
	memcpy(d->config + off, data, len);
}

static int dev_activate(void *dev, struct virtio_mmio *m)
{
	struct fake_dev *d = dev;
	/* Activation comes with every queue valid (or refused before). */
	for (unsigned q = 0; q < 2; q++) {
		struct virtq *vq = virtio_mmio_queue(m, q);
		if (vq->ready && (!vq->size || vq->size > vq->max_size || (vq->size & (vq->size - 1))))
			abort();
	}
	d->active = true;
	return d->config[0] == 0xee ? -1 : 0; /* a device that says no, sometimes */
}

static void dev_reset(void *dev)
{
	((struct fake_dev *)dev)->active = false;
}

static void hook_irq(void *ctx)
{
	((struct fake_dev *)ctx)->irqs++;
}

static void hook_notify(void *ctx, uint32_t q)
{
	if (q >= 2)
		abort();
	((struct fake_dev *)ctx)->notifies++;
}

static const struct virtio_dev_ops fake_ops = {
	.device_id = 2,
	.nr_queues = 2,
	.queue_max_size = {256, 16},
	.config_size = CONFIG_SIZE,
	.features = dev_features,
	.config_read = dev_config_read,
	.config_write = dev_config_write,
	.activate = dev_activate,
	.reset = dev_reset,
};

static void check_chain(const struct guest_mem *gm, const struct virtq *q,
			const struct virtq_chain *c, int r)
{
	if (c->head >= q->size)
		abort();
	if (r != VIRTQ_CHAIN) {
		if (c->nr_segs || c->err == VIRTQ_OK)
			abort();
		return;
	}
	if (c->nr_read > c->nr_segs || c->nr_segs > c->max_segs || c->err != VIRTQ_OK)
		abort();
	uint64_t rd = 0, wr = 0;
	for (unsigned i = 0; i < c->nr_segs; i++) {
		const struct virtq_seg *s = &c->segs[i];
		if (!s->len || !gm_ptr(gm, s->gpa, s->len) || s->write != (i >= c->nr_read))
			abort();
		*(s->write ? &wr : &rd) += s->len;
	}
	if (rd != c->read_len || wr != c->write_len)
		abort();
}

/* The device side of queue q, as docs/virtio.md has devices do it. */
static void process(struct virtio_mmio *m, struct fz *f)
{
	uint8_t ctl = fz_u8(f);
	struct virtq *q = virtio_mmio_queue(m, ctl & 1);
	const struct guest_mem *gm = m->gm;
	static struct virtq_seg segs[64];
	struct virtq_chain c;
	virtq_chain_init(&c, segs, ctl & 2 ? 64 : 4);
	if (ctl & 4)
		virtq_disable_notify(q, gm);
	/* Each available entry is popped at most once per pass, plus the
	 * retries enable_notify asks for. */
	for (unsigned n = 0; n < 2u * VIRTQ_MAX_SIZE; n++) {
		uint16_t used_before = q->used_idx;
		int r = virtq_pop(q, gm, &c);
		if (r == VIRTQ_EMPTY) {
			if (virtq_enable_notify(q, gm))
				continue;
			break;
		}
		if (r == VIRTQ_BROKEN) {
			if (!q->broken)
				abort();
			virtio_mmio_needs_reset(m);
			break;
		}
		check_chain(gm, q, &c, r);
		uint8_t buf[64];
		struct iovec iov[8];
		uint64_t off = fz_u8(f), len = fz_u8(f) % sizeof(buf);
		if (virtq_chain_read(gm, &c, off, buf, len) == 0 && off + len > c.read_len)
			abort();
		if (virtq_chain_write(gm, &c, off, buf, len) == 0 && off + len > c.write_len)
			abort();
		int niov = virtq_chain_iov(gm, &c, ctl & 8, off, len, iov, 8);
		for (int i = 0; i < niov; i++)
			memset(iov[i].iov_base, 0x5a, iov[i].iov_len);
		uint32_t written = ctl & 16 ? fz_u32(f) : c.write_len;
		if (virtq_push(q, gm, c.head, written) || q->used_idx != (uint16_t)(used_before + 1))
			abort();
	}
	virtio_mmio_signal_used(m, q);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	struct fz f = {in, len, 0};
	struct fz_mem mem;
	fz_mem_init(&mem);
	struct fake_dev dev = {0};
	struct virtio_mmio m;
	struct virtio_mmio_hooks hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify,
					  .ctx = &dev};
	ember_err e;
	if (virtio_mmio_init(&m, &fake_ops, &dev, &mem.gm, &hooks, &e))
		abort();
	struct fz_driver d = {.m = &m, .gm = &mem.gm};
	while (fz_more(&f)) {
		uint8_t op = fz_u8(&f) % 11;
		if (fz_driver_op(&d, op, &f))
			continue;
		switch (op) {
		case 7:
		case 8:
			process(&m, &f);
			break;
		case 9:
			virtio_mmio_needs_reset(&m);
			break;
		case 10:
			virtio_mmio_config_changed(&m);
			break;
		}
		/* A queue is ready only if its rings were checked. */
		for (unsigned q = 0; q < 2; q++) {
			struct virtq *vq = virtio_mmio_queue(&m, q);
			if (vq->ready && virtq_validate(vq, &mem.gm, &e))
				abort();
		}
	}
	fz_mem_free(&mem);
	return 0;
}
