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
#define EVIL_NAME "vsock-evil"
#define EVIL_SETUP_ERROR "EMBER-VSOCK-EVIL-ERROR setup failed"
#include "evil-virtio.h"

#define VSOCK_ID 19

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

struct __attribute__((packed)) hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

static uint64_t gpa[NR_PAGES];
static struct vdev dev = {.nr_pages = NR_PAGES, .gpa = gpa, .timeout = 5};
static struct vq rx, tx;
static uint64_t cid;

static uint8_t *page(unsigned p)
{
	return dev.buf + (size_t)p * PAGE;
}

static void rx_post(unsigned slot)
{
	rx.desc[slot] =
		(struct vring_desc){gpa_of(&dev, page(PG_RXBUF + slot)), PAGE, DESC_F_WRITE, 0};
	vq_push(&rx, (uint16_t)slot);
	vq_kick(&dev, &rx);
}

static void bring_up(void)
{
	negotiate(&dev, 1ULL << F_VERSION_1);
	vq_init(&rx, 0, QSIZE, page(PG_RX), page(PG_RX) + OFF_AVAIL, page(PG_RX) + OFF_USED);
	vq_init(&tx, 1, QSIZE, page(PG_TX), page(PG_TX) + OFF_AVAIL, page(PG_TX) + OFF_USED);
	vq_setup(&dev, &rx);
	vq_setup(&dev, &tx);
	driver_ok(&dev);
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
	uint16_t before = vq_used_idx(&tx);
	vq_push(&tx, 0);
	vq_kick(&dev, &tx);
	vq_wait(&dev, &tx, before, 1, dev.timeout);
}

/* A header (at most hdr_len bytes of it) in one descriptor, then the
 * payload pages. */
static void tx_packet(uint32_t hdr_len, uint32_t payload)
{
	struct vring_desc *t = tx.desc;
	unsigned n = 0;
	t[n] = (struct vring_desc){gpa_of(&dev, page(PG_HDR)), hdr_len, 0, 0};
	for (uint32_t off = 0; off < payload; off += PAGE, n++) {
		t[n].flags |= DESC_F_NEXT;
		t[n].next = (uint16_t)(n + 1);
		uint32_t len = payload - off < PAGE ? payload - off : PAGE;
		t[n + 1] = (struct vring_desc){gpa_of(&dev, page(PG_DATA + off / PAGE)), len, 0, 0};
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
		if (vq_used_idx(&rx) == rx.used_seen)
			continue;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		volatile uint32_t *e = vq_used_elem(&rx, rx.used_seen++);
		unsigned slot = e[0] % RXBUFS;
		struct hdr h;
		memcpy(&h, page(PG_RXBUF + slot), sizeof(h));
		rx_post(slot);
		wr(&dev, REG_INTERRUPT_ACK, rd(&dev, REG_INTERRUPT_STATUS));
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
	       rd(&dev, REG_STATUS) & ST_NEEDS_RESET ? " needs-reset" : "");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		die("usage: vsock-evil BASE CID");
	dev.base = strtoull(argv[1], NULL, 0);
	cid = strtoull(argv[2], NULL, 0);
	take_device(&dev, DRV);
	map_registers(&dev, VSOCK_ID, "vsock device");
	map_buffer(&dev);
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
	tx.desc[0] = (struct vring_desc){gpa_of(&dev, page(PG_HDR)), HDR_SIZE, DESC_F_WRITE, 0};
	tx_send();
	report("writable-tx", rx_next(1, NULL));

	/* a header split over three buffers: fine, the host's listener at
	 * _5001 answers */
	tx_hdr(1, 2004, 5001, 0);
	struct vring_desc *t = tx.desc;
	t[0] = (struct vring_desc){gpa_of(&dev, page(PG_HDR)), 10, DESC_F_NEXT, 1};
	t[1] = (struct vring_desc){gpa_of(&dev, page(PG_HDR) + 10), 20, DESC_F_NEXT, 2};
	t[2] = (struct vring_desc){gpa_of(&dev, page(PG_HDR) + 30), HDR_SIZE - 30, 0, 0};
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
	tx.avail[1] = (uint16_t)(tx.avail_idx + QSIZE + 5);
	wr(&dev, REG_QUEUE_NOTIFY, 1);
	for (double end = now() + 3; !(rd(&dev, REG_STATUS) & ST_NEEDS_RESET) && now() < end;)
		pause_ms(2);
	report("avail-jump", 0);

	/* back to the kernel's driver */
	give_device_back(&dev, DRV);
	printf("EMBER-VSOCK-EVIL-DONE\n");
	return 0;
}
