#include "virtio/mmio.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

/* Feature bits 24 to 41 belong to the transport and ring (spec 6); a device
 * offers only its own, and the transport adds the ones it implements. */
#define TRANSPORT_FEATURE_MASK (((1ULL << 42) - 1) & ~((1ULL << 24) - 1))

#define STATUS_KNOWN                                                                             \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |           \
	 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)

/* Counts a guest mistake; logs the first of each kind only, so a guest
 * cannot flood the log. */
__attribute__((format(printf, 3, 4))) static void guest_error(struct virtio_mmio *m,
							       uint64_t *counter,
							       const char *fmt, ...)
{
	char who[40];
	snprintf(who, sizeof(who), "virtio-mmio device %u", m->ops->device_id);
	va_list ap;
	va_start(ap, fmt);
	log_guest_errorv(__FILE__, __LINE__, counter, who, fmt, ap);
	va_end(ap);
}

static uint64_t offered_features(const struct virtio_mmio *m)
{
	uint64_t f = m->ops->features ? m->ops->features(m->dev) : 0;
	return (f & ~TRANSPORT_FEATURE_MASK) | VIRTIO_TRANSPORT_FEATURES;
}

static void interrupt(struct virtio_mmio *m, uint32_t why)
{
	__atomic_fetch_or(&m->interrupt_status, why, __ATOMIC_SEQ_CST);
	if (m->hooks.raise_irq)
		m->hooks.raise_irq(m->hooks.ctx);
}

/* Power-on state of the transport and its queues. */
static void clear_state(struct virtio_mmio *m)
{
	for (unsigned i = 0; i < m->ops->nr_queues; i++)
		virtq_init(&m->queues[i], m->ops->queue_max_size[i]);
	m->status = 0;
	m->device_features_sel = m->driver_features_sel = m->queue_sel = 0;
	m->driver_features = 0;
	m->driver_features_extra = false;
	m->queue_failed = 0;
	m->activated = false;
	__atomic_store_n(&m->interrupt_status, 0, __ATOMIC_SEQ_CST);
	/* config_generation keeps counting, so a driver that raced a config
	 * change with the reset still sees that something changed. */
}

static void reset(struct virtio_mmio *m)
{
	if (m->ops->reset)
		m->ops->reset(m->dev);
	clear_state(m);
}

int virtio_mmio_init(struct virtio_mmio *m, const struct virtio_dev_ops *ops, void *dev,
		     const struct guest_mem *gm, const struct virtio_mmio_hooks *hooks,
		     ember_err *e)
{
	memset(m, 0, sizeof(*m));
	if (ops->nr_queues > VIRTIO_MMIO_MAX_QUEUES)
		return err_set(e, "virtio device %u: %u queues, at most %d", ops->device_id,
			       ops->nr_queues, VIRTIO_MMIO_MAX_QUEUES);
	for (unsigned i = 0; i < ops->nr_queues; i++) {
		uint16_t s = ops->queue_max_size[i];
		if (!s || (s & (s - 1)) || s > VIRTQ_MAX_SIZE)
			return err_set(e, "virtio device %u: queue %u size %u is not a power of two",
				       ops->device_id, i, s);
	}
	if (ops->config_size > VIRTIO_MMIO_CONFIG_MAX || (ops->config_size && !ops->config_read))
		return err_set(e, "virtio device %u: bad config space of %u bytes", ops->device_id,
			       ops->config_size);
	m->ops = ops;
	m->dev = dev;
	m->gm = gm;
	if (hooks)
		m->hooks = *hooks;
	clear_state(m);
	return 0;
}

static struct virtq *selected_queue(struct virtio_mmio *m)
{
	return m->queue_sel < m->ops->nr_queues ? &m->queues[m->queue_sel] : NULL;
}

struct virtq *virtio_mmio_queue(struct virtio_mmio *m, unsigned index)
{
	return index < m->ops->nr_queues ? &m->queues[index] : NULL;
}

uint64_t virtio_mmio_features(const struct virtio_mmio *m)
{
	return m->status & VIRTIO_STATUS_FEATURES_OK ? m->driver_features : 0;
}

void virtio_mmio_needs_reset(struct virtio_mmio *m)
{
	if (m->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	m->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (m->status & VIRTIO_STATUS_DRIVER_OK)
		interrupt(m, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_mmio_config_changed(struct virtio_mmio *m)
{
	m->config_generation++;
	if (m->status & VIRTIO_STATUS_DRIVER_OK)
		interrupt(m, VIRTIO_MMIO_INT_CONFIG);
}

bool virtio_mmio_signal_used(struct virtio_mmio *m, struct virtq *q)
{
	if (!virtq_should_notify(q, m->gm))
		return false;
	interrupt(m, VIRTIO_MMIO_INT_VRING);
	return true;
}

bool virtio_mmio_signal_used_queues(struct virtio_mmio *m, uint32_t mask)
{
	bool need = false;
	for (unsigned i = 0; i < m->ops->nr_queues; i++)
		if (mask & (1u << i))
			need |= virtq_should_notify(&m->queues[i], m->gm); /* each: it moves signalled_used */
	if (need)
		interrupt(m, VIRTIO_MMIO_INT_VRING);
	return need;
}

/* Config space: bounds and natural alignment checked here, so the device's
 * callbacks only ever see accesses inside config_size. */
static bool config_access_ok(struct virtio_mmio *m, uint64_t off, uint32_t len, bool write)
{
	bool size_ok = len == 1 || len == 2 || len == 4 || len == 8;
	if (size_ok && !(off % len) && off < m->ops->config_size &&
	    len <= m->ops->config_size - off)
		return true;
	guest_error(m, &m->stats.config_rejected, "config %s of %u bytes at 0x%llx (size %u)",
		    write ? "write" : "read", len, (unsigned long long)off, m->ops->config_size);
	return false;
}

static uint32_t read_register(struct virtio_mmio *m, uint64_t off)
{
	struct virtq *q = selected_queue(m);
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION_REG:
		return VIRTIO_MMIO_VERSION;
	case VIRTIO_MMIO_DEVICE_ID:
		return m->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID_REG:
		return VIRTIO_MMIO_VENDOR_ID;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (m->device_features_sel > 1)
			return 0;
		return (uint32_t)(offered_features(m) >> (32 * m->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		/* Zero tells the driver the queue does not exist. */
		return q ? q->max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return __atomic_load_n(&m->interrupt_status, __ATOMIC_SEQ_CST);
	case VIRTIO_MMIO_STATUS:
		return m->status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return m->config_generation;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		/* No shared memory regions: all ones (spec 4.2.2). */
		return 0xffffffff;
	default:
		guest_error(m, &m->stats.bad_register, "read of register 0x%03llx",
			    (unsigned long long)off);
		return 0;
	}
}

void virtio_mmio_read(struct virtio_mmio *m, uint64_t offset, uint8_t *data, uint32_t len)
{
	memset(data, 0, len);
	if (offset >= VIRTIO_MMIO_CONFIG && offset < VIRTIO_MMIO_SIZE) {
		uint64_t off = offset - VIRTIO_MMIO_CONFIG;
		if (config_access_ok(m, off, len, false))
			m->ops->config_read(m->dev, (uint32_t)off, data, len);
		return;
	}
	if (len != 4 || offset % 4 || offset >= VIRTIO_MMIO_SIZE) {
		guest_error(m, &m->stats.bad_access, "read of %u bytes at 0x%llx", len,
			    (unsigned long long)offset);
		return;
	}
	uint32_t v = read_register(m, offset);
	memcpy(data, &v, 4); /* little-endian, like the host */
}

static void write_driver_features(struct virtio_mmio *m, uint32_t v)
{
	uint32_t st = m->status;
	if (!(st & VIRTIO_STATUS_DRIVER) ||
	    (st & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED))) {
		guest_error(m, &m->stats.features_rejected, "driver features written in status 0x%x",
			    st);
		return;
	}
	switch (m->driver_features_sel) {
	case 0:
		m->driver_features = (m->driver_features & ~0xffffffffULL) | v;
		break;
	case 1:
		m->driver_features = (m->driver_features & 0xffffffffULL) | ((uint64_t)v << 32);
		break;
	default:
		/* No feature above bit 63 is offered, so accepting one fails
		 * FEATURES_OK; zeros are harmless. */
		if (v)
			m->driver_features_extra = true;
	}
}

static bool features_acceptable(struct virtio_mmio *m)
{
	uint64_t extra = m->driver_features & ~offered_features(m);
	if (extra || m->driver_features_extra) {
		guest_error(m, &m->stats.features_rejected,
			    "FEATURES_OK refused: driver accepted unoffered features 0x%llx%s",
			    (unsigned long long)extra,
			    m->driver_features_extra ? " and some above bit 63" : "");
		return false;
	}
	if (!(m->driver_features & (1ULL << VIRTIO_F_VERSION_1))) {
		guest_error(m, &m->stats.features_rejected,
			    "FEATURES_OK refused: legacy driver (no VIRTIO_F_VERSION_1)");
		return false;
	}
	return true;
}

static void activate(struct virtio_mmio *m)
{
	for (unsigned i = 0; i < m->ops->nr_queues; i++)
		virtq_set_features(&m->queues[i], m->driver_features);
	if (m->queue_failed) {
		guest_error(m, &m->stats.activate_failed,
			    "DRIVER_OK with a queue set up wrongly; device needs reset");
		virtio_mmio_needs_reset(m);
		return;
	}
	if (m->ops->activate && m->ops->activate(m->dev, m)) {
		guest_error(m, &m->stats.activate_failed,
			    "DRIVER_OK refused by the device; device needs reset");
		virtio_mmio_needs_reset(m);
		return;
	}
	m->activated = true;
}

/* Each bit the driver sets needs the one before it in the init sequence
 * (spec 3.1.1); FAILED may come at any time. */
static bool status_order_ok(uint32_t s)
{
	if ((s & VIRTIO_STATUS_DRIVER) && !(s & VIRTIO_STATUS_ACKNOWLEDGE))
		return false;
	if ((s & VIRTIO_STATUS_FEATURES_OK) && !(s & VIRTIO_STATUS_DRIVER))
		return false;
	if ((s & VIRTIO_STATUS_DRIVER_OK) && !(s & VIRTIO_STATUS_FEATURES_OK))
		return false;
	return true;
}

static void write_status(struct virtio_mmio *m, uint32_t v)
{
	if (v == 0) {
		reset(m);
		return;
	}
	/* NEEDS_RESET is the device's bit: a driver writing back what it read
	 * may include it, and can neither set nor clear it. */
	uint32_t old = m->status & ~VIRTIO_STATUS_NEEDS_RESET;
	uint32_t want = v & ~VIRTIO_STATUS_NEEDS_RESET;
	uint32_t added = want & ~old;
	if (v & ~STATUS_KNOWN || old & ~want || (old & VIRTIO_STATUS_FAILED && added) ||
	    !status_order_ok(want)) {
		guest_error(m, &m->stats.status_rejected, "status 0x%x -> 0x%x refused",
			    m->status, v);
		return;
	}
	if (added & VIRTIO_STATUS_FAILED) {
		LOG_I("virtio-mmio device %u: driver gave up on the device", m->ops->device_id);
		m->status |= VIRTIO_STATUS_FAILED;
		return;
	}
	/* A refused FEATURES_OK reads back clear, which is how the driver
	 * learns the device did not accept its features; DRIVER_OK, which
	 * needs it, is dropped with it. */
	if (added & VIRTIO_STATUS_FEATURES_OK && !features_acceptable(m))
		want &= ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	m->status = want | (m->status & VIRTIO_STATUS_NEEDS_RESET);
	if (added & want & VIRTIO_STATUS_DRIVER_OK)
		activate(m);
}

/* The queue registers may change only while the driver sets queues up:
 * after FEATURES_OK, before DRIVER_OK, and (but for QueueReady) while the
 * queue is not ready (spec 4.2.3.2). */
static struct virtq *writable_queue(struct virtio_mmio *m, uint64_t off, bool ready_reg)
{
	struct virtq *q = selected_queue(m);
	uint32_t st = m->status;
	const char *why = NULL;
	if (!q)
		why = "no such queue";
	else if (!(st & VIRTIO_STATUS_FEATURES_OK) ||
		 st & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED))
		why = "wrong device status";
	else if (q->ready && !ready_reg)
		why = "queue is ready";
	if (!why)
		return q;
	guest_error(m, &m->stats.queue_rejected, "write to queue %u register 0x%03llx: %s",
		    m->queue_sel, (unsigned long long)off, why);
	return NULL;
}

static void set_low(uint64_t *a, uint32_t v)
{
	*a = (*a & ~0xffffffffULL) | v;
}

static void set_high(uint64_t *a, uint32_t v)
{
	*a = (*a & 0xffffffffULL) | ((uint64_t)v << 32);
}

static void write_queue_ready(struct virtio_mmio *m, struct virtq *q, uint32_t v)
{
	uint32_t bit = 1u << m->queue_sel;
	if (v == 0) {
		q->ready = false;
		m->queue_failed &= ~bit; /* the driver will not use it after all */
		return;
	}
	if (v != 1 || q->ready) {
		guest_error(m, &m->stats.queue_rejected, "QueueReady %u for queue %u (ready %d)", v,
			    m->queue_sel, q->ready);
		return;
	}
	ember_err e;
	if (virtq_validate(q, m->gm, &e)) {
		/* Left not ready; DRIVER_OK will then set DEVICE_NEEDS_RESET
		 * rather than run a device whose driver waits on a dead queue. */
		m->queue_failed |= bit;
		guest_error(m, &m->stats.queue_invalid, "queue %u: %s", m->queue_sel, e.msg);
		return;
	}
	m->queue_failed &= ~bit;
	q->last_avail = q->used_idx = q->signalled_used = 0;
	q->broken = false;
	q->ready = true;
}

static void write_queue_register(struct virtio_mmio *m, uint64_t off, uint32_t v)
{
	struct virtq *q = writable_queue(m, off, off == VIRTIO_MMIO_QUEUE_READY);
	if (!q)
		return;
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		/* Out-of-range sizes are kept as 0 so QueueReady refuses them. */
		q->size = v <= VIRTQ_MAX_SIZE ? (uint16_t)v : 0;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		write_queue_ready(m, q, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		set_low(&q->desc, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		set_high(&q->desc, v);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
		set_low(&q->avail, v);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
		set_high(&q->avail, v);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
		set_low(&q->used, v);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		set_high(&q->used, v);
		break;
	}
}

static void queue_notify(struct virtio_mmio *m, uint32_t v)
{
	if (v >= m->ops->nr_queues || !m->activated) {
		guest_error(m, &m->stats.bad_notify, "notify of queue %u (activated %d)", v,
			    m->activated);
		return;
	}
	if (m->hooks.queue_notify)
		m->hooks.queue_notify(m->hooks.ctx, v);
}

static void write_register(struct virtio_mmio *m, uint64_t off, uint32_t v)
{
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		m->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		m->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		write_driver_features(m, v);
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		m->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
	case VIRTIO_MMIO_QUEUE_READY:
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		write_queue_register(m, off, v);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		queue_notify(m, v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&m->interrupt_status, ~v, __ATOMIC_SEQ_CST);
		break;
	case VIRTIO_MMIO_STATUS:
		write_status(m, v);
		break;
	case VIRTIO_MMIO_SHM_SEL:
		break; /* there are no regions to select */
	default:
		guest_error(m, &m->stats.bad_register, "write of 0x%x to register 0x%03llx", v,
			    (unsigned long long)off);
	}
}

void virtio_mmio_write(struct virtio_mmio *m, uint64_t offset, const uint8_t *data, uint32_t len)
{
	if (offset >= VIRTIO_MMIO_CONFIG && offset < VIRTIO_MMIO_SIZE) {
		uint64_t off = offset - VIRTIO_MMIO_CONFIG;
		if (!config_access_ok(m, off, len, true))
			return;
		if (m->ops->config_write)
			m->ops->config_write(m->dev, (uint32_t)off, data, len);
		else
			guest_error(m, &m->stats.config_rejected, "write to read-only config space");
		return;
	}
	if (len != 4 || offset % 4 || offset >= VIRTIO_MMIO_SIZE) {
		guest_error(m, &m->stats.bad_access, "write of %u bytes at 0x%llx", len,
			    (unsigned long long)offset);
		return;
	}
	uint32_t v;
	memcpy(&v, data, 4);
	write_register(m, offset, v);
}

bool virtio_mmio_interrupt_read(struct virtio_mmio *m, uint64_t offset, uint8_t *data,
				uint32_t len)
{
	if (len != 4 || offset != VIRTIO_MMIO_INTERRUPT_STATUS)
		return false;
	uint32_t v = __atomic_load_n(&m->interrupt_status, __ATOMIC_SEQ_CST);
	memcpy(data, &v, 4);
	return true;
}

bool virtio_mmio_interrupt_write(struct virtio_mmio *m, uint64_t offset, const uint8_t *data,
				 uint32_t len)
{
	if (len != 4 || offset != VIRTIO_MMIO_INTERRUPT_ACK)
		return false;
	uint32_t v;
	memcpy(&v, data, 4);
	__atomic_fetch_and(&m->interrupt_status, ~v, __ATOMIC_SEQ_CST);
	return true;
}

static void io_read(void *ctx, uint64_t offset, uint8_t *data, uint32_t len)
{
	virtio_mmio_read(ctx, offset, data, len);
}

static void io_write(void *ctx, uint64_t offset, const uint8_t *data, uint32_t len)
{
	virtio_mmio_write(ctx, offset, data, len);
}

const struct io_device_ops virtio_mmio_io_ops = {.read = io_read, .write = io_write};

int virtio_mmio_cmdline(char *buf, size_t size, uint64_t base, uint64_t len, uint32_t irq)
{
	int n;
	if (len && len % 1024 == 0)
		n = snprintf(buf, size, "virtio_mmio.device=%lluK@0x%llx:%u",
			     (unsigned long long)(len / 1024), (unsigned long long)base, irq);
	else
		n = snprintf(buf, size, "virtio_mmio.device=%llu@0x%llx:%u",
			     (unsigned long long)len, (unsigned long long)base, irq);
	return n < 0 || (size_t)n >= size ? -1 : n;
}
