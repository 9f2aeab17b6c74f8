/* The driver side shared by the hostile virtio drivers (virtio-evil,
 * vsock-evil, balloon-evil): finding the virtio-mmio device at a window and
 * taking it from the kernel's driver (sysfs unbind), its registers through
 * /dev/mem, a locked buffer of pages with their guest-physical addresses
 * (/proc/self/pagemap) for the rings and buffers, reset and feature
 * negotiation, and split virtqueues laid out in that buffer.
 *
 * Before including it, a program defines EVIL_NAME (its name, the prefix of
 * its messages on stderr) and may define EVIL_SETUP_ERROR (the line printed
 * on stdout when it gives up; "EMBER-EVIL-ERROR setup failed" by default).
 * Everything here is static inline: a program uses what it needs. */
#ifndef EVIL_VIRTIO_H
#define EVIL_VIRTIO_H

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
#include <unistd.h>

#include "evil-time.h"

#ifndef EVIL_NAME
#error "define EVIL_NAME before including evil-virtio.h"
#endif
#ifndef EVIL_SETUP_ERROR
#define EVIL_SETUP_ERROR "EMBER-EVIL-ERROR setup failed"
#endif

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
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100
#define MMIO_MAGIC 0x74726976 /* "virt" */

#define ST_ACKNOWLEDGE 1u
#define ST_DRIVER 2u
#define ST_DRIVER_OK 4u
#define ST_FEATURES_OK 8u
#define ST_NEEDS_RESET 0x40u

#define F_INDIRECT_DESC 28
#define F_VERSION_1 32

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1

#define PAGE 4096u

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One device, as a driver holds it. */
struct vdev {
	uint64_t base;            /* the MMIO window */
	volatile uint32_t *regs;  /* its registers, mapped */
	uint8_t *buf;             /* nr_pages locked pages: rings and buffers */
	unsigned nr_pages;
	uint64_t *gpa;            /* each page's guest-physical address */
	double timeout;           /* seconds to wait for the device */
	char name[256];           /* the virtio device we unbound, e.g. "virtio0" */
};

static inline void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(EVIL_NAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	printf(EVIL_SETUP_ERROR "\n");
	exit(1);
}

/* ---- registers ---- */

static inline uint32_t rd(struct vdev *d, unsigned off)
{
	return d->regs[off / 4];
}

static inline void wr(struct vdev *d, unsigned off, uint32_t v)
{
	d->regs[off / 4] = v;
}

static inline void wr64(struct vdev *d, unsigned low, uint64_t v)
{
	wr(d, low, (uint32_t)v);
	wr(d, low + 4, (uint32_t)(v >> 32));
}

/* Maps the window at d->base; dies unless it is a virtio-mmio v2 device
 * with device ID id (what: its name for the message). */
static inline void map_registers(struct vdev *d, uint32_t id, const char *what)
{
	int fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0)
		die("/dev/mem: %s", strerror(errno));
	/* Ember's windows are 4 KiB pages; QEMU's microvm packs 512-byte ones. */
	uint64_t page = d->base & ~(uint64_t)(PAGE - 1);
	uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)page);
	if (p == MAP_FAILED)
		die("mmap of /dev/mem at 0x%" PRIx64 ": %s", page, strerror(errno));
	close(fd);
	d->regs = (volatile uint32_t *)(p + (d->base - page));
	if (rd(d, REG_MAGIC) != MMIO_MAGIC || rd(d, REG_VERSION) != 2 || rd(d, REG_DEVICE_ID) != id)
		die("0x%" PRIx64 " is not a virtio-mmio v2 %s (magic 0x%x version %u id %u)",
		    d->base, what, rd(d, REG_MAGIC), rd(d, REG_VERSION), rd(d, REG_DEVICE_ID));
}

/* ---- the buffer the device sees ---- */

/* d->nr_pages zeroed pages at d->buf, their addresses in d->gpa (room for
 * nr_pages). Locked and written: resident, private pages that stay where
 * they are (the guest kernel has no compaction or THP to move them). */
static inline void map_buffer(struct vdev *d)
{
	size_t len = (size_t)d->nr_pages * PAGE;
	d->buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		      -1, 0);
	if (d->buf == MAP_FAILED)
		die("mmap of %zu bytes: %s", len, strerror(errno));
	if (mlock(d->buf, len))
		die("mlock: %s", strerror(errno));
	memset(d->buf, 0, len);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	for (unsigned i = 0; i < d->nr_pages; i++) {
		uint64_t entry;
		off_t at = (off_t)(((uintptr_t)d->buf / PAGE + i) * sizeof(entry));
		if (pread(fd, &entry, sizeof(entry), at) != sizeof(entry))
			die("pagemap read: %s", strerror(errno));
		uint64_t pfn = entry & ((1ULL << 55) - 1);
		if (!(entry >> 63) || !pfn)
			die("page %u is not present or its frame is hidden (not root?)", i);
		d->gpa[i] = pfn * PAGE;
	}
	close(fd);
}

static inline uint64_t gpa_of(struct vdev *d, const void *p)
{
	size_t off = (size_t)((const uint8_t *)p - d->buf);
	return d->gpa[off / PAGE] + off % PAGE;
}

/* One past the end of the highest "System RAM" range in /proc/iomem. */
static inline uint64_t find_ram_end(void)
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

/* ---- taking the device from the kernel's driver ---- */

static inline void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("write %s to %s: %s", text, path, strerror(errno));
	close(fd);
}

/* The names /proc/iomem gives the MMIO window at base, one per line:
 * "c0001000-c0001fff : LNRO0005:00" (ACPI) or "... : virtio-mmio.0"
 * (virtio_mmio.device=); a window described both ways has both, nested,
 * and the driver binds to one of them. Returns how many were found. */
#define MAX_OWNERS 8
static inline int window_owners(uint64_t base, char names[MAX_OWNERS][128])
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

/* Finds the virtio device behind d->base (into d->name) and, if the driver
 * at drv (a /sys/bus/virtio/drivers/ directory) has it, unbinds it. */
static inline void take_device(struct vdev *d, const char *drv)
{
	char owners[MAX_OWNERS][128];
	int nr_owners = window_owners(d->base, owners);
	if (!nr_owners)
		die("no device owns 0x%" PRIx64 " in /proc/iomem", d->base);
	DIR *dir = opendir("/sys/bus/virtio/devices");
	if (!dir)
		die("/sys/bus/virtio/devices: %s", strerror(errno));
	struct dirent *de;
	while ((de = readdir(dir))) {
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
		for (int i = 0; parent && i < nr_owners && !d->name[0]; i++)
			if (!strcmp(parent + 1, owners[i]))
				snprintf(d->name, sizeof(d->name), "%s", de->d_name);
		if (d->name[0])
			break;
	}
	closedir(dir);
	if (!d->name[0]) {
		for (int i = 0; i < nr_owners; i++)
			fprintf(stderr, EVIL_NAME ": 0x%" PRIx64 " belongs to %s\n", d->base,
				owners[i]);
		die("no virtio device under the window at 0x%" PRIx64, d->base);
	}
	char bound[PATH_MAX], unbind[PATH_MAX];
	snprintf(bound, sizeof(bound), "%s/%s", drv, d->name);
	snprintf(unbind, sizeof(unbind), "%s/unbind", drv);
	if (access(bound, F_OK) == 0)
		write_file(unbind, d->name);
}

/* ---- driving the device ---- */

static inline void reset_device(struct vdev *d)
{
	wr(d, REG_STATUS, 0);
	double end = now() + d->timeout;
	while (rd(d, REG_STATUS) != 0) {
		if (now() > end)
			die("the device does not reset (status 0x%x)", rd(d, REG_STATUS));
		pause_ms(1);
	}
	wr(d, REG_INTERRUPT_ACK, rd(d, REG_INTERRUPT_STATUS));
}

/* Back to drv (as in take_device), as the virtio core leaves a device
 * without a driver: reset, then ACKNOWLEDGE (its probe only adds DRIVER on
 * top). */
static inline void give_device_back(struct vdev *d, const char *drv)
{
	reset_device(d);
	wr(d, REG_STATUS, ST_ACKNOWLEDGE);
	char bind[PATH_MAX];
	snprintf(bind, sizeof(bind), "%s/bind", drv);
	write_file(bind, d->name);
}

static inline uint64_t device_features(struct vdev *d)
{
	wr(d, REG_DEVICE_FEATURES_SEL, 0);
	uint64_t f = rd(d, REG_DEVICE_FEATURES);
	wr(d, REG_DEVICE_FEATURES_SEL, 1);
	return f | (uint64_t)rd(d, REG_DEVICE_FEATURES) << 32;
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (spec 3.1.1): dies
 * unless the device offers all of want (bits) and takes them. */
static inline void negotiate(struct vdev *d, uint64_t want)
{
	reset_device(d);
	wr(d, REG_STATUS, ST_ACKNOWLEDGE);
	wr(d, REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);
	uint64_t have = device_features(d);
	if ((have & want) != want)
		die("the device offers features 0x%" PRIx64 ", without all of 0x%" PRIx64, have,
		    want);
	wr(d, REG_DRIVER_FEATURES_SEL, 0);
	wr(d, REG_DRIVER_FEATURES, (uint32_t)want);
	wr(d, REG_DRIVER_FEATURES_SEL, 1);
	wr(d, REG_DRIVER_FEATURES, (uint32_t)(want >> 32));
	wr(d, REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
	if (!(rd(d, REG_STATUS) & ST_FEATURES_OK))
		die("FEATURES_OK refused (status 0x%x)", rd(d, REG_STATUS));
}

/* DRIVER_OK after negotiate() and the queues; dies if refused. */
static inline void driver_ok(struct vdev *d)
{
	wr(d, REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	if (!(rd(d, REG_STATUS) & ST_DRIVER_OK))
		die("DRIVER_OK refused (status 0x%x)", rd(d, REG_STATUS));
}

/* ---- split virtqueues (2.7) ---- */

/* A queue's rings, somewhere in d->buf, and the driver's two counters. */
struct vq {
	unsigned index;                /* the queue's number */
	unsigned size;
	struct vring_desc *desc;       /* size entries */
	volatile uint16_t *avail;      /* flags, idx, ring[size] */
	volatile uint8_t *used;        /* flags, idx, then {id, len} x size */
	uint16_t avail_idx;            /* the next available index to publish */
	uint16_t used_seen;            /* used entries already taken */
};

/* The rings of queue index at desc/avail/used (in d->buf), zeroed. */
static inline void vq_init(struct vq *vq, unsigned index, unsigned size, uint8_t *desc,
			   uint8_t *avail, uint8_t *used)
{
	*vq = (struct vq){.index = index, .size = size, .desc = (struct vring_desc *)desc,
			  .avail = (volatile uint16_t *)avail, .used = used};
	memset(desc, 0, (size_t)size * sizeof(struct vring_desc));
	memset(avail, 0, 6 + 2 * (size_t)size);
	memset(used, 0, 6 + 8 * (size_t)size);
}

/* Selects queue index and places its rings at the given guest-physical
 * addresses (READY is left to the caller). */
static inline void vq_place(struct vdev *d, unsigned index, uint32_t num, uint64_t desc,
			    uint64_t avail, uint64_t used)
{
	wr(d, REG_QUEUE_SEL, index);
	wr(d, REG_QUEUE_NUM, num);
	wr64(d, REG_QUEUE_DESC_LOW, desc);
	wr64(d, REG_QUEUE_DRIVER_LOW, avail);
	wr64(d, REG_QUEUE_DEVICE_LOW, used);
}

/* The usual set-up of vq: its rings where they are, then READY. Dies if
 * the device's queue is smaller. */
static inline void vq_setup(struct vdev *d, struct vq *vq)
{
	wr(d, REG_QUEUE_SEL, vq->index);
	if (rd(d, REG_QUEUE_NUM_MAX) < vq->size)
		die("queue %u too small", vq->index);
	vq_place(d, vq->index, vq->size, gpa_of(d, vq->desc), gpa_of(d, (const void *)vq->avail),
		 gpa_of(d, (const void *)vq->used));
	wr(d, REG_QUEUE_READY, 1);
}

/* Puts head in the next slot of the available ring (not yet published). */
static inline void vq_push(struct vq *vq, uint16_t head)
{
	vq->avail[2 + vq->avail_idx % vq->size] = head;
	vq->avail_idx++;
}

/* Publishes the available index (vq->avail_idx) and notifies. */
static inline void vq_kick(struct vdev *d, struct vq *vq)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->avail[1] = vq->avail_idx;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(d, REG_QUEUE_NOTIFY, vq->index);
}

static inline uint16_t vq_used_idx(const struct vq *vq)
{
	return ((volatile uint16_t *)vq->used)[1];
}

/* Used entry i (mod size): [0] the id, [1] the length. */
static inline volatile uint32_t *vq_used_elem(const struct vq *vq, unsigned i)
{
	return (volatile uint32_t *)(vq->used + 4 + 8 * (i % vq->size));
}

/* Polls (the kernel's virtio-mmio driver still owns the interrupt but no
 * longer listens) until the used index is n or more past from, the device sets
 * NEEDS_RESET or seconds pass: "completed", "needs-reset" or
 * "no-completion". */
static inline const char *vq_wait(struct vdev *d, const struct vq *vq, uint16_t from, uint16_t n,
				  double seconds)
{
	double end = now() + seconds;
	const char *result = "no-completion";
	for (;;) {
		if ((uint16_t)(vq_used_idx(vq) - from) >= n) {
			result = "completed";
			break;
		}
		if (rd(d, REG_STATUS) & ST_NEEDS_RESET) {
			result = "needs-reset";
			break;
		}
		if (now() > end)
			break;
		pause_ms(1);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return result;
}

#endif
