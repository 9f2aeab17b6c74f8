/* The virtio-block device: requests from the available ring to the I/O
 * engine and back to the used ring, with Firecracker's semantics and
 * metrics. docs/block.md describes the behaviour; the comments here say
 * why where it is not obvious. */
#include "devices/virtio_block.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/block_io.h"
#include "util/host_file.h"
#include "util/log.h"

const struct metrics_group block_metrics_group = METRICS_GROUP("block", METRICS_BLOCK, struct block_metrics);

/* One request handed to the engine. Its iovecs must outlive the I/O. */
struct blk_slot {
	bool busy;
	uint8_t type;
	uint16_t head;
	uint32_t data_len;
	uint64_t status_gpa;
	uint64_t start_us;
	int iovcnt;
	struct iovec iov[VIRTIO_BLK_SEG_MAX];
};

/* Guest mistakes and host I/O failures, each logged once at WARN and then
 * only counted, so a guest cannot flood the log. */
enum blk_complaint {
	BLK_BAD_CHAIN,
	BLK_BROKEN_RING,
	BLK_NO_STATUS,
	BLK_BAD_REQUEST,
	BLK_UNSUPPORTED,
	BLK_READ_ONLY,
	BLK_IO_ERROR,
	BLK_NOT_READY,
	BLK_NR_COMPLAINTS,
};

struct virtio_block {
	struct virtio_mmio mmio;
	const struct guest_mem *gm;
	struct drive_config cfg; /* path_on_host follows updates */
	int fd;
	uint64_t nsectors;
	uint8_t id[VIRTIO_BLK_ID_BYTES];
	struct block_io *io;
	struct blk_slot *slots;
	unsigned nr_slots;
	unsigned *free; /* a stack of the indices of idle slots */
	unsigned nr_free;

	struct rate_limiter rl;
	struct rate_limiter_timer timer;
	uint64_t (*now_ns)(void *ctx);
	void *clock_ctx;

	struct block_metrics *m;
	struct block_metrics own_metrics;
	uint64_t complaints[BLK_NR_COMPLAINTS];

	bool active;
	/* chain holds a popped request the rate limiter refused; it goes
	 * first when the queue resumes. */
	bool held;
	/* The queue stopped because every slot was in flight. */
	bool io_full;
	/* Something was pushed on the used ring since the last interrupt
	 * decision. */
	bool pushed;
	struct virtq_seg segs[VIRTIO_BLK_QUEUE_SIZE];
	struct virtq_chain chain;
};

__attribute__((format(printf, 3, 4))) static void complain(struct virtio_block *b,
							   enum blk_complaint kind,
							   const char *fmt, ...)
{
	char who[80];
	snprintf(who, sizeof(who), "block %s", b->cfg.drive_id);
	va_list ap;
	va_start(ap, fmt);
	log_guest_errorv(__FILE__, __LINE__, &b->complaints[kind], who, fmt, ap);
	va_end(ap);
}

static uint64_t now_ns(struct virtio_block *b)
{
	return b->now_ns ? b->now_ns(b->clock_ctx) : rate_limiter_now_ns();
}

/* ---- The backing file ---- */

/* What Firecracker (after kvmtool) reports for GET_ID: the decimal st_dev,
 * st_rdev and st_ino of the image, concatenated, cut to 20 bytes and NUL
 * padded. */
/* GET_ID answers the drive_id (NUL-padded, cut to 20 bytes), so a guest
 * can tell its disks apart by the names the host gave them (the project's
 * choice; Firecracker answers an id made of the file's device and inode). */
static void build_id(const char *drive_id, uint8_t id[VIRTIO_BLK_ID_BYTES])
{
	memset(id, 0, VIRTIO_BLK_ID_BYTES);
	size_t n = strlen(drive_id);
	memcpy(id, drive_id, n < VIRTIO_BLK_ID_BYTES ? n : VIRTIO_BLK_ID_BYTES);
}

static int open_disk(const char *path, bool read_only, int *fd_out, uint64_t *nsectors,
		     ember_err *e)
{
	int fd = host_file_open(path, read_only ? O_RDONLY : O_RDWR,
				HOST_FILE_REGULAR | HOST_FILE_BLOCK_DEVICE,
				read_only ? "cannot open read-only" : "cannot open", e);
	if (fd < 0)
		return -1;
	/* lseek rather than st_size: a block device's st_size is 0. */
	off_t size = lseek(fd, 0, SEEK_END);
	if (size < 0) {
		err_set(e, "%s: cannot find its size: %s", path, strerror(errno));
		goto fail;
	}
	if (size % VIRTIO_BLK_SECTOR_SIZE)
		LOG_W("disk %s: size %lld is not a multiple of %d; the last %lld bytes are not "
		      "visible to the guest", path, (long long)size, VIRTIO_BLK_SECTOR_SIZE,
		      (long long)(size % VIRTIO_BLK_SECTOR_SIZE));
	*nsectors = (uint64_t)size >> VIRTIO_BLK_SECTOR_SHIFT;
	*fd_out = fd;
	return 0;
fail:
	close(fd);
	return -1;
}

/* ---- Completing requests ---- */

static struct virtq *queue(struct virtio_block *b)
{
	return virtio_mmio_queue(&b->mmio, 0);
}

/* Writes the status byte and returns the chain with `used` bytes written. */
static void complete(struct virtio_block *b, uint16_t head, uint64_t status_gpa, uint8_t status,
		     uint32_t used)
{
	if (gm_write(b->gm, status_gpa, &status, 1))
		used = 0; /* cannot happen: the chain was checked to be in memory */
	if (virtq_push(queue(b), b->gm, head, used) == 0)
		b->pushed = true;
}

static void signal_used(struct virtio_block *b)
{
	if (!b->pushed)
		return;
	b->pushed = false;
	virtio_mmio_signal_used(&b->mmio, queue(b));
}

static const char *type_name(uint8_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN: return "read";
	case VIRTIO_BLK_T_OUT: return "write";
	default: return "flush";
	}
}

/* Slots are taken from the top of the free stack (free_slot() peeked at it)
 * and put back on it when their request finishes. */
static void slot_take(struct virtio_block *b, struct blk_slot *s)
{
	s->busy = true;
	b->nr_free--;
}

static void slot_put(struct virtio_block *b, struct blk_slot *s)
{
	s->busy = false;
	b->free[b->nr_free++] = (unsigned)(s - b->slots);
}

static void reset_slots(struct virtio_block *b)
{
	for (unsigned i = 0; i < b->nr_slots; i++) {
		b->slots[i].busy = false;
		b->free[i] = b->nr_slots - 1 - i;
	}
	b->nr_free = b->nr_slots;
}

/* An engine request finished with res bytes (or -errno). */
static void finish(struct virtio_block *b, struct blk_slot *s, int64_t res)
{
	uint64_t us = metrics_mono_us() - s->start_us;
	bool ok;
	uint32_t used = 1;
	switch (s->type) {
	case VIRTIO_BLK_T_IN:
		ok = res == (int64_t)s->data_len;
		metric_add(&b->m->read_bytes, res > 0 ? (uint64_t)res : 0);
		metric_latency_record(&b->m->read_agg, us);
		if (ok) {
			metric_inc(&b->m->read_count);
			used += s->data_len;
		}
		break;
	case VIRTIO_BLK_T_OUT:
		ok = res == (int64_t)s->data_len;
		metric_add(&b->m->write_bytes, res > 0 ? (uint64_t)res : 0);
		metric_latency_record(&b->m->write_agg, us);
		if (ok)
			metric_inc(&b->m->write_count);
		break;
	default:
		ok = res == 0;
		if (ok)
			metric_inc(&b->m->flush_count);
	}
	if (!ok) {
		/* Firecracker counts failed requests as invalid_reqs_count. */
		metric_inc(&b->m->invalid_reqs_count);
		if (res < 0)
			complain(b, BLK_IO_ERROR, "%s of %u bytes failed: %s", type_name(s->type),
				 s->data_len, strerror((int)-res));
		else
			complain(b, BLK_IO_ERROR, "%s of %u bytes moved only %lld (end of file, "
				 "or the host's file system full?)",
				 type_name(s->type), s->data_len, (long long)res);
	}
	complete(b, s->head, s->status_gpa, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, used);
	slot_put(b, s);
}

static void on_done(void *ctx, uint64_t cookie, int64_t res)
{
	struct virtio_block *b = ctx;
	if (cookie < b->nr_slots && b->slots[cookie].busy)
		finish(b, &b->slots[cookie], res);
}

/* Reset: the I/O finishes, but the driver has forgotten the requests. */
static void on_done_discard(void *ctx, uint64_t cookie, int64_t res)
{
	struct virtio_block *b = ctx;
	(void)res;
	if (cookie < b->nr_slots && b->slots[cookie].busy)
		slot_put(b, &b->slots[cookie]);
}

/* ---- Parsing and running requests ---- */

enum handled { HANDLED, THROTTLED, ENGINE_FULL };

struct blk_request {
	uint32_t type;
	uint64_t sector;
	uint32_t data_len;
	uint64_t status_gpa;
};

/* Checks the chain in b->chain as a block request: a readable 16-byte
 * header first, the status byte last in the writable part, data in the
 * direction its type needs, a whole number of sectors inside the disk.
 * Returns the status to fail the request with, or VIRTIO_BLK_S_OK. */
static uint8_t parse(struct virtio_block *b, struct blk_request *r)
{
	const struct virtq_chain *c = &b->chain;
	struct virtio_blk_outhdr hdr;
	if (c->read_len < sizeof(hdr) || virtq_chain_read(b->gm, c, 0, &hdr, sizeof(hdr))) {
		complain(b, BLK_BAD_REQUEST, "request without a 16-byte header");
		return VIRTIO_BLK_S_IOERR;
	}
	r->type = hdr.type;
	r->sector = hdr.sector;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool in = hdr.type == VIRTIO_BLK_T_IN;
		/* Data only in the direction of the transfer. */
		if (in ? c->read_len != sizeof(hdr) : c->write_len != 1) {
			complain(b, BLK_BAD_REQUEST, "%s with data buffers of the wrong direction",
				 in ? "read" : "write");
			return VIRTIO_BLK_S_IOERR;
		}
		r->data_len = in ? c->write_len - 1 : c->read_len - (uint32_t)sizeof(hdr);
		uint64_t nsec = r->data_len >> VIRTIO_BLK_SECTOR_SHIFT;
		if (r->data_len % VIRTIO_BLK_SECTOR_SIZE) {
			complain(b, BLK_BAD_REQUEST, "%s of %u bytes, not a multiple of %d",
				 in ? "read" : "write", r->data_len, VIRTIO_BLK_SECTOR_SIZE);
			return VIRTIO_BLK_S_IOERR;
		}
		if (r->sector > b->nsectors || nsec > b->nsectors - r->sector) {
			complain(b, BLK_BAD_REQUEST, "%s of sectors %" PRIu64 "+%" PRIu64
				 " past the end (%" PRIu64 " sectors)", in ? "read" : "write",
				 r->sector, nsec, b->nsectors);
			return VIRTIO_BLK_S_IOERR;
		}
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_GET_ID:
		r->data_len = c->write_len - 1;
		if (r->data_len < VIRTIO_BLK_ID_BYTES) {
			complain(b, BLK_BAD_REQUEST, "GET_ID with %u bytes for the %d-byte ID",
				 r->data_len, VIRTIO_BLK_ID_BYTES);
			return VIRTIO_BLK_S_IOERR;
		}
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_FLUSH:
		r->data_len = 0;
		return VIRTIO_BLK_S_OK;
	default:
		r->data_len = 0;
		return VIRTIO_BLK_S_OK; /* UNSUPP comes after the rate limiter */
	}
}

/* The idle slot the next request would take (the top of the stack). */
static struct blk_slot *free_slot(struct virtio_block *b)
{
	if (!b->nr_free || b->io->inflight >= b->io->max_inflight)
		return NULL;
	return &b->slots[b->free[b->nr_free - 1]];
}

/* Starts an IN, OUT or Writeback FLUSH on the engine. */
static enum handled submit(struct virtio_block *b, struct blk_slot *s, const struct blk_request *r)
{
	*s = (struct blk_slot){.type = (uint8_t)r->type, .head = b->chain.head,
			       .data_len = r->data_len, .status_gpa = r->status_gpa,
			       .start_us = metrics_mono_us()};
	struct block_io_req req = {.cookie = (uint64_t)(s - b->slots)};
	if (r->type == VIRTIO_BLK_T_FLUSH) {
		req.op = BLOCK_IO_FLUSH;
	} else {
		bool in = r->type == VIRTIO_BLK_T_IN;
		s->iovcnt = virtq_chain_iov(b->gm, &b->chain, in, in ? 0 : 16, r->data_len, s->iov,
					    VIRTIO_BLK_SEG_MAX);
		if (s->iovcnt < 0) {
			complain(b, BLK_BAD_REQUEST, "%s with more than %d data buffers",
				 in ? "read" : "write", VIRTIO_BLK_SEG_MAX);
			metric_inc(&b->m->invalid_reqs_count);
			complete(b, s->head, s->status_gpa, VIRTIO_BLK_S_IOERR, 1);
			return HANDLED;
		}
		req.op = in ? BLOCK_IO_READ : BLOCK_IO_WRITE;
		req.offset = r->sector << VIRTIO_BLK_SECTOR_SHIFT;
		req.iov = s->iov;
		req.iovcnt = s->iovcnt;
		req.len = r->data_len;
	}
	int64_t res;
	switch (block_io_submit(b->io, &req, &res)) {
	case BLOCK_IO_DONE:
		slot_take(b, s);
		finish(b, s, res);
		return HANDLED;
	case BLOCK_IO_QUEUED:
		slot_take(b, s);
		return HANDLED;
	default:
		return ENGINE_FULL;
	}
}

/* The request in b->chain. */
static enum handled handle(struct virtio_block *b, struct blk_slot *s)
{
	const struct virtq_chain *c = &b->chain;
	if (c->write_len == 0) {
		/* Nowhere to put a status: return the chain untouched. */
		complain(b, BLK_NO_STATUS, "request without a writable status byte");
		metric_inc(&b->m->execute_fails);
		virtq_push(queue(b), b->gm, c->head, 0);
		b->pushed = true;
		return HANDLED;
	}
	const struct virtq_seg *last = &c->segs[c->nr_segs - 1];
	struct blk_request r = {.status_gpa = last->gpa + last->len - 1};
	uint8_t status = parse(b, &r);
	if (status != VIRTIO_BLK_S_OK) {
		/* Firecracker's name for a request that does not parse. */
		metric_inc(&b->m->execute_fails);
		complete(b, c->head, r.status_gpa, status, 1);
		return HANDLED;
	}

	bool data = r.type == VIRTIO_BLK_T_IN || r.type == VIRTIO_BLK_T_OUT;
	if (!rate_limiter_consume_both(&b->rl, data ? r.data_len : 0, 1, now_ns(b)))
		return THROTTLED;

	switch (r.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (r.type == VIRTIO_BLK_T_OUT && b->cfg.is_read_only) {
			complain(b, BLK_READ_ONLY, "write to a read-only drive");
			metric_inc(&b->m->invalid_reqs_count);
			complete(b, c->head, r.status_gpa, VIRTIO_BLK_S_IOERR, 1);
			return HANDLED;
		}
		if (r.data_len == 0) {
			complete(b, c->head, r.status_gpa, VIRTIO_BLK_S_OK, 1);
			return HANDLED;
		}
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (b->cfg.cache_type == DRIVE_CACHE_UNSAFE) {
			/* Unsafe: acknowledged, never synced. */
			metric_inc(&b->m->flush_count);
			complete(b, c->head, r.status_gpa, VIRTIO_BLK_S_OK, 1);
			return HANDLED;
		}
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (virtq_chain_write(b->gm, c, 0, b->id, VIRTIO_BLK_ID_BYTES)) {
			complete(b, c->head, r.status_gpa, VIRTIO_BLK_S_IOERR, 1);
			return HANDLED;
		}
		complete(b, c->head, r.status_gpa, VIRTIO_BLK_S_OK, VIRTIO_BLK_ID_BYTES + 1);
		return HANDLED;
	default:
		complain(b, BLK_UNSUPPORTED, "unsupported request type %u", r.type);
		metric_inc(&b->m->invalid_reqs_count);
		complete(b, c->head, r.status_gpa, VIRTIO_BLK_S_UNSUPP, 1);
		return HANDLED;
	}
	enum handled h = submit(b, s, &r);
	if (h == ENGINE_FULL) {
		/* Keep the request; its tokens go back. */
		rate_limiter_replenish(&b->rl, 1, RL_OPS, now_ns(b));
		if (data)
			rate_limiter_replenish(&b->rl, r.data_len, RL_BANDWIDTH, now_ns(b));
	}
	return h;
}

/* Available requests the driver has published and the device not taken. */
static uint16_t avail_pending(struct virtio_block *b)
{
	struct virtq *q = queue(b);
	uint16_t *idx = gm_ptr(b->gm, q->avail + 2, sizeof(uint16_t));
	return idx ? (uint16_t)(__atomic_load_n(idx, __ATOMIC_RELAXED) - q->last_avail) : 0;
}

static void arm_timer(struct virtio_block *b)
{
	ember_err e;
	if (rate_limiter_timer_arm(&b->timer, &b->rl, &e)) {
		metric_inc(&b->m->event_fails);
		LOG_E("block %s: %s", b->cfg.drive_id, e.msg);
	}
}

/* The rest of the queue waits for the device's next turn: a notification
 * of its own queue, through the same path as the guest's. */
static void requeue(struct virtio_block *b)
{
	if (b->mmio.hooks.queue_notify)
		b->mmio.hooks.queue_notify(b->mmio.hooks.ctx, 0);
}

/* Works through the available ring until it is empty, the rate limiter
 * refuses a request, every engine slot is busy, or it has taken
 * VIRTIO_BLK_WORK_BUDGET requests (then it requeues itself). */
static void process(struct virtio_block *b)
{
	if (!b->active)
		return;
	struct virtq *q = queue(b);
	bool used_any = false;
	for (unsigned taken = 0;; taken++) {
		if (taken == VIRTIO_BLK_WORK_BUDGET) {
			/* Notifications back on if it looks empty, as at the
			 * end of the ring, so a request added now is not
			 * missed. */
			if (avail_pending(b) || virtq_enable_notify(q, b->gm))
				requeue(b);
			break;
		}
		struct blk_slot *s = free_slot(b);
		if (!s) {
			b->io_full = true;
			break;
		}
		if (!b->held) {
			enum virtq_pop_result r = virtq_pop(q, b->gm, &b->chain);
			if (r == VIRTQ_EMPTY) {
				if (virtq_enable_notify(q, b->gm))
					continue;
				break;
			}
			if (r == VIRTQ_BROKEN) {
				complain(b, BLK_BROKEN_RING, "queue broken (%s); device needs reset",
					 virtq_strerror(b->chain.err));
				metric_inc(&b->m->execute_fails);
				virtio_mmio_needs_reset(&b->mmio);
				break;
			}
			metric_add(&b->m->remaining_reqs_count, avail_pending(b));
			if (r == VIRTQ_BAD_CHAIN) {
				complain(b, BLK_BAD_CHAIN, "bad descriptor chain (%s)",
					 virtq_strerror(b->chain.err));
				metric_inc(&b->m->execute_fails);
				virtq_push(q, b->gm, b->chain.head, 0);
				b->pushed = true;
				used_any = true;
				continue;
			}
		}
		b->held = false;
		enum handled h = handle(b, s);
		if (h == THROTTLED) {
			b->held = true;
			metric_inc(&b->m->rate_limiter_throttled_events);
			arm_timer(b);
			break;
		}
		if (h == ENGINE_FULL) {
			b->held = true;
			b->io_full = true;
			break;
		}
		used_any = true;
	}
	block_io_kick(b->io);
	if (!used_any)
		metric_inc(&b->m->no_avail_buffer);
	signal_used(b);
}

void virtio_block_process_queue(struct virtio_block *b)
{
	metric_inc(&b->m->queue_event_count);
	if (rate_limiter_is_blocked(&b->rl))
		metric_inc(&b->m->rate_limiter_throttled_events);
	else if (b->io_full)
		metric_inc(&b->m->io_engine_throttled_events);
	else
		process(b);
}

void virtio_block_process_completions(struct virtio_block *b)
{
	block_io_reap(b->io, on_done, b);
	if (b->io_full && b->io->inflight < b->io->max_inflight) {
		b->io_full = false;
		process(b);
	}
	signal_used(b);
}

void virtio_block_rate_limiter_event(struct virtio_block *b)
{
	metric_inc(&b->m->rate_limiter_event_count);
	if (rate_limiter_timer_clear(&b->timer) < 0)
		metric_inc(&b->m->event_fails);
	if (rate_limiter_timer_fired(&b->rl, now_ns(b)))
		process(b);
	else
		arm_timer(b);
}

/* ---- virtio_dev_ops ---- */

static uint64_t blk_features(void *dev)
{
	struct virtio_block *b = dev;
	uint64_t f = 1ULL << VIRTIO_BLK_F_SEG_MAX;
	if (b->cfg.is_read_only)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	if (b->cfg.cache_type == DRIVE_CACHE_WRITEBACK)
		f |= 1ULL << VIRTIO_BLK_F_FLUSH;
	return f;
}

static void blk_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_block *b = dev;
	/* Little-endian, as the spec wants and x86 is. */
	uint8_t cfg[VIRTIO_BLK_CONFIG_SIZE] = {0};
	uint32_t seg_max = VIRTIO_BLK_SEG_MAX;
	memcpy(cfg, &b->nsectors, 8);
	memcpy(cfg + 12, &seg_max, 4);
	memcpy(data, cfg + offset, len); /* bounds checked by the transport */
}

static void blk_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_block *b = dev;
	(void)offset;
	(void)data;
	(void)len;
	/* Nothing in the config space the device exposes is writable. */
	metric_inc(&b->m->cfg_fails);
}

static int blk_activate(void *dev, struct virtio_mmio *m)
{
	struct virtio_block *b = dev;
	if (!virtio_mmio_queue(m, 0)->ready) {
		metric_inc(&b->m->activate_fails);
		complain(b, BLK_NOT_READY, "DRIVER_OK without a ready queue");
		return -1;
	}
	b->active = true;
	return 0;
}

static void blk_reset(void *dev)
{
	struct virtio_block *b = dev;
	/* The transport clears the queues after this returns: no I/O may
	 * still be writing into the driver's buffers. */
	block_io_drain(b->io, on_done_discard, b);
	reset_slots(b);
	b->active = b->held = b->io_full = b->pushed = false;
}

static const struct virtio_dev_ops blk_ops = {
	.device_id = VIRTIO_ID_BLOCK,
	.nr_queues = 1,
	.queue_max_size = {VIRTIO_BLK_QUEUE_SIZE},
	.config_size = VIRTIO_BLK_CONFIG_SIZE,
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.activate = blk_activate,
	.reset = blk_reset,
};

/* ---- Life cycle and updates ---- */

int virtio_block_create(struct virtio_block **out, const struct virtio_block_params *p,
			ember_err *e)
{
	struct virtio_block *b = calloc(1, sizeof(*b));
	if (!b)
		return err_set(e, "block: out of memory");
	b->fd = -1;
	b->timer.fd = -1;
	b->gm = p->gm;
	b->now_ns = p->now_ns;
	b->clock_ctx = p->clock_ctx;
	b->m = p->metrics ? p->metrics : &b->own_metrics;
	virtq_chain_init(&b->chain, b->segs, VIRTIO_BLK_QUEUE_SIZE);
	if (drive_config_copy(&b->cfg, p->drive, e))
		goto fail;
	build_id(b->cfg.drive_id, b->id);
	if (open_disk(b->cfg.path_on_host, b->cfg.is_read_only, &b->fd, &b->nsectors, e))
		goto fail;
	if ((b->cfg.io_engine == DRIVE_IO_ASYNC ? block_io_uring_create(&b->io, b->fd, e)
						 : block_io_sync_create(&b->io, b->fd, e)))
		goto fail;
	b->nr_slots = b->io->max_inflight;
	b->slots = calloc(b->nr_slots, sizeof(*b->slots));
	b->free = calloc(b->nr_slots, sizeof(*b->free));
	if (!b->slots || !b->free) {
		err_set(e, "out of memory");
		goto fail;
	}
	reset_slots(b);
	rate_limiter_init(&b->rl, &b->cfg.rate_limiter, now_ns(b));
	if (rate_limiter_timer_open(&b->timer, e))
		goto fail;
	if (virtio_mmio_init(&b->mmio, &blk_ops, b, p->gm, &p->hooks, e))
		goto fail;
	*out = b;
	return 0;
fail:
	err_prefix(e, "drive %s", p->drive->drive_id ? p->drive->drive_id : "?");
	virtio_block_destroy(b);
	return -1;
}

void virtio_block_destroy(struct virtio_block *b)
{
	if (!b)
		return;
	if (b->io) {
		block_io_drain(b->io, on_done_discard, b);
		block_io_destroy(b->io);
	}
	/* As Firecracker on drop: a Writeback drive gets its data to disk. */
	if (b->fd >= 0 && b->cfg.cache_type == DRIVE_CACHE_WRITEBACK && fdatasync(b->fd))
		LOG_W("block %s: fdatasync: %s", b->cfg.drive_id, strerror(errno));
	if (b->fd >= 0)
		close(b->fd);
	rate_limiter_timer_close(&b->timer);
	free(b->slots);
	free(b->free);
	drive_config_free(&b->cfg);
	free(b);
}

void virtio_block_quiesce(struct virtio_block *b)
{
	block_io_drain(b->io, on_done, b);
	signal_used(b);
}

int virtio_block_update_path(struct virtio_block *b, const char *path, ember_err *e)
{
	int fd;
	uint64_t nsectors;
	char *copy = strdup(path);
	if (!copy) {
		metric_inc(&b->m->update_fails);
		return err_set(e, "drive %s: out of memory", b->cfg.drive_id);
	}
	if (open_disk(path, b->cfg.is_read_only, &fd, &nsectors, e)) {
		free(copy);
		metric_inc(&b->m->update_fails);
		return err_prefix(e, "drive %s", b->cfg.drive_id);
	}
	/* Requests in flight finish on the old file and reach the driver. */
	block_io_drain(b->io, on_done, b);
	if (block_io_set_file(b->io, fd, e)) {
		close(fd);
		free(copy);
		metric_inc(&b->m->update_fails);
		signal_used(b);
		return err_prefix(e, "drive %s", b->cfg.drive_id);
	}
	close(b->fd);
	b->fd = fd;
	b->nsectors = nsectors;
	free(b->cfg.path_on_host);
	b->cfg.path_on_host = copy;
	signal_used(b);
	virtio_mmio_config_changed(&b->mmio);
	metric_inc(&b->m->update_count);
	/* The queue may have stopped for room in the engine. */
	if (b->io_full) {
		b->io_full = false;
		process(b);
	}
	return 0;
}

int virtio_block_update_rate_limiter(struct virtio_block *b, const struct rate_limiter_config *c,
				     ember_err *e)
{
	bool kick = rate_limiter_update(&b->rl, c, now_ns(b));
	rate_limiter_config_apply_update(&b->cfg.rate_limiter, c);
	if (rate_limiter_timer_arm(&b->timer, &b->rl, e))
		return err_prefix(e, "drive %s", b->cfg.drive_id);
	if (kick)
		process(b);
	return 0;
}

int virtio_block_patch(struct virtio_block *b, const struct drive_patch *p, ember_err *e)
{
	if (p->path_on_host && virtio_block_update_path(b, p->path_on_host, e))
		return -1;
	return virtio_block_update_rate_limiter(b, &p->rate_limiter, e);
}

/* ---- Accessors ---- */

struct virtio_mmio *virtio_block_mmio(struct virtio_block *b)
{
	return &b->mmio;
}

struct block_metrics *virtio_block_metrics(struct virtio_block *b)
{
	return b->m;
}

uint64_t virtio_block_capacity(const struct virtio_block *b)
{
	return b->nsectors;
}

int virtio_block_completion_fd(const struct virtio_block *b)
{
	return b->io->event_fd;
}

int virtio_block_rate_limiter_fd(const struct virtio_block *b)
{
	return b->timer.fd;
}

const char *virtio_block_drive_id(const struct virtio_block *b)
{
	return b->cfg.drive_id;
}

json_t *virtio_block_config_json(const struct virtio_block *b)
{
	struct drive_config c = b->cfg;
	rate_limiter_get_config(&b->rl, &c.rate_limiter);
	return drive_config_json(&c);
}
