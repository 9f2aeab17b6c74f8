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
#define EVIL_NAME "balloon-evil"
#include "evil-virtio.h"

#define BALLOON_ID 5
#define DRV "/sys/bus/virtio/drivers/virtio_balloon"

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

static uint64_t gpa[NR_PAGES];
static struct vdev dev = {.nr_pages = NR_PAGES, .gpa = gpa, .timeout = 5};
static struct vq vqs[2];
static uint64_t ram_end;
static uint16_t desc_next[2];

/* VERSION_1 only: two queues, inflate and deflate. */
static void bring_up(void)
{
	negotiate(&dev, 1ULL << F_VERSION_1);
	for (unsigned q = 0; q < 2; q++) {
		uint8_t *ring = dev.buf + RING(q);
		vq_init(&vqs[q], q, QSIZE, ring, ring + OFF_AVAIL, ring + OFF_USED);
		vqs[q].avail[0] = AVAIL_F_NO_INTERRUPT;
		vq_setup(&dev, &vqs[q]);
	}
	driver_ok(&dev);
}

/* n buffers of one descriptor each on queue q, then a notify; waits for
 * all of them. */
static void send(const char *name, unsigned q, const uint64_t *addr, const uint32_t *len,
		 const uint16_t *flags, unsigned n)
{
	struct vq *vq = &vqs[q];
	uint16_t before = vq_used_idx(vq);
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = desc_next[q]++ % QSIZE;
		vq->desc[d] =
			(struct vring_desc){.addr = addr[i], .len = len[i], .flags = flags[i]};
		vq_push(vq, d);
	}
	vq_kick(&dev, vq);
	const char *result = vq_wait(&dev, vq, before, (uint16_t)n, dev.timeout);
	volatile uint32_t *elem = vq_used_elem(vq, (uint16_t)(vq_used_idx(vq) - 1));
	bool victim_zero = true;
	for (unsigned i = 0; i < PAGE; i++)
		victim_zero &= dev.buf[OFF_VICTIM + i] == 0;
	printf("EMBER-EVIL %s result=%s len=%u victim=%s dev=0x%x\n", name, result, elem[1],
	       victim_zero ? "discarded" : "kept", rd(&dev, REG_STATUS));
	fflush(stdout);
}

/* One page list of n page numbers on queue q. */
static void pfns(const char *name, unsigned q, const uint32_t *pfn, unsigned n)
{
	memcpy(dev.buf + OFF_LIST, pfn, 4ULL * n);
	uint64_t a = gpa_of(&dev, dev.buf + OFF_LIST);
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
		dev.timeout = atof(optarg);
	}
	if (argc - optind != 1)
		return 2;
	uint64_t base = strtoull(argv[optind], NULL, 0);
	if (!base || base % PAGE)
		return 2;
	dev.base = base;
	take_device(&dev, DRV);
	map_registers(&dev, BALLOON_ID, "balloon");
	map_buffer(&dev);
	ram_end = find_ram_end();
	bring_up();
	memset(dev.buf + OFF_VICTIM, FILL, PAGE);
	uint32_t victim = (uint32_t)(gpa_of(&dev, dev.buf + OFF_VICTIM) / PAGE);
	printf("EMBER-EVIL-DEVICE %s base=0x%" PRIx64 " ram-end=0x%" PRIx64 " victim=0x%x\n",
	       dev.name, base, ram_end, victim);

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
	uint64_t a = gpa_of(&dev, dev.buf + OFF_LIST);
	uint32_t odd = 6, huge = 4 * 257, four = 4;
	uint16_t ro = 0, w = DESC_F_WRITE;
	send("len-odd", 0, &a, &odd, &ro, 1);
	send("len-huge", 0, &a, &huge, &ro, 1);
	send("writable", 0, &a, &four, &w, 1);
	uint64_t outside = ram_end + 0x10000;
	send("addr-outside", 0, &outside, &four, &ro, 1);
	/* A full ring of full lists of bad page numbers: bounded work. */
	uint32_t *list = (uint32_t *)(dev.buf + OFF_LIST);
	for (unsigned i = 0; i < 256; i++)
		list[i] = 0xfff00000u + i;
	uint64_t as[QSIZE];
	uint32_t ls[QSIZE];
	uint16_t fs[QSIZE];
	for (unsigned i = 0; i < QSIZE; i++)
		as[i] = a, ls[i] = 1024, fs[i] = 0;
	send("flood", 0, as, ls, fs, QSIZE);

	give_device_back(&dev, DRV);
	printf("EMBER-EVIL-DONE\n");
	return 0;
}
