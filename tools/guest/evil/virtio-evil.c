/* virtio-evil: a hostile virtio-block driver, run as root inside an Ember
 * test guest. It takes a virtio-mmio block device away from the kernel's
 * virtio_blk driver (sysfs unbind), drives its registers itself through
 * /dev/mem, with its rings and buffers in a locked page-aligned buffer of its
 * own (guest-physical addresses from /proc/self/pagemap), and submits one
 * malformed request per scenario. For each scenario it prints one line:
 *
 *   EMBER-EVIL <scenario> result=completed status=N len=M id=ok|bad [data=...] base=0x...
 *   EMBER-EVIL <scenario> result=needs-reset base=0x...
 *   EMBER-EVIL <scenario> result=no-completion base=0x...
 *   EMBER-EVIL reset-in-flight result=reset data=untouched|written used=untouched|written ...
 *
 * status is the byte where the request's status belongs (255: the device
 * wrote none), len the used length, data the CRC-32 of the data buffers (or
 * "untouched" when they still hold the fill pattern). The device is reset
 * before every scenario. Exits 0 if every scenario could be run, whatever
 * the device answered; 1 on a setup failure; 2 on bad usage.
 *
 * Usage: virtio-evil [-t SECONDS] [-r] BASE SCENARIO...
 *   BASE  the device's MMIO window, e.g. 0xc0001000
 *   -t    how long to wait for each answer (default 5 s)
 *   -r    at the end, give the device back to virtio_blk (bind)
 *   -l    list the scenarios
 *
 * Built static (gcc -static) by tools/guest/build-evil.sh. Linux, x86_64. */
#define _GNU_SOURCE
#define EVIL_NAME "virtio-evil"
#include <ctype.h>
#include <time.h>

#include "evil-virtio.h"

/* virtio-block (5.2.6) */
#define BLK_ID 2
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_GET_ID 8
#define BLK_S_OK 0
#define SECTOR 512

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* ---- the buffer the device sees ---- */

#define QSIZE 128u /* a power of two; 128 leaves room for the 66-buffer chain */
#define NR_PAGES 32u
/* Page 0: descriptor table (2 KiB), available ring, used ring. */
#define OFF_DESC 0x000u
#define OFF_AVAIL 0x800u
#define OFF_USED 0xa00u
/* Page 1: request headers and status bytes. */
#define OFF_HDR (1 * PAGE)
#define OFF_STATUS (1 * PAGE + 0x800)
/* Pages 2 and 3: indirect tables (up to 256 entries each). */
#define OFF_INDIRECT (2 * PAGE)
#define OFF_INDIRECT2 (3 * PAGE)
/* Pages 4 to 19: data, one 512-byte buffer per descriptor (never across a
 * page, so each is physically contiguous). */
#define OFF_DATA (4 * PAGE)
#define DATA_SECTORS 128u

#define FILL_DATA 0xa5
#define FILL_STATUS 0xff
/* The sector the valid reads start at. */
#define READ_SECTOR 1

struct evil {
	struct vdev d;
	uint64_t gpa[NR_PAGES];
	uint64_t capacity; /* sectors */
	uint64_t ram_end;  /* one past the last byte of guest RAM */
	unsigned used_off; /* where in buf the used ring is (OFF_USED) */
	struct vq vq;      /* queue 0 */
};

/* What a scenario set up, for the report. */
struct probe {
	uint16_t head;
	uint8_t *status;   /* where the status byte belongs */
	uint8_t *data;     /* the data buffers: data_segs of SECTOR bytes */
	unsigned data_segs;
	uint16_t avail_idx; /* what to publish as the available index (1) */
	bool reset_in_flight; /* reset right after the notify, and watch */
};

struct scenario;

/* Queue set-up overrides (scenarios that break the rings themselves). */
struct qsetup {
	uint32_t num;
	uint64_t desc, avail, used;
	bool no_ready; /* DRIVER_OK without ever setting QueueReady */
};

struct scenario {
	const char *name;
	const char *what;
	/* Changes the rings' set-up (NULL: the usual one). If the device
	 * accepts the change, the request goes out anyway. */
	void (*queue)(struct evil *ev, struct qsetup *q);
	void (*build)(struct evil *ev, struct probe *p);
};

#define VIRTIO_BLK_DRV "/sys/bus/virtio/drivers/virtio_blk"

/* ---- driving the device ---- */

static uint64_t read_capacity(struct evil *ev)
{
	uint32_t lo, hi, gen;
	do {
		gen = rd(&ev->d, REG_CONFIG_GENERATION);
		lo = rd(&ev->d, REG_CONFIG);
		hi = rd(&ev->d, REG_CONFIG + 4);
	} while (gen != rd(&ev->d, REG_CONFIG_GENERATION));
	return (uint64_t)hi << 32 | lo;
}

static struct vring_desc *desc_table(struct evil *ev)
{
	return (struct vring_desc *)(ev->d.buf + OFF_DESC);
}

/* ---- building requests ---- */

static void set_desc(struct vring_desc *t, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	t[i] = (struct vring_desc){.addr = addr, .len = len, .flags = flags, .next = next};
}

static struct blk_hdr *hdr(struct evil *ev, uint32_t type, uint64_t sector)
{
	struct blk_hdr *h = (struct blk_hdr *)(ev->d.buf + OFF_HDR);
	*h = (struct blk_hdr){.type = type, .sector = sector};
	return h;
}

static uint8_t *data_seg(struct evil *ev, unsigned i)
{
	return ev->d.buf + OFF_DATA + (size_t)i * SECTOR;
}

/* The usual three-descriptor request in the table: header (0), one data
 * buffer (1, device-writable for IN), status (2). */
static void request3(struct evil *ev, struct probe *p, uint32_t type, uint64_t sector)
{
	struct vring_desc *t = desc_table(ev);
	uint16_t dflag = type == BLK_T_OUT ? 0 : DESC_F_WRITE;
	set_desc(t, 0, gpa_of(&ev->d, hdr(ev, type, sector)), sizeof(struct blk_hdr), DESC_F_NEXT,
		 1);
	set_desc(t, 1, gpa_of(&ev->d, data_seg(ev, 0)), SECTOR, DESC_F_NEXT | dflag, 2);
	set_desc(t, 2, gpa_of(&ev->d, ev->d.buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->head = 0;
	p->status = ev->d.buf + OFF_STATUS;
	p->data = data_seg(ev, 0);
	p->data_segs = 1;
}

/* A request whose data descriptor points at addr/len instead. */
static void request_bad_data(struct evil *ev, struct probe *p, uint64_t addr, uint32_t len)
{
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[1].addr = addr;
	desc_table(ev)[1].len = len;
	p->data = NULL;
	p->data_segs = 0;
}

/* Descriptor 0 of the table points at the indirect table at off. */
static struct vring_desc *indirect(struct evil *ev, struct probe *p, unsigned off, unsigned n)
{
	set_desc(desc_table(ev), 0, gpa_of(&ev->d, ev->d.buf + off), n * sizeof(struct vring_desc),
		 DESC_F_INDIRECT, 0);
	p->head = 0;
	return (struct vring_desc *)(ev->d.buf + off);
}

/* An IN request of data_segs sectors in an indirect table of data_segs + 2
 * entries: header, data_segs buffers of 512 bytes, status. */
static void indirect_read(struct evil *ev, struct probe *p, unsigned data_segs)
{
	struct vring_desc *t = indirect(ev, p, OFF_INDIRECT, data_segs + 2);
	set_desc(t, 0, gpa_of(&ev->d, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	for (unsigned i = 0; i < data_segs; i++)
		set_desc(t, 1 + i, gpa_of(&ev->d, data_seg(ev, i)), SECTOR,
			 DESC_F_WRITE | DESC_F_NEXT, (uint16_t)(2 + i));
	set_desc(t, data_segs + 1, gpa_of(&ev->d, ev->d.buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->d.buf + OFF_STATUS;
	p->data = data_seg(ev, 0);
	p->data_segs = data_segs;
}

/* ---- the scenarios ---- */

static void s_read(struct evil *ev, struct probe *p)
{
	request3(ev, p, BLK_T_IN, READ_SECTOR);
}

static void s_chain_max(struct evil *ev, struct probe *p)
{
	/* QSIZE buffers: as long as a chain may be. */
	indirect_read(ev, p, QSIZE - 2);
}

static void s_chain_long(struct evil *ev, struct probe *p)
{
	indirect_read(ev, p, QSIZE - 1);
}

static void s_loop(struct evil *ev, struct probe *p)
{
	/* header -> data -> status -> data -> status ... */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[2].flags |= DESC_F_NEXT;
	desc_table(ev)[2].next = 1;
}

static void s_loop_self(struct evil *ev, struct probe *p)
{
	/* Zero-length buffers carry nothing, but must still count. */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	set_desc(desc_table(ev), 0, 0, 0, DESC_F_NEXT, 0);
	p->data = NULL;
	p->data_segs = 0;
}

static void s_loop_indirect(struct evil *ev, struct probe *p)
{
	struct vring_desc *t = indirect(ev, p, OFF_INDIRECT, 3);
	set_desc(t, 0, gpa_of(&ev->d, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	set_desc(t, 1, gpa_of(&ev->d, data_seg(ev, 0)), SECTOR, DESC_F_WRITE | DESC_F_NEXT, 2);
	set_desc(t, 2, gpa_of(&ev->d, ev->d.buf + OFF_STATUS), 1, DESC_F_WRITE | DESC_F_NEXT, 1);
	p->status = ev->d.buf + OFF_STATUS;
	p->data = data_seg(ev, 0);
	p->data_segs = 1;
}

static void s_next_range(struct evil *ev, struct probe *p)
{
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[1].next = QSIZE; /* one past the table */
}

static void s_addr_4g(struct evil *ev, struct probe *p)
{
	request_bad_data(ev, p, 0xfffff000ULL, SECTOR);
}

static void s_addr_far(struct evil *ev, struct probe *p)
{
	request_bad_data(ev, p, 1ULL << 46, SECTOR);
}

static void s_addr_edge(struct evil *ev, struct probe *p)
{
	/* Half inside the last page of RAM, half beyond it. */
	request_bad_data(ev, p, ev->ram_end - SECTOR / 2, SECTOR);
}

static void s_addr_mmio(struct evil *ev, struct probe *p)
{
	/* The device's own register window: not memory. */
	request_bad_data(ev, p, ev->d.base, SECTOR);
}

static void s_len_wrap(struct evil *ev, struct probe *p)
{
	/* addr + len wraps around 2^64 to a small, valid-looking address. */
	request_bad_data(ev, p, 0xfffffffffffff000ULL, 0x2000);
}

static void s_len_huge(struct evil *ev, struct probe *p)
{
	/* A real buffer, claimed to be nearly 4 GiB long. */
	request_bad_data(ev, p, gpa_of(&ev->d, data_seg(ev, 0)), 0xfffffe00u);
}

static void s_len_sum(struct evil *ev, struct probe *p)
{
	/* A write whose 64 data buffers of 64 MiB (all the same guest RAM)
	 * add up to 4 GiB: the lengths must not wrap around 32 bits. The
	 * sector is past the end, so even a wrapped length writes nothing. */
	const unsigned n = 64;
	const uint32_t len = 64u << 20;
	uint64_t at = ev->ram_end / 4;
	struct vring_desc *t = indirect(ev, p, OFF_INDIRECT, n + 2);
	set_desc(t, 0, gpa_of(&ev->d, hdr(ev, BLK_T_OUT, ev->capacity)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	for (unsigned i = 0; i < n; i++)
		set_desc(t, 1 + i, at, len, DESC_F_NEXT, (uint16_t)(2 + i));
	set_desc(t, n + 1, gpa_of(&ev->d, ev->d.buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->d.buf + OFF_STATUS;
}

static void s_hdr_write(struct evil *ev, struct probe *p)
{
	/* The driver's header marked device-writable: no readable header. */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[0].flags |= DESC_F_WRITE;
}

static void s_data_ro(struct evil *ev, struct probe *p)
{
	/* A read into a buffer the device may only read. */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[1].flags &= (uint16_t)~DESC_F_WRITE;
}

static void s_write_data_w(struct evil *ev, struct probe *p)
{
	/* A write whose data is device-writable: nothing to write from. */
	request3(ev, p, BLK_T_OUT, READ_SECTOR);
	desc_table(ev)[1].flags |= DESC_F_WRITE;
}

static void s_readable_after_writable(struct evil *ev, struct probe *p)
{
	/* header, status (writable), then the data readable: wrong order. */
	request3(ev, p, BLK_T_OUT, READ_SECTOR);
	struct vring_desc *t = desc_table(ev);
	set_desc(t, 0, t[0].addr, t[0].len, DESC_F_NEXT, 2);
	set_desc(t, 2, gpa_of(&ev->d, ev->d.buf + OFF_STATUS), 1, DESC_F_WRITE | DESC_F_NEXT, 1);
	set_desc(t, 1, gpa_of(&ev->d, data_seg(ev, 0)), SECTOR, 0, 0);
	p->data = NULL;
	p->data_segs = 0;
}

static void s_no_status(struct evil *ev, struct probe *p)
{
	/* Only the header: no device-writable byte at all. */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[0].flags = 0;
	p->data = NULL;
	p->data_segs = 0;
}

static void s_status_in_data(struct evil *ev, struct probe *p)
{
	/* Header and a 512-byte buffer, no status descriptor: the status is
	 * the buffer's last byte, leaving 511 bytes of data. */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[1].flags = DESC_F_WRITE;
	p->status = data_seg(ev, 0) + SECTOR - 1;
	p->data = NULL;
	p->data_segs = 0;
}

static void s_bad_type(struct evil *ev, struct probe *p)
{
	request3(ev, p, 0xff, READ_SECTOR);
}

static void s_past_end(struct evil *ev, struct probe *p)
{
	request3(ev, p, BLK_T_IN, ev->capacity);
}

static void s_past_end_partial(struct evil *ev, struct probe *p)
{
	/* Two sectors: the disk's last one and one beyond. */
	indirect_read(ev, p, 2);
	((struct blk_hdr *)(ev->d.buf + OFF_HDR))->sector = ev->capacity - 1;
}

static void s_sector_wrap(struct evil *ev, struct probe *p)
{
	request3(ev, p, BLK_T_IN, UINT64_MAX);
}

static void s_write_past_end(struct evil *ev, struct probe *p)
{
	request3(ev, p, BLK_T_OUT, ev->capacity);
}

static void s_nested_indirect(struct evil *ev, struct probe *p)
{
	struct vring_desc *t = indirect(ev, p, OFF_INDIRECT, 1);
	struct vring_desc *t2 = (struct vring_desc *)(ev->d.buf + OFF_INDIRECT2);
	set_desc(t, 0, gpa_of(&ev->d, t2), 3 * sizeof(*t2), DESC_F_INDIRECT, 0);
	set_desc(t2, 0, gpa_of(&ev->d, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	set_desc(t2, 1, gpa_of(&ev->d, data_seg(ev, 0)), SECTOR, DESC_F_WRITE | DESC_F_NEXT, 2);
	set_desc(t2, 2, gpa_of(&ev->d, ev->d.buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->d.buf + OFF_STATUS;
	p->data = data_seg(ev, 0);
	p->data_segs = 1;
}

static void s_indirect_next(struct evil *ev, struct probe *p)
{
	indirect_read(ev, p, 1);
	desc_table(ev)[0].flags |= DESC_F_NEXT;
	desc_table(ev)[0].next = 1;
}

static void s_indirect_len(struct evil *ev, struct probe *p)
{
	indirect_read(ev, p, 1);
	desc_table(ev)[0].len = 3 * sizeof(struct vring_desc) - 8;
}

static void s_indirect_far(struct evil *ev, struct probe *p)
{
	indirect_read(ev, p, 1);
	desc_table(ev)[0].addr = 1ULL << 46;
}

static void s_indirect_next_range(struct evil *ev, struct probe *p)
{
	/* NEXT inside an indirect table pointing past its end. */
	indirect_read(ev, p, 1);
	((struct vring_desc *)(ev->d.buf + OFF_INDIRECT))[1].next = 3;
}

static void s_odd_len(struct evil *ev, struct probe *p)
{
	/* 100 bytes of data: not a whole sector. */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	desc_table(ev)[1].len = 100;
}

static void s_get_id_short(struct evil *ev, struct probe *p)
{
	/* GET_ID with room for 8 of the ID's 20 bytes. */
	request3(ev, p, BLK_T_GET_ID, 0);
	desc_table(ev)[1].len = 8;
}

static void q_big(struct evil *ev, struct qsetup *q)
{
	/* The device's largest queue. The 4 KiB descriptor table covers the
	 * rings of the usual layout (only entry 0 is used), so the used ring
	 * moves to page 3. */
	q->num = 2 * QSIZE;
	ev->used_off = OFF_INDIRECT2;
	q->used = gpa_of(&ev->d, ev->d.buf + OFF_INDIRECT2);
}

static void s_too_many_segs(struct evil *ev, struct probe *p)
{
	/* 200 data buffers, more than the device's seg_max of 128; they
	 * reuse the 128 data sectors of the buffer. */
	const unsigned n = 200;
	struct vring_desc *t = indirect(ev, p, OFF_INDIRECT, n + 2);
	set_desc(t, 0, gpa_of(&ev->d, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	for (unsigned i = 0; i < n; i++)
		set_desc(t, 1 + i, gpa_of(&ev->d, data_seg(ev, i % DATA_SECTORS)), SECTOR,
			 DESC_F_WRITE | DESC_F_NEXT, (uint16_t)(2 + i));
	set_desc(t, n + 1, gpa_of(&ev->d, ev->d.buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->d.buf + OFF_STATUS;
	p->data = data_seg(ev, 0);
	p->data_segs = DATA_SECTORS;
}

static void s_reset_in_flight(struct evil *ev, struct probe *p)
{
	/* A valid read of 126 sectors, then a reset at once: once the reset
	 * is done, the device must leave the buffers and rings alone. */
	indirect_read(ev, p, QSIZE - 2);
	p->reset_in_flight = true;
}

static void s_avail_jump(struct evil *ev, struct probe *p)
{
	/* A valid request in slot 0, but an index that says QSIZE + 1 were
	 * added. */
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	p->avail_idx = QSIZE + 1;
}

static void s_bad_head(struct evil *ev, struct probe *p)
{
	request3(ev, p, BLK_T_IN, READ_SECTOR);
	p->head = QSIZE + 3;
}

static void q_ring_outside(struct evil *ev, struct qsetup *q)
{
	(void)ev;
	q->desc = 1ULL << 46;
}

static void q_ring_edge(struct evil *ev, struct qsetup *q)
{
	/* The used ring's last bytes beyond the end of RAM. */
	q->used = ev->ram_end - 64;
}

static void q_ring_size(struct evil *ev, struct qsetup *q)
{
	(void)ev;
	q->num = 3;
}

static void q_not_ready(struct evil *ev, struct qsetup *q)
{
	(void)ev;
	q->no_ready = true;
}

static void q_ring_misaligned(struct evil *ev, struct qsetup *q)
{
	(void)ev;
	q->desc += 8;
}

static const struct scenario scenarios[] = {
	{"read", "valid read of one sector (control)", NULL, s_read},
	{"chain-max", "valid read through a chain exactly as long as the queue", NULL,
	 s_chain_max},
	{"chain-long", "indirect chain one longer than the queue", NULL, s_chain_long},
	{"loop", "descriptor loop (status -> data -> status ...)", NULL, s_loop},
	{"loop-self", "zero-length descriptor that is its own next", NULL, s_loop_self},
	{"loop-indirect", "loop inside an indirect table", NULL, s_loop_indirect},
	{"next-range", "NEXT index outside the descriptor table", NULL, s_next_range},
	{"addr-4g", "data buffer at 0xfffff000 (MMIO gap)", NULL, s_addr_4g},
	{"addr-far", "data buffer at 1<<46", NULL, s_addr_far},
	{"addr-edge", "data buffer straddling the end of RAM", NULL, s_addr_edge},
	{"addr-mmio", "data buffer on the device's own registers", NULL, s_addr_mmio},
	{"len-wrap", "address + length wrapping around 2^64", NULL, s_len_wrap},
	{"len-huge", "real buffer with a length of almost 4 GiB", NULL, s_len_huge},
	{"len-sum", "write whose buffer lengths add up to 4 GiB", NULL, s_len_sum},
	{"hdr-write", "header marked device-writable", NULL, s_hdr_write},
	{"data-ro", "read into a device-readable (driver-only) buffer", NULL, s_data_ro},
	{"write-data-w", "write whose data is device-writable", NULL, s_write_data_w},
	{"order", "device-readable buffer after a device-writable one", NULL,
	 s_readable_after_writable},
	{"no-status", "no device-writable byte (no status)", NULL, s_no_status},
	{"status-in-data", "no status descriptor: status is the data's last byte", NULL,
	 s_status_in_data},
	{"bad-type", "unknown request type 0xff", NULL, s_bad_type},
	{"past-end", "read at sector == capacity", NULL, s_past_end},
	{"past-end-partial", "read of the last sector and one beyond", NULL, s_past_end_partial},
	{"sector-wrap", "read at sector 2^64-1", NULL, s_sector_wrap},
	{"write-past-end", "write at sector == capacity", NULL, s_write_past_end},
	{"nested-indirect", "indirect descriptor inside an indirect table", NULL,
	 s_nested_indirect},
	{"indirect-next", "indirect descriptor with NEXT", NULL, s_indirect_next},
	{"indirect-len", "indirect table length not a multiple of 16", NULL, s_indirect_len},
	{"indirect-far", "indirect table at 1<<46", NULL, s_indirect_far},
	{"indirect-next-range", "NEXT past the end of an indirect table", NULL,
	 s_indirect_next_range},
	{"odd-len", "read of 100 bytes (not a whole sector)", NULL, s_odd_len},
	{"get-id-short", "GET_ID with an 8-byte buffer", NULL, s_get_id_short},
	{"too-many-segs", "read in 200 buffers (seg_max is 128), queue of 256", q_big,
	 s_too_many_segs},
	{"reset-in-flight", "reset right after submitting a 63 KiB read", NULL,
	 s_reset_in_flight},
	{"avail-jump", "available index ahead by more than the queue size", NULL, s_avail_jump},
	{"bad-head", "available ring names a descriptor outside the table", NULL, s_bad_head},
	{"ring-outside", "descriptor table at 1<<46", q_ring_outside, s_read},
	{"ring-edge", "used ring running past the end of RAM", q_ring_edge, s_read},
	{"ring-size", "queue size 3 (not a power of two)", q_ring_size, s_read},
	{"ring-misaligned", "descriptor table 8-byte aligned", q_ring_misaligned, s_read},
	{"queue-not-ready", "DRIVER_OK without QueueReady", q_not_ready, s_read},
};

#define NR_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/* ---- running one ---- */

/* CRC-32 (IEEE 802.3, as zlib's crc32), bit by bit: small and fast enough. */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c >> 1 ^ (0xedb88320u & -(c & 1));
	}
	return ~c;
}

static bool all_fill(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != FILL_DATA)
			return false;
	return true;
}

/* reset-in-flight: resets the device, then refills the data buffers and
 * clears the used ring, and checks that they stay that way. */
static bool watch_after_reset(struct evil *ev, const struct scenario *s)
{
	reset_device(&ev->d);
	memset(ev->d.buf + OFF_DATA, FILL_DATA, DATA_SECTORS * SECTOR);
	memset(ev->d.buf + ev->used_off, 0, 8 * QSIZE + 6);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	pause_ms((unsigned)(ev->d.timeout * 1000 / 10));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bool used_clean = true;
	for (unsigned i = 0; i < 8 * QSIZE + 6; i++)
		used_clean &= ev->d.buf[ev->used_off + i] == 0;
	printf("EMBER-EVIL %s result=reset data=%s used=%s dev=0x%x base=0x%" PRIx64 "\n", s->name,
	       all_fill(ev->d.buf + OFF_DATA, DATA_SECTORS * SECTOR) ? "untouched" : "written",
	       used_clean ? "untouched" : "written", rd(&ev->d, REG_STATUS), ev->d.base);
	return true;
}

/* Returns false if the scenario could not be run. */
static bool run(struct evil *ev, const struct scenario *s)
{
	negotiate(&ev->d, 1ULL << F_VERSION_1 | 1ULL << F_INDIRECT_DESC);
	memset(ev->d.buf, 0, OFF_DATA);
	memset(ev->d.buf + OFF_DATA, FILL_DATA, DATA_SECTORS * SECTOR);
	memset(ev->d.buf + OFF_STATUS, FILL_STATUS, 16);

	struct qsetup q = {
		.num = QSIZE,
		.desc = gpa_of(&ev->d, ev->d.buf + OFF_DESC),
		.avail = gpa_of(&ev->d, ev->d.buf + OFF_AVAIL),
		.used = gpa_of(&ev->d, ev->d.buf + OFF_USED),
	};
	ev->used_off = OFF_USED;
	if (s->queue)
		s->queue(ev, &q);
	struct vq *vq = &ev->vq;
	vq_init(vq, 0, QSIZE, ev->d.buf + OFF_DESC, ev->d.buf + OFF_AVAIL,
		ev->d.buf + ev->used_off);
	wr(&ev->d, REG_QUEUE_SEL, 0);
	uint32_t max = rd(&ev->d, REG_QUEUE_NUM_MAX);
	if (max < QSIZE) {
		fprintf(stderr, "virtio-evil: queue 0 holds at most %u, need %u\n", max, QSIZE);
		return false;
	}
	if (rd(&ev->d, REG_QUEUE_READY)) {
		fprintf(stderr, "virtio-evil: queue 0 ready right after a reset\n");
		return false;
	}
	vq_place(&ev->d, 0, q.num, q.desc, q.avail, q.used);
	if (!q.no_ready)
		wr(&ev->d, REG_QUEUE_READY, 1);
	wr(&ev->d, REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);

	uint32_t st = rd(&ev->d, REG_STATUS);
	if (st & ST_NEEDS_RESET) {
		/* The rings were refused: no request is possible. */
		printf("EMBER-EVIL %s result=needs-reset ready=%u dev=0x%x base=0x%" PRIx64 "\n",
		       s->name, rd(&ev->d, REG_QUEUE_READY), st, ev->d.base);
		return true;
	}
	if (!(st & ST_DRIVER_OK)) {
		fprintf(stderr, "virtio-evil: DRIVER_OK refused (status 0x%x)\n", st);
		return false;
	}

	struct probe p = {.avail_idx = 1};
	s->build(ev, &p);
	vq->avail[0] = AVAIL_F_NO_INTERRUPT; /* we poll */
	vq_push(vq, p.head);
	vq->avail_idx = p.avail_idx; /* 1, or what the scenario claims */
	vq_kick(&ev->d, vq);
	if (p.reset_in_flight)
		return watch_after_reset(ev, s);
	const char *result = vq_wait(&ev->d, vq, 0, 1, ev->d.timeout);
	st = rd(&ev->d, REG_STATUS);
	printf("EMBER-EVIL %s result=%s", s->name, result);
	if (!strcmp(result, "completed")) {
		uint32_t id = vq_used_elem(vq, 0)[0], len = vq_used_elem(vq, 0)[1];
		printf(" status=%u len=%u id=%s", *p.status, len, id == p.head ? "ok" : "bad");
		if (p.data_segs) {
			size_t n = (size_t)p.data_segs * SECTOR;
			if (all_fill(p.data, n))
				printf(" data=untouched");
			else
				printf(" data=%08x", crc32_of(p.data, n));
		}
		if (vq_used_idx(vq) != 1)
			printf(" used-idx=%u", vq_used_idx(vq));
	}
	printf(" dev=0x%x base=0x%" PRIx64 "\n", st, ev->d.base);
	fflush(stdout);
	return true;
}

static const struct scenario *find_scenario(const char *name)
{
	for (size_t i = 0; i < NR_SCENARIOS; i++)
		if (!strcmp(scenarios[i].name, name))
			return &scenarios[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: virtio-evil [-t SECONDS] [-r] BASE SCENARIO...\n"
		   "       virtio-evil -l    (list the scenarios)\n");
}

int main(int argc, char **argv)
{
	struct evil ev = {.d = {.nr_pages = NR_PAGES, .timeout = 5}};
	ev.d.gpa = ev.gpa;
	bool rebind = false;
	int opt;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "t:rlh")) != -1) {
		switch (opt) {
		case 't':
			ev.d.timeout = atof(optarg);
			break;
		case 'r':
			rebind = true;
			break;
		case 'l':
			for (size_t i = 0; i < NR_SCENARIOS; i++)
				printf("%-20s %s\n", scenarios[i].name, scenarios[i].what);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind < 2 || !(ev.d.timeout > 0)) {
		usage(stderr);
		return 2;
	}
	char *end;
	errno = 0;
	ev.d.base = strtoull(argv[optind], &end, 0);
	if (errno || *end || !ev.d.base || ev.d.base % 0x200) {
		fprintf(stderr, "virtio-evil: bad BASE %s\n", argv[optind]);
		return 2;
	}
	for (int i = optind + 1; i < argc; i++)
		if (!find_scenario(argv[i])) {
			fprintf(stderr, "virtio-evil: no scenario %s (-l lists them)\n", argv[i]);
			return 2;
		}

	take_device(&ev.d, VIRTIO_BLK_DRV);
	map_registers(&ev.d, BLK_ID, "block device");
	map_buffer(&ev.d);
	ev.ram_end = find_ram_end();
	reset_device(&ev.d);
	ev.capacity = read_capacity(&ev);
	if (ev.capacity < DATA_SECTORS + READ_SECTOR)
		die("the disk has %" PRIu64 " sectors, need %u", ev.capacity,
		    DATA_SECTORS + READ_SECTOR);
	printf("EMBER-EVIL-DEVICE %s base=0x%" PRIx64 " capacity=%" PRIu64 " ram-end=0x%" PRIx64
	       "\n", ev.d.name, ev.d.base, ev.capacity, ev.ram_end);

	int rc = 0;
	for (int i = optind + 1; i < argc; i++)
		if (!run(&ev, find_scenario(argv[i]))) {
			printf("EMBER-EVIL %s error base=0x%" PRIx64 "\n", argv[i], ev.d.base);
			rc = 1;
		}
	if (rebind)
		give_device_back(&ev.d, VIRTIO_BLK_DRV);
	else
		reset_device(&ev.d);
	return rc;
}
