/* balloon-evil: a hostile virtio-balloon driver, run as root inside an Ember
 * test guest. It takes the virtio-mmio balloon at BASE away from the
 * kernel's virtio_balloon driver (sysfs unbind), drives its registers
 * through /dev/mem with its rings and page lists in locked pages of its own
 * (guest-physical addresses from /proc/self/pagemap), and sends one hostile
 * buffer per scenario on the inflate or deflate queue. For each it prints
 *
 *   EMBER-EVIL <scenario> result=completed len=N [victim=kept|discarded] dev=0x..
 *   EMBER-EVIL <scenario> result=needs-reset|no-completion dev=0x..
 *
 * "victim" is one page of its own it inflates: discarded once the host gave
 * it back (it reads zeros), kept while it holds its fill pattern. At the end
 * the device is reset and given back to virtio_balloon (bind). Exits 0 if
 * every scenario could be run, whatever the device answered; 1 on a setup
 * failure; 2 on bad usage.
 *
 * Usage: balloon-evil [-t SECONDS] BASE
 * Built static by tools/guest/build-evil.sh. Linux, x86_64. */
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
#define MMIO_MAGIC 0x74726976

#define ST_ACKNOWLEDGE 1u
#define ST_DRIVER 2u
#define ST_DRIVER_OK 4u
#define ST_FEATURES_OK 8u
#define ST_NEEDS_RESET 0x40u
#define BALLOON_ID 5
#define DESC_F_WRITE 2
#define AVAIL_F_NO_INTERRUPT 1
#define DRV "/sys/bus/virtio/drivers/virtio_balloon"

#define PAGE 4096u
#define QSIZE 16u
#define NR_PAGES 8u
/* Pages 0 and 1: queue 0's and queue 1's rings (desc, avail at 0x400,
 * used at 0x800). Pages 2 and 3: page lists. Page 4: the victim. */
#define RING(q) ((q) * PAGE)
#define OFF_AVAIL 0x400u
#define OFF_USED 0x800u
#define OFF_LIST (2 * PAGE)
#define OFF_VICTIM (4 * PAGE)
#define FILL 0x5a

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static volatile uint32_t *regs;
static uint8_t *buf;
static uint64_t gpa[NR_PAGES];
static uint64_t base, ram_end;
static double timeout_s = 5;
static char vdev[256];
static uint16_t avail_idx[2], desc_next[2];

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("balloon-evil: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	printf("EMBER-EVIL-ERROR setup failed\n");
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

static void wr64(unsigned low, uint64_t v)
{
	wr(low, (uint32_t)v);
	wr(low + 4, (uint32_t)(v >> 32));
}

static uint64_t gpa_of(const void *p)
{
	size_t off = (size_t)((const uint8_t *)p - buf);
	return gpa[off / PAGE] + off % PAGE;
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

/* The virtio device bound to virtio_balloon: Ember's VM has one. */
static void take_device(void)
{
	DIR *d = opendir(DRV);
	if (!d)
		die(DRV ": %s", strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "virtio", 6))
			snprintf(vdev, sizeof(vdev), "%s", de->d_name);
	closedir(d);
	if (!vdev[0])
		die("virtio_balloon has no device");
	write_file(DRV "/unbind", vdev);
}

static void map_registers(void)
{
	int fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0)
		die("/dev/mem: %s", strerror(errno));
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
	if (p == MAP_FAILED)
		die("mmap of /dev/mem at 0x%" PRIx64 ": %s", base, strerror(errno));
	close(fd);
	regs = p;
	if (rd(REG_MAGIC) != MMIO_MAGIC || rd(REG_VERSION) != 2 || rd(REG_DEVICE_ID) != BALLOON_ID)
		die("0x%" PRIx64 " is not a virtio-mmio v2 balloon (id %u)", base, rd(REG_DEVICE_ID));
}

static void map_buffer(void)
{
	size_t len = NR_PAGES * PAGE;
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		   -1, 0);
	if (buf == MAP_FAILED || mlock(buf, len))
		die("mmap/mlock: %s", strerror(errno));
	memset(buf, 0, len);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	for (unsigned i = 0; i < NR_PAGES; i++) {
		uint64_t entry;
		off_t at = (off_t)(((uintptr_t)buf / PAGE + i) * sizeof(entry));
		if (pread(fd, &entry, sizeof(entry), at) != sizeof(entry) || !(entry >> 63))
			die("pagemap: page %u not present", i);
		gpa[i] = (entry & ((1ULL << 55) - 1)) * PAGE;
	}
	close(fd);
}

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
	return end;
}

static void reset_device(void)
{
	wr(REG_STATUS, 0);
	double end = now() + timeout_s;
	while (rd(REG_STATUS) != 0) {
		if (now() > end)
			die("the device does not reset");
		pause_ms(1);
	}
	wr(REG_INTERRUPT_ACK, rd(REG_INTERRUPT_STATUS));
}

/* VERSION_1 only: two queues, inflate and deflate. */
static void bring_up(void)
{
	reset_device();
	wr(REG_STATUS, ST_ACKNOWLEDGE);
	wr(REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);
	wr(REG_DRIVER_FEATURES_SEL, 0);
	wr(REG_DRIVER_FEATURES, 0);
	wr(REG_DRIVER_FEATURES_SEL, 1);
	wr(REG_DRIVER_FEATURES, 1);
	wr(REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
	if (!(rd(REG_STATUS) & ST_FEATURES_OK))
		die("FEATURES_OK refused");
	for (unsigned q = 0; q < 2; q++) {
		wr(REG_QUEUE_SEL, q);
		if (rd(REG_QUEUE_NUM_MAX) < QSIZE)
			die("queue %u too small", q);
		wr(REG_QUEUE_NUM, QSIZE);
		wr64(REG_QUEUE_DESC_LOW, gpa_of(buf + RING(q)));
		wr64(REG_QUEUE_DRIVER_LOW, gpa_of(buf + RING(q) + OFF_AVAIL));
		wr64(REG_QUEUE_DEVICE_LOW, gpa_of(buf + RING(q) + OFF_USED));
		wr(REG_QUEUE_READY, 1);
	}
	wr(REG_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	if (!(rd(REG_STATUS) & ST_DRIVER_OK))
		die("DRIVER_OK refused (status 0x%x)", rd(REG_STATUS));
}

static volatile uint16_t *used_idx(unsigned q)
{
	return (volatile uint16_t *)(buf + RING(q) + OFF_USED + 2);
}

/* n buffers of one descriptor each on queue q, then a notify; waits for
 * all of them. */
static void send(const char *name, unsigned q, const uint64_t *addr, const uint32_t *len,
		 const uint16_t *flags, unsigned n)
{
	struct vring_desc *t = (struct vring_desc *)(buf + RING(q));
	volatile uint16_t *avail = (volatile uint16_t *)(buf + RING(q) + OFF_AVAIL);
	uint16_t before = *used_idx(q);
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = desc_next[q]++ % QSIZE;
		t[d] = (struct vring_desc){.addr = addr[i], .len = len[i], .flags = flags[i]};
		avail[2 + avail_idx[q] % QSIZE] = d;
		avail_idx[q]++;
	}
	avail[0] = AVAIL_F_NO_INTERRUPT;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail[1] = avail_idx[q];
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(REG_QUEUE_NOTIFY, q);
	double end = now() + timeout_s;
	const char *result = "no-completion";
	for (;;) {
		if ((uint16_t)(*used_idx(q) - before) == n) {
			result = "completed";
			break;
		}
		if (rd(REG_STATUS) & ST_NEEDS_RESET) {
			result = "needs-reset";
			break;
		}
		if (now() > end)
			break;
		pause_ms(1);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	volatile uint32_t *elem = (volatile uint32_t *)(buf + RING(q) + OFF_USED + 4 +
							 8 * ((uint16_t)(*used_idx(q) - 1) % QSIZE));
	bool victim_zero = true;
	for (unsigned i = 0; i < PAGE; i++)
		victim_zero &= buf[OFF_VICTIM + i] == 0;
	printf("EMBER-EVIL %s result=%s len=%u victim=%s dev=0x%x\n", name, result, elem[1],
	       victim_zero ? "discarded" : "kept", rd(REG_STATUS));
	fflush(stdout);
}

/* One page list of n page numbers on queue q. */
static void pfns(const char *name, unsigned q, const uint32_t *pfn, unsigned n)
{
	memcpy(buf + OFF_LIST, pfn, 4ULL * n);
	uint64_t a = gpa_of(buf + OFF_LIST);
	uint32_t l = 4 * n;
	uint16_t f = 0;
	send(name, q, &a, &l, &f, 1);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int opt;
	while ((opt = getopt(argc, argv, "t:")) != -1) {
		if (opt != 't')
			return 2;
		timeout_s = atof(optarg);
	}
	if (argc - optind != 1)
		return 2;
	base = strtoull(argv[optind], NULL, 0);
	if (!base || base % PAGE)
		return 2;
	take_device();
	map_registers();
	map_buffer();
	ram_end = find_ram_end();
	bring_up();
	memset(buf + OFF_VICTIM, FILL, PAGE);
	uint32_t victim = (uint32_t)(gpa_of(buf + OFF_VICTIM) / PAGE);
	printf("EMBER-EVIL-DEVICE %s base=0x%" PRIx64 " ram-end=0x%" PRIx64 " victim=0x%x\n", vdev,
	       base, ram_end, victim);

	/* Page numbers: past RAM, the top of the 32-bit space, the MMIO gap
	 * (the device's own window). */
	uint32_t bad[] = {(uint32_t)(ram_end / PAGE) + 16, 0xffffffffu, (uint32_t)(base / PAGE),
			  (uint32_t)(0xfee00000u / PAGE)};
	pfns("pfn-outside", 0, bad, 4);
	pfns("deflate-never-inflated", 1, &victim, 1);
	/* The victim twice: given back once, counted once as a duplicate. */
	uint32_t twice[] = {victim, victim};
	pfns("pfn-duplicate", 0, twice, 2);
	pfns("inflate-again", 0, &victim, 1);
	pfns("deflate-victim", 1, &victim, 1);
	pfns("deflate-twice", 1, &victim, 1);
	/* Buffers of the wrong shape. */
	uint64_t a = gpa_of(buf + OFF_LIST);
	uint32_t odd = 6, huge = 4 * 257, four = 4;
	uint16_t ro = 0, w = DESC_F_WRITE;
	send("len-odd", 0, &a, &odd, &ro, 1);
	send("len-huge", 0, &a, &huge, &ro, 1);
	send("writable", 0, &a, &four, &w, 1);
	uint64_t outside = ram_end + 0x10000;
	send("addr-outside", 0, &outside, &four, &ro, 1);
	/* A full ring of full lists of bad page numbers: bounded work. */
	uint32_t *list = (uint32_t *)(buf + OFF_LIST);
	for (unsigned i = 0; i < 256; i++)
		list[i] = 0xfff00000u + i;
	uint64_t as[QSIZE];
	uint32_t ls[QSIZE];
	uint16_t fs[QSIZE];
	for (unsigned i = 0; i < QSIZE; i++)
		as[i] = a, ls[i] = 1024, fs[i] = 0;
	send("flood", 0, as, ls, fs, QSIZE);

	reset_device();
	wr(REG_STATUS, ST_ACKNOWLEDGE);
	write_file(DRV "/bind", vdev);
	printf("EMBER-EVIL-DONE\n");
	return 0;
}
