#include "virtio/queue.h"

#include <string.h>

/* Rings are little-endian; Ember runs on x86_64 and reads them natively. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "virtqueues assume a little-endian host");

/* Guest layout (virtio 1.1 section 2.6). */
struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct vring_desc) == 16, "descriptor size");

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

#define DESC_ALIGN 16
#define AVAIL_ALIGN 2
#define USED_ALIGN 4

static uint64_t desc_bytes(uint16_t size)
{
	return 16ULL * size;
}

/* flags, idx, ring[size], used_event */
static uint64_t avail_bytes(uint16_t size)
{
	return 6 + 2ULL * size;
}

/* flags, idx, ring[size], avail_event */
static uint64_t used_bytes(uint16_t size)
{
	return 6 + 8ULL * size;
}

static const char *const error_names[] = {
	[VIRTQ_OK] = "no error",
	[VIRTQ_ERR_AVAIL_JUMP] = "available index moved by more than the queue size",
	[VIRTQ_ERR_HEAD_RANGE] = "available ring names a descriptor outside the table",
	[VIRTQ_ERR_RING_ACCESS] = "ring outside guest memory",
	[VIRTQ_ERR_NEXT_RANGE] = "next descriptor outside the table",
	[VIRTQ_ERR_CHAIN_LONG] = "descriptor chain longer than the queue (a loop?)",
	[VIRTQ_ERR_INDIRECT_OFF] = "indirect descriptor without VIRTIO_F_INDIRECT_DESC",
	[VIRTQ_ERR_INDIRECT_NEST] = "indirect descriptor inside an indirect table",
	[VIRTQ_ERR_INDIRECT_NEXT] = "indirect descriptor with the NEXT flag",
	[VIRTQ_ERR_INDIRECT_LEN] = "indirect table length is zero or not a multiple of 16",
	[VIRTQ_ERR_INDIRECT_MEM] = "indirect table outside guest memory",
	[VIRTQ_ERR_SEG_MEM] = "buffer outside guest memory",
	[VIRTQ_ERR_ORDER] = "device-readable buffer after a device-writable one",
	[VIRTQ_ERR_TOO_MANY_SEGS] = "more buffers than the device handles",
	[VIRTQ_ERR_TOTAL_LEN] = "chain longer than 4 GiB",
};

const char *virtq_strerror(enum virtq_error err)
{
	if ((unsigned)err >= sizeof(error_names) / sizeof(error_names[0]) || !error_names[err])
		return "unknown error";
	return error_names[err];
}

void virtq_init(struct virtq *q, uint16_t max_size)
{
	memset(q, 0, sizeof(*q));
	q->max_size = max_size;
	q->size = max_size;
}

void virtq_reset(struct virtq *q)
{
	virtq_init(q, q->max_size);
}

static bool power_of_two(uint32_t v)
{
	return v && !(v & (v - 1));
}

int virtq_validate(const struct virtq *q, const struct guest_mem *gm, ember_err *e)
{
	if (!power_of_two(q->size) || q->size > q->max_size)
		return err_set(e, "queue size %u is not a power of two up to %u", q->size,
			       q->max_size);
	const struct {
		const char *name;
		uint64_t gpa, len, align;
	} ring[] = {
		{"descriptor table", q->desc, desc_bytes(q->size), DESC_ALIGN},
		{"available ring", q->avail, avail_bytes(q->size), AVAIL_ALIGN},
		{"used ring", q->used, used_bytes(q->size), USED_ALIGN},
	};
	for (size_t i = 0; i < sizeof(ring) / sizeof(ring[0]); i++) {
		if (ring[i].gpa % ring[i].align)
			return err_set(e, "%s at 0x%llx is not %llu-byte aligned", ring[i].name,
				       (unsigned long long)ring[i].gpa,
				       (unsigned long long)ring[i].align);
		if (!gm_ptr(gm, ring[i].gpa, ring[i].len))
			return err_set(e, "%s at 0x%llx (%llu bytes) is outside guest memory",
				       ring[i].name, (unsigned long long)ring[i].gpa,
				       (unsigned long long)ring[i].len);
	}
	return 0;
}

void virtq_set_features(struct virtq *q, uint64_t features)
{
	q->event_idx = features & (1ULL << VIRTIO_F_EVENT_IDX);
	q->indirect = features & (1ULL << VIRTIO_F_INDIRECT_DESC);
}

void virtq_chain_init(struct virtq_chain *c, struct virtq_seg *segs, uint16_t max_segs)
{
	memset(c, 0, sizeof(*c));
	c->segs = segs;
	c->max_segs = max_segs;
}

/* The 16-bit ring fields the driver and device share. Each is read or
 * written exactly once per use through an atomic access, so the compiler can
 * neither tear nor repeat it; ordering comes from the explicit
 * acquire/release/fences at the call sites. The rings were checked to be
 * inside guest memory and aligned when the queue became ready, so a NULL
 * here means a device bug, and is reported as a broken ring. */
static uint16_t *ring_u16(const struct guest_mem *gm, uint64_t gpa)
{
	return gm_ptr(gm, gpa, sizeof(uint16_t));
}

/* The same for a field the device writes. */
static uint16_t *ring_u16_w(const struct guest_mem *gm, uint64_t gpa)
{
	return gm_ptr_w(gm, gpa, sizeof(uint16_t));
}

static uint64_t avail_idx_gpa(const struct virtq *q)
{
	return q->avail + 2;
}

static uint64_t used_event_gpa(const struct virtq *q)
{
	return q->avail + 4 + 2ULL * q->size;
}

static uint64_t avail_event_gpa(const struct virtq *q)
{
	return q->used + 4 + 8ULL * q->size;
}

static enum virtq_pop_result broken(struct virtq *q, struct virtq_chain *c, enum virtq_error err)
{
	q->broken = true;
	q->broken_err = err;
	c->err = err;
	c->nr_segs = c->nr_read = 0;
	c->read_len = c->write_len = 0;
	return VIRTQ_BROKEN;
}

/* Adds one buffer to the chain. Zero-length buffers carry nothing and are
 * dropped (their address need not be valid). */
static enum virtq_error add_seg(const struct guest_mem *gm, struct virtq_chain *c,
				const struct vring_desc *d)
{
	if (!d->len)
		return VIRTQ_OK;
	if (!gm_ptr(gm, d->addr, d->len))
		return VIRTQ_ERR_SEG_MEM;
	bool write = d->flags & VIRTQ_DESC_F_WRITE;
	if (!write && c->nr_segs > c->nr_read)
		return VIRTQ_ERR_ORDER;
	if (c->nr_segs == c->max_segs)
		return VIRTQ_ERR_TOO_MANY_SEGS;
	uint32_t *total = write ? &c->write_len : &c->read_len;
	if (d->len > UINT32_MAX - *total)
		return VIRTQ_ERR_TOTAL_LEN;
	*total += d->len;
	c->segs[c->nr_segs++] = (struct virtq_seg){.gpa = d->addr, .len = d->len, .write = write};
	if (!write)
		c->nr_read++;
	return VIRTQ_OK;
}

/* Follows the chain from head: NEXT links within the descriptor table, and
 * at most one indirect table, which ends the direct part of the chain. At
 * most q->size buffer descriptors are visited (the descriptor pointing at an
 * indirect table does not count), so a loop ends as VIRTQ_ERR_CHAIN_LONG.
 * Each descriptor is copied out of guest memory once and only the copy is
 * used, so the guest cannot change it between check and use. */
static enum virtq_error walk_chain(const struct virtq *q, const struct guest_mem *gm,
				   uint16_t head, struct virtq_chain *c)
{
	uint64_t table = q->desc;
	uint32_t table_len = q->size, idx = head, budget = q->size;
	bool in_indirect = false;

	for (;;) {
		struct vring_desc d;
		if (gm_read(gm, table + 16ULL * idx, &d, sizeof(d)))
			return in_indirect ? VIRTQ_ERR_INDIRECT_MEM : VIRTQ_ERR_RING_ACCESS;
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return VIRTQ_ERR_INDIRECT_OFF;
			if (in_indirect)
				return VIRTQ_ERR_INDIRECT_NEST;
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return VIRTQ_ERR_INDIRECT_NEXT;
			if (!d.len || d.len % sizeof(struct vring_desc))
				return VIRTQ_ERR_INDIRECT_LEN;
			if (!gm_ptr(gm, d.addr, d.len))
				return VIRTQ_ERR_INDIRECT_MEM;
			/* The WRITE flag of this descriptor means nothing (spec). */
			table = d.addr;
			table_len = d.len / sizeof(struct vring_desc);
			idx = 0;
			in_indirect = true;
			continue;
		}
		if (budget-- == 0)
			return VIRTQ_ERR_CHAIN_LONG;
		enum virtq_error err = add_seg(gm, c, &d);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return VIRTQ_OK;
		if (d.next >= table_len)
			return VIRTQ_ERR_NEXT_RANGE;
		idx = d.next;
	}
}

enum virtq_pop_result virtq_pop(struct virtq *q, const struct guest_mem *gm,
				struct virtq_chain *c)
{
	c->err = VIRTQ_OK;
	c->nr_segs = c->nr_read = 0;
	c->read_len = c->write_len = 0;
	if (!q->ready)
		return VIRTQ_EMPTY;
	if (q->broken)
		return broken(q, c, q->broken_err);

	uint16_t *idx_p = ring_u16(gm, avail_idx_gpa(q));
	if (!idx_p)
		return broken(q, c, VIRTQ_ERR_RING_ACCESS);
	/* Acquire: the ring entry and descriptors the driver wrote before it
	 * published this index are read after it. */
	uint16_t avail_idx = __atomic_load_n(idx_p, __ATOMIC_ACQUIRE);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	if (pending == 0)
		return VIRTQ_EMPTY;
	/* A driver can have at most size buffers outstanding; anything more
	 * means the index is garbage and the ring cannot be followed. */
	if (pending > q->size)
		return broken(q, c, VIRTQ_ERR_AVAIL_JUMP);

	uint16_t slot = q->last_avail & (q->size - 1);
	uint16_t *head_p = ring_u16(gm, q->avail + 4 + 2ULL * slot);
	if (!head_p)
		return broken(q, c, VIRTQ_ERR_RING_ACCESS);
	uint16_t head = __atomic_load_n(head_p, __ATOMIC_RELAXED);
	/* Without a valid head there is nothing to hand back to the driver. */
	if (head >= q->size)
		return broken(q, c, VIRTQ_ERR_HEAD_RANGE);

	q->last_avail++;
	c->head = head;
	enum virtq_error err = walk_chain(q, gm, head, c);
	if (err == VIRTQ_ERR_RING_ACCESS)
		return broken(q, c, err);
	if (err) {
		c->err = err;
		c->nr_segs = c->nr_read = 0;
		c->read_len = c->write_len = 0;
		return VIRTQ_BAD_CHAIN;
	}
	return VIRTQ_CHAIN;
}

int virtq_push(struct virtq *q, const struct guest_mem *gm, uint16_t head, uint32_t len)
{
	if (!q->ready || head >= q->size)
		return -1;
	uint16_t slot = q->used_idx & (q->size - 1);
	struct vring_used_elem elem = {.id = head, .len = len};
	uint16_t *idx_p = ring_u16_w(gm, q->used + 2);
	if (!idx_p || gm_write(gm, q->used + 4 + 8ULL * slot, &elem, sizeof(elem)))
		return -1;
	q->used_idx++;
	/* Release: the driver must see the element before the index that
	 * publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(idx_p, q->used_idx, __ATOMIC_RELAXED);
	return 0;
}

bool virtq_should_notify(struct virtq *q, const struct guest_mem *gm)
{
	if (!q->ready)
		return false;
	/* Full fence: our used->idx store must be visible before we read the
	 * driver's used_event/flags, or we race with a driver that updates
	 * used_event and then rechecks used->idx, and both sides sleep. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t old = q->signalled_used, new_idx = q->used_idx;
	q->signalled_used = new_idx;
	if (q->event_idx) {
		uint16_t *ev = ring_u16(gm, used_event_gpa(q));
		if (!ev)
			return true;
		return virtq_need_event(__atomic_load_n(ev, __ATOMIC_RELAXED), new_idx, old);
	}
	if (old == new_idx)
		return false;
	uint16_t *flags = ring_u16(gm, q->avail);
	if (!flags)
		return true;
	return !(__atomic_load_n(flags, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

void virtq_disable_notify(struct virtq *q, const struct guest_mem *gm)
{
	/* With EVENT_IDX, leaving avail_event behind last_avail is enough: the
	 * driver notifies only when its index crosses it. */
	if (!q->ready || q->event_idx)
		return;
	uint16_t *flags = ring_u16_w(gm, q->used);
	if (flags)
		__atomic_store_n(flags, VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
}

bool virtq_enable_notify(struct virtq *q, const struct guest_mem *gm)
{
	if (!q->ready || q->broken)
		return false;
	uint16_t *p = ring_u16_w(gm, q->event_idx ? avail_event_gpa(q) : q->used);
	uint16_t *idx_p = ring_u16(gm, avail_idx_gpa(q));
	if (!p || !idx_p)
		return false;
	__atomic_store_n(p, q->event_idx ? q->last_avail : 0, __ATOMIC_RELAXED);
	/* Full fence: the store above must be visible before we look at
	 * avail->idx again, or a buffer added in between goes unnoticed by both
	 * sides. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(idx_p, __ATOMIC_ACQUIRE) != q->last_avail;
}

/* The segments of the readable or writable part of a chain. */
static const struct virtq_seg *chain_part(const struct virtq_chain *c, bool write, unsigned *n,
					  uint64_t *total)
{
	if (write) {
		*n = c->nr_segs - c->nr_read;
		*total = c->write_len;
		return c->segs + c->nr_read;
	}
	*n = c->nr_read;
	*total = c->read_len;
	return c->segs;
}

/* Calls fn for each host range making up [off, off + len) of a chain part.
 * -1 if the part is too short or fn fails. */
static int chain_each(const struct guest_mem *gm, const struct virtq_chain *c, bool write,
		      uint64_t off, uint64_t len, int (*fn)(void *ctx, uint8_t *host, uint64_t n),
		      void *ctx)
{
	unsigned n;
	uint64_t total;
	const struct virtq_seg *s = chain_part(c, write, &n, &total);
	if (off > total || len > total - off)
		return -1;
	for (unsigned i = 0; i < n && len; i++) {
		if (off >= s[i].len) {
			off -= s[i].len;
			continue;
		}
		uint64_t take = s[i].len - off < len ? s[i].len - off : len;
		/* The writable part is written (copied into, or handed to
		 * preadv/io_uring) by whoever asks for it. */
		uint8_t *host = write ? gm_ptr_w(gm, s[i].gpa + off, take)
				      : gm_ptr(gm, s[i].gpa + off, take);
		if (!host || fn(ctx, host, take))
			return -1;
		len -= take;
		off = 0;
	}
	return 0;
}

struct copy_ctx {
	uint8_t *buf;
	bool to_guest;
};

static int copy_fn(void *ctx, uint8_t *host, uint64_t n)
{
	struct copy_ctx *cc = ctx;
	if (cc->to_guest)
		memcpy(host, cc->buf, n);
	else
		memcpy(cc->buf, host, n);
	cc->buf += n;
	return 0;
}

int virtq_chain_read(const struct guest_mem *gm, const struct virtq_chain *c, uint64_t off,
		     void *dst, uint64_t len)
{
	struct copy_ctx cc = {.buf = dst, .to_guest = false};
	return chain_each(gm, c, false, off, len, copy_fn, &cc);
}

int virtq_chain_write(const struct guest_mem *gm, const struct virtq_chain *c, uint64_t off,
		      const void *src, uint64_t len)
{
	/* The cast drops const only to share copy_fn; src is never written. */
	struct copy_ctx cc = {.buf = (uint8_t *)(uintptr_t)src, .to_guest = true};
	return chain_each(gm, c, true, off, len, copy_fn, &cc);
}

struct iov_ctx {
	struct iovec *iov;
	int n, max;
};

static int iov_fn(void *ctx, uint8_t *host, uint64_t n)
{
	struct iov_ctx *ic = ctx;
	if (ic->n == ic->max)
		return -1;
	ic->iov[ic->n++] = (struct iovec){.iov_base = host, .iov_len = n};
	return 0;
}

int virtq_chain_iov(const struct guest_mem *gm, const struct virtq_chain *c, bool write,
		    uint64_t off, uint64_t len, struct iovec *iov, int max_iov)
{
	struct iov_ctx ic = {.iov = iov, .n = 0, .max = max_iov};
	if (chain_each(gm, c, write, off, len, iov_fn, &ic))
		return -1;
	return ic.n;
}
