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
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "evil-time.h"

/* ---- virtio-mmio version 2 (virtio 1.1 section 4.2.2) ---- */

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG 0x100
#define MMIO_MAGIC 0x74726976 /* "virt" */

#define ST_ACKNOWLEDGE 1u
#define ST_DRIVER 2u
#define ST_DRIVER_OK 4u
#define ST_FEATURES_OK 8u
#define ST_NEEDS_RESET 0x40u
#define ST_FAILED 0x80u

#define F_INDIRECT_DESC 28
#define F_VERSION_1 32

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1

/* virtio-block (5.2.6) */
#define BLK_ID 2
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_GET_ID 8
#define BLK_S_OK 0
#define SECTOR 512

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* ---- the buffer the device sees ---- */

#define PAGE 4096u
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
	volatile uint32_t *regs;
	uint64_t base;
	uint8_t *buf;
	uint64_t gpa[NR_PAGES];
	uint64_t capacity; /* sectors */
	uint64_t ram_end;  /* one past the last byte of guest RAM */
	double timeout;
	unsigned used_off; /* where in buf the used ring is (OFF_USED) */
	char vdev[256]; /* the virtio device we unbound, e.g. "virtio0" */
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

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("virtio-evil: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	printf("EMBER-EVIL-ERROR setup failed\n");
	exit(1);
}

/* ---- registers ---- */

static uint32_t rd(struct evil *ev, unsigned off)
{
	return ev->regs[off / 4];
}

static void wr(struct evil *ev, unsigned off, uint32_t v)
{
	ev->regs[off / 4] = v;
}

static void wr64(struct evil *ev, unsigned low, uint64_t v)
{
	wr(ev, low, (uint32_t)v);
	wr(ev, low + 4, (uint32_t)(v >> 32));
}

/* ---- the buffer's guest-physical addresses ---- */

static uint64_t gpa_of(struct evil *ev, const void *p)
{
	size_t off = (size_t)((const uint8_t *)p - ev->buf);
	return ev->gpa[off / PAGE] + off % PAGE;
}

static void map_buffer(struct evil *ev)
{
	size_t len = NR_PAGES * PAGE;
	ev->buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);
	if (ev->buf == MAP_FAILED)
		die("mmap of %zu bytes: %s", len, strerror(errno));
	/* Locked and written: resident, private pages that stay where they are
	 * (the guest kernel has no compaction or THP to move them). */
	if (mlock(ev->buf, len))
		die("mlock: %s", strerror(errno));
	memset(ev->buf, 0, len);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	for (unsigned i = 0; i < NR_PAGES; i++) {
		uint64_t entry;
		off_t at = (off_t)(((uintptr_t)ev->buf / PAGE + i) * sizeof(entry));
		if (pread(fd, &entry, sizeof(entry), at) != sizeof(entry))
			die("pagemap read: %s", strerror(errno));
		uint64_t pfn = entry & ((1ULL << 55) - 1);
		if (!(entry >> 63) || !pfn)
			die("page %u is not present or its frame is hidden (not root?)", i);
		ev->gpa[i] = pfn * PAGE;
	}
	close(fd);
}

/* One past the end of the highest "System RAM" range in /proc/iomem. */
static uint64_t find_ram_end(void)
{
	FILE *f = fopen("/proc/iomem", "r");
	if (!f)
		die("/proc/iomem: %s", strerror(errno));
	char line[256];
	uint64_t end = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		if (strstr(line, "System RAM") && sscanf(line, " %llx-%llx", &a, &b) == 2 &&
		    b + 1 > end)
			end = b + 1;
	}
	fclose(f);
	if (!end)
		die("no System RAM in /proc/iomem");
	return end;
}

/* ---- taking the device from virtio_blk ---- */

#define VIRTIO_BLK_DRV "/sys/bus/virtio/drivers/virtio_blk"

/* The names /proc/iomem gives the MMIO window at base, one per line:
 * "c0001000-c0001fff : LNRO0005:00" (ACPI) or "... : virtio-mmio.0"
 * (virtio_mmio.device=); a window described both ways has both, nested,
 * and the driver binds to one of them. Returns how many were found. */
#define MAX_OWNERS 8
static int window_owners(uint64_t base, char names[MAX_OWNERS][128])
{
	FILE *f = fopen("/proc/iomem", "r");
	if (!f)
		return 0;
	char line[256];
	int n = 0;
	while (n < MAX_OWNERS && fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		int at = 0;
		if (sscanf(line, " %llx-%llx : %n", &a, &b, &at) != 2 || !at || a != base)
			continue;
		char *s = line + at;
		s[strcspn(s, "\n")] = 0;
		if (*s)
			snprintf(names[n++], sizeof(names[0]), "%s", s);
	}
	fclose(f);
	return n;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("write %s to %s: %s", text, path, strerror(errno));
	close(fd);
}

/* Finds the virtio device behind base and, if virtio_blk has it, unbinds it. */
static void take_device(struct evil *ev)
{
	char owners[MAX_OWNERS][128];
	int nr_owners = window_owners(ev->base, owners);
	if (!nr_owners)
		die("no device owns 0x%" PRIx64 " in /proc/iomem", ev->base);
	DIR *d = opendir("/sys/bus/virtio/devices");
	if (!d)
		die("/sys/bus/virtio/devices: %s", strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "virtio", 6))
			continue;
		char link[PATH_MAX], real[PATH_MAX];
		snprintf(link, sizeof(link), "/sys/bus/virtio/devices/%s", de->d_name);
		if (!realpath(link, real))
			continue;
		/* .../<owner>/virtioN */
		char *slash = strrchr(real, '/');
		if (!slash)
			continue;
		*slash = 0;
		char *parent = strrchr(real, '/');
		for (int i = 0; parent && i < nr_owners && !ev->vdev[0]; i++)
			if (!strcmp(parent + 1, owners[i]))
				snprintf(ev->vdev, sizeof(ev->vdev), "%s", de->d_name);
		if (ev->vdev[0])
			break;
	}
	closedir(d);
	if (!ev->vdev[0]) {
		for (int i = 0; i < nr_owners; i++)
			fprintf(stderr, "virtio-evil: 0x%" PRIx64 " belongs to %s\n", ev->base,
				owners[i]);
		die("no virtio device under the window at 0x%" PRIx64, ev->base);
	}
	char bound[PATH_MAX];
	snprintf(bound, sizeof(bound), VIRTIO_BLK_DRV "/%s", ev->vdev);
	if (access(bound, F_OK) == 0)
		write_file(VIRTIO_BLK_DRV "/unbind", ev->vdev);
}

static void map_registers(struct evil *ev)
{
	int fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0)
		die("/dev/mem: %s", strerror(errno));
	/* Ember's windows are 4 KiB pages; QEMU's microvm packs 512-byte ones. */
	uint64_t page = ev->base & ~(uint64_t)(PAGE - 1);
	uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)page);
	if (p == MAP_FAILED)
		die("mmap of /dev/mem at 0x%" PRIx64 ": %s", page, strerror(errno));
	close(fd);
	ev->regs = (volatile uint32_t *)(p + (ev->base - page));
	if (rd(ev, REG_MAGIC) != MMIO_MAGIC || rd(ev, REG_VERSION) != 2 ||
	    rd(ev, REG_DEVICE_ID) != BLK_ID)
		die("0x%" PRIx64 " is not a virtio-mmio v2 block device (magic 0x%x version %u id %u)",
		    ev->base, rd(ev, REG_MAGIC), rd(ev, REG_VERSION), rd(ev, REG_DEVICE_ID));
}

/* ---- driving the device ---- */

static void reset_device(struct evil *ev)
{
	wr(ev, REG_STATUS, 0);
	double end = now() + ev->timeout;
	while (rd(ev, REG_STATUS) != 0) {
		if (now() > end)
			die("the device does not reset (status 0x%x)", rd(ev, REG_STATUS));
		pause_ms(1);
	}
	wr(ev, REG_INTERRUPT_ACK, rd(ev, REG_INTERRUPT_STATUS));
}

static void give_device_back(struct evil *ev)
{
	/* As the virtio core leaves a device without a driver: reset, then
	 * ACKNOWLEDGE (its probe only adds DRIVER on top). */
	reset_device(ev);
	wr(ev, REG_STATUS, ST_ACKNOWLEDGE);
	write_file(VIRTIO_BLK_DRV "/bind", ev->vdev);
}

static uint64_t device_features(struct evil *ev)
{
	wr(ev, REG_DEVICE_FEATURES_SEL, 0);
	uint64_t f = rd(ev, REG_DEVICE_FEATURES);
	wr(ev, REG_DEVICE_FEATURES_SEL, 1);
	return f | (uint64_t)rd(ev, REG_DEVICE_FEATURES) << 32;
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (spec 3.1.1). */
static void negotiate(struct evil *ev)
{
	reset_device(ev);
	wr(ev, REG_STATUS, ST_ACKNOWLEDGE);
	wr(ev, REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);
	uint64_t want = 1ULL << F_VERSION_1 | 1ULL << F_INDIRECT_DESC;
	uint64_t have = device_features(ev);
	if ((have & want) != want)
		die("the device offers features 0x%" PRIx64 ", without VERSION_1 or INDIRECT_DESC",
		    have);
	wr(ev, REG_DRIVER_FEATURES_SEL, 0);
	wr(ev, REG_DRIVER_FEATURES, (uint32_t)want);
	wr(ev, REG_DRIVER_FEATURES_SEL, 1);
	wr(ev, REG_DRIVER_FEATURES, (uint32_t)(want >> 32));
	wr(ev, REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
	if (!(rd(ev, REG_STATUS) & ST_FEATURES_OK))
		die("FEATURES_OK refused (status 0x%x)", rd(ev, REG_STATUS));
}

static uint64_t read_capacity(struct evil *ev)
{
	uint32_t lo, hi, gen;
	do {
		gen = rd(ev, 0x0fc);
		lo = rd(ev, REG_CONFIG);
		hi = rd(ev, REG_CONFIG + 4);
	} while (gen != rd(ev, 0x0fc));
	return (uint64_t)hi << 32 | lo;
}

static struct vring_desc *desc_table(struct evil *ev)
{
	return (struct vring_desc *)(ev->buf + OFF_DESC);
}

static volatile uint16_t *avail_ring(struct evil *ev)
{
	return (volatile uint16_t *)(ev->buf + OFF_AVAIL);
}

static volatile uint16_t *used_idx(struct evil *ev)
{
	return (volatile uint16_t *)(ev->buf + ev->used_off + 2);
}

static volatile uint32_t *used_elem(struct evil *ev, unsigned i)
{
	return (volatile uint32_t *)(ev->buf + ev->used_off + 4 + 8 * i);
}

/* ---- building requests ---- */

static void set_desc(struct vring_desc *t, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	t[i] = (struct vring_desc){.addr = addr, .len = len, .flags = flags, .next = next};
}

static struct blk_hdr *hdr(struct evil *ev, uint32_t type, uint64_t sector)
{
	struct blk_hdr *h = (struct blk_hdr *)(ev->buf + OFF_HDR);
	*h = (struct blk_hdr){.type = type, .sector = sector};
	return h;
}

static uint8_t *data_seg(struct evil *ev, unsigned i)
{
	return ev->buf + OFF_DATA + (size_t)i * SECTOR;
}

/* The usual three-descriptor request in the table: header (0), one data
 * buffer (1, device-writable for IN), status (2). */
static void request3(struct evil *ev, struct probe *p, uint32_t type, uint64_t sector)
{
	struct vring_desc *t = desc_table(ev);
	uint16_t dflag = type == BLK_T_OUT ? 0 : DESC_F_WRITE;
	set_desc(t, 0, gpa_of(ev, hdr(ev, type, sector)), sizeof(struct blk_hdr), DESC_F_NEXT, 1);
	set_desc(t, 1, gpa_of(ev, data_seg(ev, 0)), SECTOR, DESC_F_NEXT | dflag, 2);
	set_desc(t, 2, gpa_of(ev, ev->buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->head = 0;
	p->status = ev->buf + OFF_STATUS;
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
	set_desc(desc_table(ev), 0, gpa_of(ev, ev->buf + off), n * sizeof(struct vring_desc),
		 DESC_F_INDIRECT, 0);
	p->head = 0;
	return (struct vring_desc *)(ev->buf + off);
}

/* An IN request of data_segs sectors in an indirect table of data_segs + 2
 * entries: header, data_segs buffers of 512 bytes, status. */
static void indirect_read(struct evil *ev, struct probe *p, unsigned data_segs)
{
	struct vring_desc *t = indirect(ev, p, OFF_INDIRECT, data_segs + 2);
	set_desc(t, 0, gpa_of(ev, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	for (unsigned i = 0; i < data_segs; i++)
		set_desc(t, 1 + i, gpa_of(ev, data_seg(ev, i)), SECTOR, DESC_F_WRITE | DESC_F_NEXT,
			 (uint16_t)(2 + i));
	set_desc(t, data_segs + 1, gpa_of(ev, ev->buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->buf + OFF_STATUS;
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
	set_desc(t, 0, gpa_of(ev, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	set_desc(t, 1, gpa_of(ev, data_seg(ev, 0)), SECTOR, DESC_F_WRITE | DESC_F_NEXT, 2);
	set_desc(t, 2, gpa_of(ev, ev->buf + OFF_STATUS), 1, DESC_F_WRITE | DESC_F_NEXT, 1);
	p->status = ev->buf + OFF_STATUS;
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
	request_bad_data(ev, p, ev->base, SECTOR);
}

static void s_len_wrap(struct evil *ev, struct probe *p)
{
	/* addr + len wraps around 2^64 to a small, valid-looking address. */
	request_bad_data(ev, p, 0xfffffffffffff000ULL, 0x2000);
}

static void s_len_huge(struct evil *ev, struct probe *p)
{
	/* A real buffer, claimed to be nearly 4 GiB long. */
	request_bad_data(ev, p, gpa_of(ev, data_seg(ev, 0)), 0xfffffe00u);
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
	set_desc(t, 0, gpa_of(ev, hdr(ev, BLK_T_OUT, ev->capacity)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	for (unsigned i = 0; i < n; i++)
		set_desc(t, 1 + i, at, len, DESC_F_NEXT, (uint16_t)(2 + i));
	set_desc(t, n + 1, gpa_of(ev, ev->buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->buf + OFF_STATUS;
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
	set_desc(t, 2, gpa_of(ev, ev->buf + OFF_STATUS), 1, DESC_F_WRITE | DESC_F_NEXT, 1);
	set_desc(t, 1, gpa_of(ev, data_seg(ev, 0)), SECTOR, 0, 0);
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
	((struct blk_hdr *)(ev->buf + OFF_HDR))->sector = ev->capacity - 1;
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
	struct vring_desc *t2 = (struct vring_desc *)(ev->buf + OFF_INDIRECT2);
	set_desc(t, 0, gpa_of(ev, t2), 3 * sizeof(*t2), DESC_F_INDIRECT, 0);
	set_desc(t2, 0, gpa_of(ev, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	set_desc(t2, 1, gpa_of(ev, data_seg(ev, 0)), SECTOR, DESC_F_WRITE | DESC_F_NEXT, 2);
	set_desc(t2, 2, gpa_of(ev, ev->buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->buf + OFF_STATUS;
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
	((struct vring_desc *)(ev->buf + OFF_INDIRECT))[1].next = 3;
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
	q->used = gpa_of(ev, ev->buf + OFF_INDIRECT2);
}

static void s_too_many_segs(struct evil *ev, struct probe *p)
{
	/* 200 data buffers, more than the device's seg_max of 128; they
	 * reuse the 128 data sectors of the buffer. */
	const unsigned n = 200;
	struct vring_desc *t = indirect(ev, p, OFF_INDIRECT, n + 2);
	set_desc(t, 0, gpa_of(ev, hdr(ev, BLK_T_IN, READ_SECTOR)), sizeof(struct blk_hdr),
		 DESC_F_NEXT, 1);
	for (unsigned i = 0; i < n; i++)
		set_desc(t, 1 + i, gpa_of(ev, data_seg(ev, i % DATA_SECTORS)), SECTOR,
			 DESC_F_WRITE | DESC_F_NEXT, (uint16_t)(2 + i));
	set_desc(t, n + 1, gpa_of(ev, ev->buf + OFF_STATUS), 1, DESC_F_WRITE, 0);
	p->status = ev->buf + OFF_STATUS;
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
	reset_device(ev);
	memset(ev->buf + OFF_DATA, FILL_DATA, DATA_SECTORS * SECTOR);
	memset(ev->buf + ev->used_off, 0, 8 * QSIZE + 6);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	pause_ms((unsigned)(ev->timeout * 1000 / 10));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bool used_clean = true;
	for (unsigned i = 0; i < 8 * QSIZE + 6; i++)
		used_clean &= ev->buf[ev->used_off + i] == 0;
	printf("EMBER-EVIL %s result=reset data=%s used=%s dev=0x%x base=0x%" PRIx64 "\n", s->name,
	       all_fill(ev->buf + OFF_DATA, DATA_SECTORS * SECTOR) ? "untouched" : "written",
	       used_clean ? "untouched" : "written", rd(ev, REG_STATUS), ev->base);
	return true;
}

/* Returns false if the scenario could not be run. */
static bool run(struct evil *ev, const struct scenario *s)
{
	negotiate(ev);
	memset(ev->buf, 0, OFF_DATA);
	memset(ev->buf + OFF_DATA, FILL_DATA, DATA_SECTORS * SECTOR);
	memset(ev->buf + OFF_STATUS, FILL_STATUS, 16);

	struct qsetup q = {
		.num = QSIZE,
		.desc = gpa_of(ev, ev->buf + OFF_DESC),
		.avail = gpa_of(ev, ev->buf + OFF_AVAIL),
		.used = gpa_of(ev, ev->buf + OFF_USED),
	};
	ev->used_off = OFF_USED;
	if (s->queue)
		s->queue(ev, &q);
	wr(ev, REG_QUEUE_SEL, 0);
	uint32_t max = rd(ev, REG_QUEUE_NUM_MAX);
	if (max < QSIZE) {
		fprintf(stderr, "virtio-evil: queue 0 holds at most %u, need %u\n", max, QSIZE);
		return false;
	}
	if (rd(ev, REG_QUEUE_READY)) {
		fprintf(stderr, "virtio-evil: queue 0 ready right after a reset\n");
		return false;
	}
	wr(ev, REG_QUEUE_NUM, q.num);
	wr64(ev, REG_QUEUE_DESC_LOW, q.desc);
	wr64(ev, REG_QUEUE_DRIVER_LOW, q.avail);
	wr64(ev, REG_QUEUE_DEVICE_LOW, q.used);
	if (!q.no_ready)
		wr(ev, REG_QUEUE_READY, 1);
	wr(ev, REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);

	uint32_t st = rd(ev, REG_STATUS);
	if (st & ST_NEEDS_RESET) {
		/* The rings were refused: no request is possible. */
		printf("EMBER-EVIL %s result=needs-reset ready=%u dev=0x%x base=0x%" PRIx64 "\n",
		       s->name, rd(ev, REG_QUEUE_READY), st, ev->base);
		return true;
	}
	if (!(st & ST_DRIVER_OK)) {
		fprintf(stderr, "virtio-evil: DRIVER_OK refused (status 0x%x)\n", st);
		return false;
	}

	struct probe p = {.avail_idx = 1};
	s->build(ev, &p);
	volatile uint16_t *avail = avail_ring(ev);
	avail[0] = AVAIL_F_NO_INTERRUPT; /* flags: we poll */
	avail[2] = p.head;               /* ring[0] */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail[1] = p.avail_idx; /* idx */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(ev, REG_QUEUE_NOTIFY, 0);
	if (p.reset_in_flight)
		return watch_after_reset(ev, s);

	/* The virtio-mmio driver still owns the interrupt line but no longer
	 * listens, so poll: the used index, and the status for NEEDS_RESET. */
	double end = now() + ev->timeout;
	const char *result = "no-completion";
	for (;;) {
		if (*used_idx(ev) != 0) {
			result = "completed";
			break;
		}
		st = rd(ev, REG_STATUS);
		if (st & ST_NEEDS_RESET) {
			result = "needs-reset";
			break;
		}
		if (now() > end)
			break;
		pause_ms(1);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	st = rd(ev, REG_STATUS);
	printf("EMBER-EVIL %s result=%s", s->name, result);
	if (!strcmp(result, "completed")) {
		uint32_t id = used_elem(ev, 0)[0], len = used_elem(ev, 0)[1];
		printf(" status=%u len=%u id=%s", *p.status, len, id == p.head ? "ok" : "bad");
		if (p.data_segs) {
			size_t n = (size_t)p.data_segs * SECTOR;
			if (all_fill(p.data, n))
				printf(" data=untouched");
			else
				printf(" data=%08x", crc32_of(p.data, n));
		}
		if (*used_idx(ev) != 1)
			printf(" used-idx=%u", *used_idx(ev));
	}
	printf(" dev=0x%x base=0x%" PRIx64 "\n", st, ev->base);
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
	struct evil ev = {.timeout = 5};
	bool rebind = false;
	int opt;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "t:rlh")) != -1) {
		switch (opt) {
		case 't':
			ev.timeout = atof(optarg);
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
	if (argc - optind < 2 || !(ev.timeout > 0)) {
		usage(stderr);
		return 2;
	}
	char *end;
	errno = 0;
	ev.base = strtoull(argv[optind], &end, 0);
	if (errno || *end || !ev.base || ev.base % 0x200) {
		fprintf(stderr, "virtio-evil: bad BASE %s\n", argv[optind]);
		return 2;
	}
	for (int i = optind + 1; i < argc; i++)
		if (!find_scenario(argv[i])) {
			fprintf(stderr, "virtio-evil: no scenario %s (-l lists them)\n", argv[i]);
			return 2;
		}

	take_device(&ev);
	map_registers(&ev);
	map_buffer(&ev);
	ev.ram_end = find_ram_end();
	reset_device(&ev);
	ev.capacity = read_capacity(&ev);
	if (ev.capacity < DATA_SECTORS + READ_SECTOR)
		die("the disk has %" PRIu64 " sectors, need %u", ev.capacity,
		    DATA_SECTORS + READ_SECTOR);
	printf("EMBER-EVIL-DEVICE %s base=0x%" PRIx64 " capacity=%" PRIu64 " ram-end=0x%" PRIx64
	       "\n", ev.vdev, ev.base, ev.capacity, ev.ram_end);

	int rc = 0;
	for (int i = optind + 1; i < argc; i++)
		if (!run(&ev, find_scenario(argv[i]))) {
			printf("EMBER-EVIL %s error base=0x%" PRIx64 "\n", argv[i], ev.base);
			rc = 1;
		}
	if (rebind)
		give_device_back(&ev);
	else
		reset_device(&ev);
	return rc;
}
