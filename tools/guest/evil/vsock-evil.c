/* vsock-evil: a hostile virtio-vsock driver, run as root inside an Ember
 * test guest (test_vsock.py). It takes the virtio-mmio vsock device away
 * from the kernel's vmw_vsock_virtio_transport (sysfs unbind), drives its
 * registers itself through /dev/mem, with its rings and buffers in a
 * locked buffer of its own (guest-physical addresses from
 * /proc/self/pagemap), sends one hostile packet (or chain) per scenario,
 * and prints what came back on the rx queue:
 *
 *   EMBER-VSOCK-EVIL <scenario> rx=<op>|none [needs-reset]
 *
 * (op: request response rst shutdown rw credit-update credit-request).
 * At the end it resets the device and gives it back to the kernel's
 * driver, so the guest can show that Ember still serves.
 *
 * Usage: vsock-evil BASE CID   (BASE: the device's MMIO window)
 * Host side: a program listening on <uds_path>_5001 that never reads.
 * Built static (gcc -static) by tools/guest/build-evil.sh. */
#define _GNU_SOURCE
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

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define ST_ACK 1u
#define ST_DRIVER 2u
#define ST_DRIVER_OK 4u
#define ST_FEATURES_OK 8u
#define ST_NEEDS_RESET 0x40u
#define VSOCK_ID 19
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2

#define PAGE 4096u
#define QSIZE 32u
#define RXBUFS 8u
/* Pages: 0 rx rings, 1 tx rings, 2 tx headers, 3..10 rx buffers (one page
 * each: header and payload), 11..26 tx payload (16 pages, 64 KiB). */
#define NR_PAGES 27u
#define PG_RX 0u
#define PG_TX 1u
#define PG_HDR 2u
#define PG_RXBUF 3u
#define PG_DATA 11u
#define OFF_AVAIL 0x200u
#define OFF_USED 0x400u
#define HDR_SIZE 44u
#define DRV "/sys/bus/virtio/drivers/vmw_vsock_virtio_transport"

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct __attribute__((packed)) hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

static volatile uint32_t *regs;
static uint8_t *buf;
static uint64_t gpa[NR_PAGES];
static uint64_t base, cid;
static char vdev[256];
static uint16_t rx_avail, rx_used_seen, tx_avail, tx_used_seen;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("vsock-evil: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	printf("EMBER-VSOCK-EVIL-ERROR setup failed\n");
	exit(1);
}

static uint32_t rd(unsigned off)
{
	return regs[off / 4];
}

static void wr(unsigned off, uint32_t v)
{
	regs[off / 4] = v;
}

static uint8_t *page(unsigned p)
{
	return buf + (size_t)p * PAGE;
}

static struct desc *descs(unsigned q)
{
	return (struct desc *)page(q ? PG_TX : PG_RX);
}

static volatile uint16_t *avail(unsigned q)
{
	return (volatile uint16_t *)(page(q ? PG_TX : PG_RX) + OFF_AVAIL);
}

static volatile uint16_t *used(unsigned q)
{
	return (volatile uint16_t *)(page(q ? PG_TX : PG_RX) + OFF_USED);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("write %s to %s: %s", text, path, strerror(errno));
	close(fd);
}

/* The vsock virtio device (the only one with device id 19). */
static void take_device(void)
{
	DIR *d = opendir("/sys/bus/virtio/devices");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char path[PATH_MAX], id[32] = "";
		snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s/device", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(id, sizeof(id), f) && strtoul(id, NULL, 0) == VSOCK_ID)
			snprintf(vdev, sizeof(vdev), "%s", de->d_name);
		fclose(f);
	}
	if (d)
		closedir(d);
	if (!vdev[0])
		die("no virtio device with id %d", VSOCK_ID);
	char bound[PATH_MAX];
	snprintf(bound, sizeof(bound), DRV "/%s", vdev);
	if (access(bound, F_OK) == 0)
		write_file(DRV "/unbind", vdev);
}

static void map_all(void)
{
	int fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0)
		die("/dev/mem: %s", strerror(errno));
	uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
	if (p == MAP_FAILED)
		die("mmap /dev/mem: %s", strerror(errno));
	close(fd);
	regs = (volatile uint32_t *)p;
	if (rd(REG_MAGIC) != 0x74726976 || rd(REG_DEVICE_ID) != VSOCK_ID)
		die("0x%" PRIx64 " is not a virtio-mmio vsock device", base);
	buf = mmap(NULL, NR_PAGES * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (buf == MAP_FAILED || mlock(buf, NR_PAGES * PAGE))
		die("buffer: %s", strerror(errno));
	memset(buf, 0, NR_PAGES * PAGE);
	fd = open("/proc/self/pagemap", O_RDONLY);
	for (unsigned i = 0; i < NR_PAGES; i++) {
		uint64_t e;
		if (pread(fd, &e, 8, (off_t)(((uintptr_t)buf / PAGE + i) * 8)) != 8 || !(e >> 63))
			die("pagemap");
		gpa[i] = (e & ((1ULL << 55) - 1)) * PAGE;
	}
	close(fd);
}

static uint64_t gpa_of(const void *p)
{
	size_t off = (size_t)((const uint8_t *)p - buf);
	return gpa[off / PAGE] + off % PAGE;
}

static void reset(void)
{
	wr(REG_STATUS, 0);
	for (double end = now() + 5; rd(REG_STATUS); pause_ms(1))
		if (now() > end)
			die("no reset");
	wr(REG_INTERRUPT_ACK, rd(REG_INTERRUPT_STATUS));
}

static void rx_post(unsigned slot)
{
	descs(0)[slot] = (struct desc){gpa_of(page(PG_RXBUF + slot)), PAGE, DESC_F_WRITE, 0};
	avail(0)[2 + rx_avail % QSIZE] = (uint16_t)slot;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail(0)[1] = ++rx_avail;
	wr(REG_QUEUE_NOTIFY, 0);
}

static void bring_up(void)
{
	reset();
	wr(REG_STATUS, ST_ACK);
	wr(REG_STATUS, ST_ACK | ST_DRIVER);
	wr(REG_DRIVER_FEATURES_SEL, 1);
	wr(REG_DRIVER_FEATURES, 1); /* VERSION_1 */
	wr(REG_DRIVER_FEATURES_SEL, 0);
	wr(REG_DRIVER_FEATURES, 0);
	wr(REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	memset(page(PG_RX), 0, 2 * PAGE);
	rx_avail = rx_used_seen = tx_avail = tx_used_seen = 0;
	for (unsigned q = 0; q < 2; q++) {
		uint64_t ring = gpa[q ? PG_TX : PG_RX];
		wr(REG_QUEUE_SEL, q);
		wr(REG_QUEUE_NUM, QSIZE);
		wr(REG_QUEUE_DESC_LOW, (uint32_t)ring);
		wr(REG_QUEUE_DESC_LOW + 4, (uint32_t)(ring >> 32));
		wr(REG_QUEUE_DRIVER_LOW, (uint32_t)(ring + OFF_AVAIL));
		wr(REG_QUEUE_DRIVER_LOW + 4, (uint32_t)((ring + OFF_AVAIL) >> 32));
		wr(REG_QUEUE_DEVICE_LOW, (uint32_t)(ring + OFF_USED));
		wr(REG_QUEUE_DEVICE_LOW + 4, (uint32_t)((ring + OFF_USED) >> 32));
		wr(REG_QUEUE_READY, 1);
	}
	wr(REG_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	for (unsigned i = 0; i < RXBUFS; i++)
		rx_post(i);
}

static struct hdr *tx_hdr(uint16_t op, uint32_t sport, uint32_t dport, uint32_t len)
{
	struct hdr *h = (struct hdr *)page(PG_HDR);
	*h = (struct hdr){.src_cid = cid, .dst_cid = 2, .src_port = sport, .dst_port = dport,
			  .len = len, .type = 1, .op = op, .buf_alloc = 65536};
	return h;
}

/* Publishes a chain of n descriptors already in the tx table (from 0),
 * notifies, and waits until the device returned it. */
static void tx_send(void)
{
	avail(1)[2 + tx_avail % QSIZE] = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail(1)[1] = ++tx_avail;
	wr(REG_QUEUE_NOTIFY, 1);
	for (double end = now() + 5; used(1)[1] != tx_avail && !(rd(REG_STATUS) & ST_NEEDS_RESET);
	     pause_ms(1))
		if (now() > end)
			break;
}

/* A header (at most hdr_len bytes of it) in one descriptor, then the
 * payload pages. */
static void tx_packet(uint32_t hdr_len, uint32_t payload)
{
	struct desc *t = descs(1);
	unsigned n = 0;
	t[n] = (struct desc){gpa_of(page(PG_HDR)), hdr_len, 0, 0};
	for (uint32_t off = 0; off < payload; off += PAGE, n++) {
		t[n].flags |= DESC_F_NEXT;
		t[n].next = (uint16_t)(n + 1);
		uint32_t len = payload - off < PAGE ? payload - off : PAGE;
		t[n + 1] = (struct desc){gpa_of(page(PG_DATA + off / PAGE)), len, 0, 0};
	}
	tx_send();
}

static const char *op_name(uint16_t op)
{
	static const char *const names[] = {"?", "request", "response", "rst", "shutdown", "rw",
					    "credit-update", "credit-request"};
	return op < 8 ? names[op] : "?";
}

/* The next rx packet within `seconds`, skipping credit updates; its op, or
 * 0. The buffer goes back to the device. */
static uint16_t rx_next(double seconds, struct hdr *out)
{
	for (double end = now() + seconds; now() < end; pause_ms(2)) {
		if (used(0)[1] == rx_used_seen)
			continue;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		volatile uint32_t *e = (volatile uint32_t *)(page(PG_RX) + OFF_USED + 4 +
							   8 * (rx_used_seen++ % QSIZE));
		unsigned slot = e[0] % RXBUFS;
		struct hdr h;
		memcpy(&h, page(PG_RXBUF + slot), sizeof(h));
		rx_post(slot);
		wr(REG_INTERRUPT_ACK, rd(REG_INTERRUPT_STATUS));
		if (h.op == 6)
			continue;
		if (out)
			*out = h;
		return h.op;
	}
	return 0;
}

static void report(const char *name, uint16_t op)
{
	printf("EMBER-VSOCK-EVIL %s rx=%s%s\n", name, op ? op_name(op) : "none",
	       rd(REG_STATUS) & ST_NEEDS_RESET ? " needs-reset" : "");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		die("usage: vsock-evil BASE CID");
	base = strtoull(argv[1], NULL, 0);
	cid = strtoull(argv[2], NULL, 0);
	take_device();
	map_all();
	bring_up();
	struct hdr *h;

	tx_hdr(1, 2000, 5000, 0);
	tx_packet(20, 0);
	report("short-header", rx_next(1, NULL));

	tx_hdr(5, 2000, 5000, 1 << 20);
	tx_packet(HDR_SIZE, 16);
	report("oversized-len", rx_next(1, NULL));

	tx_hdr(5, 2000, 5000, 100);
	tx_packet(HDR_SIZE, 10);
	report("len-past-buffer", rx_next(1, NULL));

	h = tx_hdr(1, 2000, 5000, 0);
	h->src_cid = 99;
	tx_packet(HDR_SIZE, 0);
	report("wrong-src-cid", rx_next(1, NULL));

	h = tx_hdr(1, 2000, 5000, 0);
	h->dst_cid = 7;
	tx_packet(HDR_SIZE, 0);
	report("wrong-dst-cid", rx_next(1, NULL));

	h = tx_hdr(1, 2000, 5000, 0);
	h->type = 9;
	tx_packet(HDR_SIZE, 0);
	report("bad-type", rx_next(3, NULL));

	tx_hdr(5, 2001, 5000, 4);
	tx_packet(HDR_SIZE, 4);
	report("unknown-connection", rx_next(3, NULL));

	tx_hdr(9, 2002, 5000, 0);
	tx_packet(HDR_SIZE, 0);
	report("unknown-op", rx_next(3, NULL));

	/* a device-writable buffer on the tx queue */
	tx_hdr(1, 2003, 5000, 0);
	descs(1)[0] = (struct desc){gpa_of(page(PG_HDR)), HDR_SIZE, DESC_F_WRITE, 0};
	tx_send();
	report("writable-tx", rx_next(1, NULL));

	/* a header split over three buffers: fine, the host's listener at
	 * _5001 answers */
	tx_hdr(1, 2004, 5001, 0);
	struct desc *t = descs(1);
	t[0] = (struct desc){gpa_of(page(PG_HDR)), 10, DESC_F_NEXT, 1};
	t[1] = (struct desc){gpa_of(page(PG_HDR) + 10), 20, DESC_F_NEXT, 2};
	t[2] = (struct desc){gpa_of(page(PG_HDR) + 30), HDR_SIZE - 30, 0, 0};
	tx_send();
	uint16_t op = rx_next(5, NULL);
	report("split-header-request", op);

	/* credit lie: 64 KiB packets past the 64 KiB Ember advertised, to a
	 * host program that never reads */
	op = 0;
	for (int i = 0; i < 64 && op != 3; i++) {
		tx_hdr(5, 2004, 5001, 65536);
		tx_packet(HDR_SIZE, 65536);
		op = rx_next(0.05, NULL);
	}
	if (op != 3)
		op = rx_next(3, NULL);
	report("credit-lie", op);

	/* an available index that jumps past the queue size: the ring is
	 * broken, the device needs a reset */
	avail(1)[1] = (uint16_t)(tx_avail + QSIZE + 5);
	wr(REG_QUEUE_NOTIFY, 1);
	for (double end = now() + 3; !(rd(REG_STATUS) & ST_NEEDS_RESET) && now() < end;)
		pause_ms(2);
	report("avail-jump", 0);

	/* back to the kernel's driver */
	reset();
	wr(REG_STATUS, ST_ACK);
	write_file(DRV "/bind", vdev);
	printf("EMBER-VSOCK-EVIL-DONE\n");
	return 0;
}
