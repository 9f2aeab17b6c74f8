/* The virtio-net device, driven by a fake driver: the rings live in a host
 * buffer laid out as guest memory, the device is set up through its
 * virtio-mmio registers as Linux does, and a SOCK_DGRAM socketpair stands in
 * for the TAP (one datagram per frame, vnet header first). A last test uses
 * a real TAP in a throwaway network namespace when it can make one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio_net.h"
#include "fake_driver.h"
#include "fake_mmio.h"
#include "guest/guest_mem.h"

#define MEM_SIZE (4 << 20)
#define RX_RINGS 0x1000 /* desc, avail at +0x1000, used at +0x2000 */
#define TX_RINGS 0x4000
#define TX_DATA 0x100000 /* frames the guest sends */
#define RX_DATA 0x200000 /* receive buffers */
#define HDR VIRTIO_NET_HDR_SIZE

static uint8_t backing[MEM_SIZE] __attribute__((aligned(4096)));

static const uint8_t guest_mac[6] = {0x06, 0x00, 0xac, 0x10, 0x00, 0x02};

/* The test bench: the fake driver's state, the device and the host end of
 * the socketpair. */
struct tb {
	struct guest_mem gm;
	struct net_config cfg;
	struct virtio_net *n;
	struct virtio_mmio *m;
	struct net_metrics *nm;
	struct mmds_metrics mmds;
	struct fake_vq rx, tx;
	int host; /* the "TAP"'s other end */
	int irqs;
	int rx_pokes; /* queue_notify(rx) from the device */
	int tx_pokes; /* queue_notify(tx) from the device */
	uint64_t clock_ns;
	uint64_t rx_next; /* next free receive buffer address */
};

static void hook_irq(void *ctx)
{
	((struct tb *)ctx)->irqs++;
}

static void hook_notify(void *ctx, uint32_t queue)
{
	if (queue == VIRTIO_NET_RX_QUEUE)
		((struct tb *)ctx)->rx_pokes++;
	else
		((struct tb *)ctx)->tx_pokes++;
}

static uint64_t fake_clock(void *ctx)
{
	return ((struct tb *)ctx)->clock_ns;
}

/* Linux's probe: accept the offered features minus `drop`, two queues. */
static void bring_up(struct tb *t, uint16_t qsize, uint64_t drop)
{
	w32(t, VIRTIO_MMIO_STATUS, 0);
	mmio_negotiate(t->m, ~drop);
	fake_vq_init(&t->rx, &t->gm, RX_RINGS, qsize);
	fake_vq_init(&t->tx, &t->gm, TX_RINGS, qsize);
	fake_mmio_queue(t->m, 0, &t->rx);
	fake_mmio_queue(t->m, 1, &t->tx);
	fake_mmio_driver_ok(t->m);
	t->rx_next = RX_DATA;
}

#define NO_MRG (1ULL << VIRTIO_NET_F_MRG_RXBUF)

static struct tb *tb_new_cfg(bool mac, const struct rate_limiter_config *rx,
			     const struct rate_limiter_config *tx, uint16_t mtu, bool up,
			     uint64_t drop)
{
	struct tb *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	memset(backing, 0, sizeof(backing));
	gm_init_from(&t->gm, backing, MEM_SIZE, 1ULL << 31);
	t->cfg = (struct net_config){.iface_id = "eth0", .host_dev_name = "tap0",
				     .has_guest_mac = mac};
	memcpy(t->cfg.guest_mac, guest_mac, 6);
	if (rx)
		t->cfg.rx = *rx;
	if (tx)
		t->cfg.tx = *tx;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	t->host = sv[1];
	fcntl(t->host, F_SETFL, O_NONBLOCK);
	t->clock_ns = 1000000000;
	struct virtio_net_params p = {
		.cfg = &t->cfg, .fd_given = true, .fd = sv[0], .mtu = mtu, .gm = &t->gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t},
		.mmds_metrics = &t->mmds,
		.now_ns = fake_clock, .clock_ctx = t,
	};
	ember_err e = {{0}};
	if (virtio_net_create(&t->n, &p, &e))
		fail_msg("virtio_net_create: %s", e.msg);
	t->m = virtio_net_mmio(t->n);
	t->nm = virtio_net_metrics(t->n);
	if (up)
		bring_up(t, 16, drop);
	return t;
}

static struct tb *tb_new(uint64_t drop)
{
	return tb_new_cfg(true, NULL, NULL, 0, true, drop);
}

static void tb_free(struct tb *t)
{
	virtio_net_destroy(t->n);
	close(t->host);
	free(t);
}

/* A receive buffer of len bytes, in one descriptor. Returns its address. */
static uint64_t post_rx(struct tb *t, uint32_t len)
{
	uint64_t gpa = t->rx_next;
	t->rx_next += (len + 0xfff) & ~0xfffULL;
	memset(backing + gpa, 0xee, len);
	fake_vq_add(&t->rx, &(struct fake_buf){gpa, len, true}, 1);
	return gpa;
}

/* An Ethernet frame of len bytes: destination, the guest's MAC as source,
 * type 0x88b5 (local experimental), then a pattern from seed. */
static void make_frame(uint8_t *f, size_t len, uint8_t seed)
{
	static const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01};
	memcpy(f, dst, 6);
	memcpy(f + 6, guest_mac, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(seed + i * 7);
}

/* The guest sends a frame of len bytes (header included), with the header
 * split 8 + 4 and the rest in one buffer. Returns its head. */
static uint16_t guest_send(struct tb *t, uint64_t gpa, const struct virtio_net_hdr_v1 *h,
			   const uint8_t *frame, uint32_t len)
{
	assert_int_equal(gm_write(&t->gm, gpa, h, HDR), 0);
	assert_int_equal(gm_write(&t->gm, gpa + 0x100, frame, len), 0);
	struct fake_buf bufs[] = {{gpa, 8, false}, {gpa + 8, 4, false}, {gpa + 0x100, len, false}};
	return fake_vq_add(&t->tx, bufs, 3);
}

/* The host sends a frame with a vnet header. */
static void host_send(struct tb *t, const struct virtio_net_hdr_v1 *h, const uint8_t *frame,
		      size_t len)
{
	uint8_t buf[HDR + 2048];
	assert_true(len <= 2048);
	memcpy(buf, h, HDR);
	memcpy(buf + HDR, frame, len);
	assert_int_equal(send(t->host, buf, HDR + len, 0), (ssize_t)(HDR + len));
}

/* What the device wrote to the backend: one datagram, or -1. */
static ssize_t host_recv(struct tb *t, uint8_t *buf, size_t size)
{
	return recv(t->host, buf, size, MSG_DONTWAIT);
}

/* ---- Tests ---- */

static void identity_and_config(void **state)
{
	(void)state;
	struct tb *t = tb_new_cfg(true, NULL, NULL, 0, false, 0);
	assert_int_equal(r32(t, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
	uint64_t f = device_features(t);
	static const int want[] = {VIRTIO_NET_F_CSUM,	   VIRTIO_NET_F_GUEST_CSUM,
				   VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
				   VIRTIO_NET_F_GUEST_UFO,  VIRTIO_NET_F_HOST_TSO4,
				   VIRTIO_NET_F_HOST_TSO6,  VIRTIO_NET_F_HOST_UFO,
				   VIRTIO_NET_F_MRG_RXBUF,  VIRTIO_NET_F_MAC,
				   VIRTIO_F_VERSION_1,	   VIRTIO_F_EVENT_IDX};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_true(f & (1ULL << want[i]));
	assert_false(f & (1ULL << VIRTIO_NET_F_MTU));
	assert_false(f & (1ULL << VIRTIO_NET_F_STATUS));
	for (uint32_t q = 0; q < 2; q++) {
		w32(t, VIRTIO_MMIO_QUEUE_SEL, q);
		assert_int_equal(r32(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
	}
	w32(t, VIRTIO_MMIO_QUEUE_SEL, 2);
	assert_int_equal(r32(t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	/* The MAC, then status LINK_UP. */
	uint8_t cfg[8];
	for (int i = 0; i < 8; i++)
		virtio_mmio_read(t->m, VIRTIO_MMIO_CONFIG + (uint64_t)i, &cfg[i], 1);
	assert_memory_equal(cfg, guest_mac, 6);
	assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
	/* Read-only. */
	uint8_t zero = 0;
	virtio_mmio_write(t->m, VIRTIO_MMIO_CONFIG, &zero, 1);
	virtio_mmio_read(t->m, VIRTIO_MMIO_CONFIG, cfg, 1);
	assert_int_equal(cfg[0], guest_mac[0]);
	assert_int_equal(metric_count(&t->nm->cfg_fails), 1);
	tb_free(t);

	/* No MAC: no VIRTIO_NET_F_MAC. An MTU: VIRTIO_NET_F_MTU and the field. */
	t = tb_new_cfg(false, NULL, NULL, 9000, false, 0);
	f = device_features(t);
	assert_false(f & (1ULL << VIRTIO_NET_F_MAC));
	assert_true(f & (1ULL << VIRTIO_NET_F_MTU));
	uint8_t mtu[2];
	virtio_mmio_read(t->m, VIRTIO_MMIO_CONFIG + 10, mtu, 2);
	assert_int_equal(mtu[0] | mtu[1] << 8, 9000);
	json_t *j = virtio_net_config_json(t->n);
	assert_string_equal(json_string_value(json_object_get(j, "iface_id")), "eth0");
	assert_string_equal(json_string_value(json_object_get(j, "host_dev_name")), "tap0");
	assert_true(json_is_null(json_object_get(j, "guest_mac")));
	json_decref(j);
	tb_free(t);
}

static void tx_reaches_backend(void **state)
{
	(void)state;
	struct tb *t = tb_new(0);
	uint8_t frame[600];
	make_frame(frame, sizeof(frame), 3);
	struct virtio_net_hdr_v1 h = {.flags = 1, .gso_type = 0, .hdr_len = 54, .csum_start = 34,
				      .csum_offset = 16};
	uint16_t head = guest_send(t, TX_DATA, &h, frame, sizeof(frame));
	virtio_net_process_tx_queue(t->n);
	uint8_t got[2048];
	assert_int_equal(host_recv(t, got, sizeof(got)), HDR + sizeof(frame));
	assert_memory_equal(got, &h, HDR);
	assert_memory_equal(got + HDR, frame, sizeof(frame));
	assert_int_equal(fake_vq_used_idx(&t->tx), 1);
	uint32_t id, len;
	fake_vq_used_elem(&t->tx, 0, &id, &len);
	assert_int_equal(id, head);
	assert_int_equal(len, 0);
	assert_true(t->irqs > 0);
	assert_int_equal(metric_count(&t->nm->tx_count), 1);
	assert_int_equal(metric_count(&t->nm->tx_packets_count), 1);
	assert_int_equal(metric_count(&t->nm->tx_bytes_count), HDR + sizeof(frame));
	assert_int_equal(metric_count(&t->nm->tx_queue_event_count), 1);
	assert_int_equal(metric_count(&t->nm->tx_spoofed_mac_count), 0);

	/* Several frames in one run, one with another source MAC: counted as
	 * spoofed and sent all the same. */
	frame[6] ^= 0xff;
	guest_send(t, TX_DATA + 0x1000, &h, frame, 100);
	frame[6] ^= 0xff;
	guest_send(t, TX_DATA + 0x2000, &h, frame, 60);
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(host_recv(t, got, sizeof(got)), HDR + 100);
	assert_int_equal(host_recv(t, got, sizeof(got)), HDR + 60);
	assert_int_equal(host_recv(t, got, sizeof(got)), -1);
	assert_int_equal(metric_count(&t->nm->tx_spoofed_mac_count), 1);
	assert_int_equal(fake_vq_used_idx(&t->tx), 3);
	/* A notification with nothing new. */
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(metric_count(&t->nm->no_tx_avail_buffer), 1);
	tb_free(t);
}

/* A guest that keeps the tx queue full gets VIRTIO_NET_WORK_BUDGET frames
 * sent per call: then the device notifies its tx queue itself and returns,
 * so the VMM thread serves the others between its turns. */
static void tx_work_per_pass_is_bounded(void **state)
{
	(void)state;
	struct tb *t = tb_new_cfg(true, NULL, NULL, 0, false, 0);
	bring_up(t, 256, 0);
	enum { N = 80 };
	uint8_t frame[100];
	make_frame(frame, sizeof(frame), 5);
	struct virtio_net_hdr_v1 h = {0};
	for (unsigned i = 0; i < N; i++)
		guest_send(t, TX_DATA + 0x1000ULL * i, &h, frame, sizeof(frame));
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->tx), VIRTIO_NET_WORK_BUDGET);
	assert_int_equal(t->tx_pokes, 1);
	/* The device's next turn sends the rest and asks for no other. */
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->tx), N);
	assert_int_equal(t->tx_pokes, 1);
	uint8_t got[2048];
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(host_recv(t, got, sizeof(got)), HDR + sizeof(frame));
	assert_int_equal(host_recv(t, got, sizeof(got)), -1);
	tb_free(t);
}

/* Frames keep coming from the backend and the guest has buffers for all
 * of them: VIRTIO_NET_WORK_BUDGET per call, then the device notifies its
 * rx queue itself (the backend is edge-triggered and would not say again
 * that frames wait). */
static void rx_work_per_pass_is_bounded(void **state)
{
	(void)state;
	struct tb *t = tb_new_cfg(true, NULL, NULL, 0, false, NO_MRG);
	bring_up(t, 256, NO_MRG);
	enum { N = 80 };
	for (unsigned i = 0; i < N; i++)
		post_rx(t, 2048);
	uint8_t frame[64];
	make_frame(frame, sizeof(frame), 6);
	struct virtio_net_hdr_v1 h = {0};
	for (unsigned i = 0; i < N; i++)
		host_send(t, &h, frame, sizeof(frame));
	int pokes = t->rx_pokes;
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), VIRTIO_NET_WORK_BUDGET);
	assert_int_equal(t->rx_pokes, pokes + 1);
	virtio_net_process_rx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), N);
	assert_int_equal(metric_count(&t->nm->rx_count), N);
	tb_free(t);
}

/* The host sends a frame; returns what the guest got in the buffer at gpa
 * (header checked), with *used_len. */
static void check_rx(struct tb *t, uint64_t gpa, const uint8_t *frame, size_t len,
		     uint16_t num_buffers, const struct virtio_net_hdr_v1 *want_hdr)
{
	struct virtio_net_hdr_v1 h;
	assert_int_equal(gm_read(&t->gm, gpa, &h, HDR), 0);
	assert_int_equal(h.num_buffers, num_buffers);
	if (want_hdr) {
		assert_int_equal(h.flags, want_hdr->flags);
		assert_int_equal(h.gso_type, want_hdr->gso_type);
		assert_int_equal(h.gso_size, want_hdr->gso_size);
		assert_int_equal(h.csum_start, want_hdr->csum_start);
	}
	assert_memory_equal(backing + gpa + HDR, frame, len);
}

static void rx_reaches_guest(void **state)
{
	(void)state;
	struct tb *t = tb_new(NO_MRG);
	uint64_t b0 = post_rx(t, 2048), b1 = post_rx(t, 2048);
	virtio_net_process_rx_queue(t->n); /* the driver's kick: nothing to send */
	assert_int_equal(fake_vq_used_idx(&t->rx), 0);
	uint8_t frame[1000], frame2[64];
	make_frame(frame, sizeof(frame), 9);
	make_frame(frame2, sizeof(frame2), 10);
	/* A TAP leaves num_buffers alone: the device must set it. */
	struct virtio_net_hdr_v1 h = {.flags = 2, .gso_type = 0, .csum_start = 7,
				      .num_buffers = 0x5555};
	host_send(t, &h, frame, sizeof(frame));
	host_send(t, &h, frame2, sizeof(frame2));
	int irqs = t->irqs;
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 2);
	uint32_t id, len;
	fake_vq_used_elem(&t->rx, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, HDR + sizeof(frame));
	fake_vq_used_elem(&t->rx, 1, &id, &len);
	assert_int_equal(id, 1);
	assert_int_equal(len, HDR + sizeof(frame2));
	check_rx(t, b0, frame, sizeof(frame), 1, &h);
	check_rx(t, b1, frame2, sizeof(frame2), 1, &h);
	assert_int_equal(backing[b0 + HDR + sizeof(frame)], 0xee); /* nothing past it */
	assert_int_equal(t->irqs, irqs + 1);			    /* one per batch */
	assert_int_equal(metric_count(&t->nm->rx_count), 2);
	assert_int_equal(metric_count(&t->nm->rx_packets_count), 2);
	assert_int_equal(metric_count(&t->nm->rx_bytes_count), 2 * HDR + 1064);
	assert_int_equal(metric_count(&t->nm->rx_tap_event_count), 1);
	tb_free(t);
}

static void rx_mergeable_buffers(void **state)
{
	(void)state;
	struct tb *t = tb_new(0);
	uint64_t b[6];
	for (int i = 0; i < 6; i++)
		b[i] = post_rx(t, 256);
	uint8_t frame[1000];
	make_frame(frame, sizeof(frame), 21);
	struct virtio_net_hdr_v1 h = {0};
	host_send(t, &h, frame, sizeof(frame));
	virtio_net_process_backend(t->n);
	/* 1012 bytes: four buffers, published together. */
	assert_int_equal(fake_vq_used_idx(&t->rx), 4);
	uint32_t id, len;
	for (uint16_t i = 0; i < 4; i++) {
		fake_vq_used_elem(&t->rx, i, &id, &len);
		assert_int_equal(id, i);
		assert_int_equal(len, i < 3 ? 256 : 1012 - 3 * 256);
	}
	struct virtio_net_hdr_v1 got;
	gm_read(&t->gm, b[0], &got, HDR);
	assert_int_equal(got.num_buffers, 4);
	uint8_t joined[1000];
	memcpy(joined, backing + b[0] + HDR, 256 - HDR);
	for (int i = 1; i < 4; i++)
		memcpy(joined + 256 * i - HDR, backing + b[i],
		       i < 3 ? 256 : sizeof(frame) - (256 * 3 - HDR));
	assert_memory_equal(joined, frame, sizeof(frame));
	/* The next frame starts in a fresh buffer. */
	host_send(t, &h, frame, 100);
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 5);
	fake_vq_used_elem(&t->rx, 4, &id, &len);
	assert_int_equal(id, 4);
	assert_int_equal(len, HDR + 100);
	check_rx(t, b[4], frame, 100, 1, NULL);
	tb_free(t);
}

static void rx_deferred_until_buffers(void **state)
{
	(void)state;
	struct tb *t = tb_new(NO_MRG);
	uint8_t f1[200], f2[300];
	make_frame(f1, sizeof(f1), 1);
	make_frame(f2, sizeof(f2), 2);
	struct virtio_net_hdr_v1 h = {0};
	host_send(t, &h, f1, sizeof(f1));
	host_send(t, &h, f2, sizeof(f2));
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 0);
	assert_int_equal(metric_count(&t->nm->no_rx_avail_buffer), 1);
	/* Nothing was read: both frames still wait in the backend. */
	uint8_t peek[16];
	assert_true(recv(virtio_net_backend_fd(t->n), peek, sizeof(peek), MSG_PEEK) > 0);
	/* The driver adds one buffer and kicks the rx queue. */
	uint64_t b0 = post_rx(t, 1600);
	virtio_net_process_rx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 1);
	check_rx(t, b0, f1, sizeof(f1), 1, NULL);
	/* f2 still waits in the backend: the next buffer gets it. */
	uint64_t b1 = post_rx(t, 1600);
	virtio_net_process_rx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 2);
	check_rx(t, b1, f2, sizeof(f2), 1, NULL);
	assert_int_equal(metric_count(&t->nm->rx_count), 2);
	assert_int_equal(metric_count(&t->nm->rx_queue_event_count), 2);
	tb_free(t);
}

/* The MMDS stand-in: consumes frames sent to dst MAC 02:00:00:00:00:fe,
 * answers each with a frame of the request's length + 1. */
struct fake_mmds {
	struct tb *t;
	int seen, consumed;
	uint8_t last[64];
};

static bool mmds_tx(void *ctx, const uint8_t *frame, size_t len, uint8_t hdr_flags)
{
	(void)hdr_flags;
	struct fake_mmds *fm = ctx;
	fm->seen++;
	static const uint8_t mmds_mac[6] = {0x02, 0, 0, 0, 0, 0xfe};
	if (len < 14 || memcmp(frame, mmds_mac, 6))
		return false;
	fm->consumed++;
	memcpy(fm->last, frame, len < sizeof(fm->last) ? len : sizeof(fm->last));
	uint8_t reply[128];
	make_frame(reply, len + 1, 0x77);
	assert_int_equal(virtio_net_inject_rx(fm->t->n, reply, len + 1), 0);
	return true;
}

static void mmds_hook_and_injection(void **state)
{
	(void)state;
	struct tb *t = tb_new(NO_MRG);
	struct fake_mmds fm = {.t = t};
	virtio_net_set_tx_hook(t->n, &(struct virtio_net_tx_hook){.tx_frame = mmds_tx, .ctx = &fm});
	/* A frame from the host waits (no buffers yet). */
	uint8_t from_tap[100];
	make_frame(from_tap, sizeof(from_tap), 5);
	struct virtio_net_hdr_v1 h = {0};
	host_send(t, &h, from_tap, sizeof(from_tap));
	virtio_net_process_backend(t->n);
	/* The guest sends an MMDS request and an ordinary frame. */
	uint8_t req[60], other[70];
	make_frame(req, sizeof(req), 1);
	req[5] = 0xfe;
	make_frame(other, sizeof(other), 2);
	guest_send(t, TX_DATA, &h, req, sizeof(req));
	guest_send(t, TX_DATA + 0x1000, &h, other, sizeof(other));
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fm.seen, 2);
	assert_int_equal(fm.consumed, 1);
	assert_memory_equal(fm.last, req, sizeof(req));
	/* Only the ordinary frame reached the backend. */
	uint8_t got[256];
	assert_int_equal(host_recv(t, got, sizeof(got)), HDR + sizeof(other));
	assert_memory_equal(got + HDR, other, sizeof(other));
	assert_int_equal(host_recv(t, got, sizeof(got)), -1);
	assert_int_equal(fake_vq_used_idx(&t->tx), 2);
	assert_int_equal(metric_count(&t->nm->tx_count), 1);
	assert_int_equal(metric_count(&t->mmds.rx_accepted), 1);
	assert_int_equal(virtio_net_injected_pending(t->n), 1);
	/* Buffers arrive: the injected reply goes before the frame that was
	 * waiting in the TAP. */
	uint64_t b0 = post_rx(t, 1600), b1 = post_rx(t, 1600);
	virtio_net_process_rx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 2);
	uint8_t reply[61];
	make_frame(reply, sizeof(reply), 0x77);
	check_rx(t, b0, reply, sizeof(reply), 1, &(struct virtio_net_hdr_v1){0});
	check_rx(t, b1, from_tap, sizeof(from_tap), 1, NULL);
	assert_int_equal(metric_count(&t->mmds.tx_frames), 1);
	assert_int_equal(metric_count(&t->mmds.tx_bytes), sizeof(reply));
	assert_int_equal(virtio_net_injected_pending(t->n), 0);

	/* With buffers there, a request's answer arrives in the same run. */
	uint64_t b2 = post_rx(t, 1600);
	guest_send(t, TX_DATA, &h, req, sizeof(req));
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 3);
	check_rx(t, b2, reply, sizeof(reply), 1, NULL);

	/* The injection queue is bounded; the hook can be removed. */
	for (int i = 0; i < VIRTIO_NET_INJECT_MAX_FRAMES; i++)
		assert_int_equal(virtio_net_inject_rx(t->n, reply, sizeof(reply)), 0);
	assert_int_equal(virtio_net_inject_rx(t->n, reply, sizeof(reply)), -1);
	assert_int_equal(virtio_net_inject_rx(t->n, reply, 0), -1);
	virtio_net_set_tx_hook(t->n, NULL);
	guest_send(t, TX_DATA, &h, req, sizeof(req));
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(host_recv(t, got, sizeof(got)), HDR + sizeof(req));
	/* A reset drops what was queued. */
	w32(t, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(virtio_net_injected_pending(t->n), 0);
	assert_int_equal(virtio_net_inject_rx(t->n, reply, sizeof(reply)), -1);
	tb_free(t);
}

static void tx_rate_limited(void **state)
{
	(void)state;
	/* Two frames per second. */
	struct rate_limiter_config tx = {.has_ops = true, .ops = {.size = 2, .refill_time_ms = 1000}};
	struct tb *t = tb_new_cfg(true, NULL, &tx, 0, true, 0);
	uint8_t frame[100];
	struct virtio_net_hdr_v1 h = {0};
	for (int i = 0; i < 4; i++) {
		make_frame(frame, sizeof(frame), (uint8_t)i);
		guest_send(t, TX_DATA + 0x1000ULL * i, &h, frame, sizeof(frame));
	}
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->tx), 2);
	assert_int_equal(metric_count(&t->nm->tx_rate_limiter_throttled), 1);
	virtio_net_process_tx_queue(t->n); /* blocked: counted only */
	assert_int_equal(metric_count(&t->nm->tx_rate_limiter_throttled), 2);
	t->clock_ns += 100000000;
	virtio_net_tx_rate_limiter_event(t->n); /* early */
	assert_int_equal(fake_vq_used_idx(&t->tx), 2);
	t->clock_ns += 900000000;
	virtio_net_tx_rate_limiter_event(t->n);
	assert_int_equal(fake_vq_used_idx(&t->tx), 4);
	assert_int_equal(metric_count(&t->nm->tx_rate_limiter_event_count), 2);
	/* All four, in order, none lost. */
	uint8_t got[256];
	for (int i = 0; i < 4; i++) {
		assert_int_equal(host_recv(t, got, sizeof(got)), HDR + sizeof(frame));
		make_frame(frame, sizeof(frame), (uint8_t)i);
		assert_memory_equal(got + HDR, frame, sizeof(frame));
	}
	/* A second later two frames go; a PATCH lifting the limit lets the
	 * held third go at once. */
	t->clock_ns += 1000000000;
	for (int i = 0; i < 3; i++)
		guest_send(t, TX_DATA + 0x1000ULL * i, &h, frame, sizeof(frame));
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->tx), 6);
	struct net_patch p = {.iface_id = "eth0", .tx = {.has_ops = true}};
	ember_err e;
	assert_int_equal(virtio_net_patch(t->n, &p, &e), 0);
	assert_int_equal(fake_vq_used_idx(&t->tx), 7);
	json_t *j = virtio_net_config_json(t->n);
	assert_true(json_is_null(json_object_get(j, "tx_rate_limiter")));
	json_decref(j);
	tb_free(t);
}

static void rx_rate_limited(void **state)
{
	(void)state;
	/* 1000 bytes per second, no one-time burst. */
	struct rate_limiter_config rx = {.has_bandwidth = true,
					 .bandwidth = {.size = 1000, .refill_time_ms = 1000}};
	struct tb *t = tb_new_cfg(true, &rx, NULL, 0, true, NO_MRG);
	uint64_t b[3];
	for (int i = 0; i < 3; i++)
		b[i] = post_rx(t, 1600);
	uint8_t frame[488]; /* 500 bytes with the header */
	struct virtio_net_hdr_v1 h = {0};
	for (int i = 0; i < 3; i++) {
		make_frame(frame, sizeof(frame), (uint8_t)(40 + i));
		host_send(t, &h, frame, sizeof(frame));
	}
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 2);
	assert_int_equal(metric_count(&t->nm->rx_rate_limiter_throttled), 1);
	virtio_net_process_backend(t->n); /* blocked: counted only */
	assert_int_equal(metric_count(&t->nm->rx_rate_limiter_throttled), 2);
	t->clock_ns += 500000000;
	virtio_net_rx_rate_limiter_event(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 3);
	assert_int_equal(metric_count(&t->nm->rx_event_rate_limiter_count), 1);
	for (int i = 0; i < 3; i++) {
		make_frame(frame, sizeof(frame), (uint8_t)(40 + i));
		check_rx(t, b[i], frame, sizeof(frame), 1, NULL);
	}
	/* Half a second later one more frame fits; a PATCH lifting the limit
	 * lets the held one go at once. */
	t->clock_ns += 500000000;
	host_send(t, &h, frame, sizeof(frame));
	host_send(t, &h, frame, sizeof(frame));
	post_rx(t, 1600);
	post_rx(t, 1600);
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 4);
	ember_err e;
	struct rate_limiter_config off = {.has_bandwidth = true};
	assert_int_equal(virtio_net_update_rate_limiters(t->n, &off, NULL, &e), 0);
	assert_int_equal(fake_vq_used_idx(&t->rx), 5);
	tb_free(t);
}

/* A snapshot of a device holding a receive buffer and a frame the rate
 * limiter held back: the buffer goes back on the available ring, the frame
 * into the state, and the device rebuilt from the state (on the memory as
 * saved) delivers it into that buffer. A tx frame held back likewise goes
 * back and is sent by the restored device. */
static void save_gives_back_buffers_and_frames(void **state)
{
	(void)state;
	struct rate_limiter_config lim = {.has_bandwidth = true,
					  .bandwidth = {.size = 1000, .refill_time_ms = 1000}};
	struct tb *t = tb_new_cfg(true, &lim, &lim, 0, true, NO_MRG);
	post_rx(t, 1600);
	post_rx(t, 1600);
	uint8_t frame[488], tx_frame[588]; /* 500 and 600 bytes with the header */
	struct virtio_net_hdr_v1 h = {0};
	make_frame(frame, sizeof(frame), 60);
	host_send(t, &h, frame, sizeof(frame));
	make_frame(frame, sizeof(frame), 61);
	host_send(t, &h, frame, sizeof(frame));
	make_frame(frame, sizeof(frame), 62);
	host_send(t, &h, frame, sizeof(frame));
	virtio_net_process_backend(t->n);
	/* Two frames in, the third held back with nothing left for it. */
	assert_int_equal(fake_vq_used_idx(&t->rx), 2);
	uint64_t b2 = post_rx(t, 1600);
	virtio_net_process_rx_queue(t->n); /* the limiter still says no: b2 is held */
	assert_int_equal(fake_vq_used_idx(&t->rx), 2);
	make_frame(tx_frame, sizeof(tx_frame), 70);
	guest_send(t, 0x300000, &h, tx_frame, sizeof(tx_frame));
	make_frame(tx_frame, sizeof(tx_frame), 71);
	guest_send(t, 0x301000, &h, tx_frame, sizeof(tx_frame));
	virtio_net_process_tx_queue(t->n);
	uint8_t got[2048];
	assert_int_equal(host_recv(t, got, sizeof(got)), HDR + sizeof(tx_frame));
	assert_int_equal(host_recv(t, got, sizeof(got)), -1); /* the second is held */

	uint16_t rx_avail = virtio_mmio_queue(t->m, VIRTIO_NET_RX_QUEUE)->last_avail;
	uint16_t tx_avail = virtio_mmio_queue(t->m, VIRTIO_NET_TX_QUEUE)->last_avail;
	json_t *own = virtio_net_save(t->n);
	assert_non_null(own);
	json_t *transport = virtio_mmio_save(t->m);
	assert_non_null(transport);
	assert_int_equal(virtio_mmio_queue(t->m, VIRTIO_NET_RX_QUEUE)->last_avail, rx_avail - 1);
	assert_int_equal(virtio_mmio_queue(t->m, VIRTIO_NET_TX_QUEUE)->last_avail, tx_avail - 1);
	assert_true(json_is_string(json_object_get(own, "rx_frame")));
	static uint8_t saved[MEM_SIZE];
	memcpy(saved, backing, MEM_SIZE);
	struct fake_vq rx = t->rx, tx = t->tx;
	tb_free(t);

	/* The restore: a fresh device, the memory as saved, no limits. */
	t = tb_new_cfg(true, NULL, NULL, 0, false, NO_MRG);
	memcpy(backing, saved, MEM_SIZE);
	t->rx = rx;
	t->tx = tx;
	t->rx.gm = t->tx.gm = &t->gm; /* the old bench's is gone */
	ember_err e = {{0}};
	if (virtio_mmio_restore(t->m, transport, &e) || virtio_net_restore(t->n, own, &e))
		fail_msg("restore: %s", e.msg);
	assert_int_equal(fake_vq_used_idx(&t->rx), 3);
	uint32_t id, len;
	fake_vq_used_elem(&t->rx, 2, &id, &len);
	assert_int_equal(len, HDR + sizeof(frame));
	check_rx(t, b2, frame, sizeof(frame), 1, NULL);
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(host_recv(t, got, sizeof(got)), HDR + sizeof(tx_frame));
	assert_memory_equal(got + HDR, tx_frame, sizeof(tx_frame));

	/* A state whose frame is shorter than its header, or on a device
	 * the driver never activated, is refused. */
	json_t *bad = json_pack("{s:s, s:[]}", "rx_frame", "00", "injected");
	assert_int_equal(virtio_net_restore(t->n, bad, &e), -1);
	assert_non_null(strstr(e.msg, "shorter than its header"));
	json_decref(bad);
	json_decref(own);
	json_decref(transport);
	tb_free(t);
	t = tb_new_cfg(true, NULL, NULL, 0, false, NO_MRG);
	bad = json_pack("{s:s, s:[]}", "rx_frame", "000000000000000000000000", "injected");
	assert_int_equal(virtio_net_restore(t->n, bad, &e), -1);
	assert_non_null(strstr(e.msg, "never activated"));
	json_decref(bad);
	tb_free(t);
}

static void tx_hostile(void **state)
{
	(void)state;
	struct tb *t = tb_new(0);
	uint8_t frame[64];
	make_frame(frame, sizeof(frame), 1);
	gm_write(&t->gm, TX_DATA, frame, sizeof(frame));
	uint32_t id, len;
	/* A device-writable buffer in a TX chain. */
	fake_vq_add(&t->tx, (struct fake_buf[]){{TX_DATA, 64, false}, {TX_DATA + 64, 64, true}}, 2);
	/* Shorter than the vnet header. */
	fake_vq_add(&t->tx, &(struct fake_buf){TX_DATA, 8, false}, 1);
	/* Bigger than 65562 bytes. */
	fake_vq_add(&t->tx, &(struct fake_buf){TX_DATA, VIRTIO_NET_MAX_BUFFER + 1, false}, 1);
	/* Exactly 65562 bytes is fine. */
	uint16_t ok =
		fake_vq_add(&t->tx, &(struct fake_buf){TX_DATA, VIRTIO_NET_MAX_BUFFER, false}, 1);
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->tx), 4);
	for (uint16_t i = 0; i < 4; i++) {
		fake_vq_used_elem(&t->tx, i, &id, &len);
		assert_int_equal(len, 0);
	}
	fake_vq_used_elem(&t->tx, 3, &id, &len);
	assert_int_equal(id, ok);
	assert_int_equal(metric_count(&t->nm->tx_fails), 1);
	assert_int_equal(metric_count(&t->nm->tx_malformed_frames), 2);
	static uint8_t big[VIRTIO_NET_MAX_BUFFER + 1];
	assert_int_equal(host_recv(t, big, sizeof(big)), VIRTIO_NET_MAX_BUFFER);
	assert_int_equal(host_recv(t, big, sizeof(big)), -1);

	/* A descriptor loop and a buffer outside guest memory: refused. */
	t->tx.next_desc = 0;
	fake_desc(&t->gm, t->tx.desc, 10, TX_DATA, 16, VIRTQ_DESC_F_NEXT, 11);
	fake_desc(&t->gm, t->tx.desc, 11, TX_DATA, 16, VIRTQ_DESC_F_NEXT, 10);
	fake_desc(&t->gm, t->tx.desc, 12, MEM_SIZE - 8, 64, 0, 0);
	fake_vq_push(&t->tx, 10);
	fake_vq_push(&t->tx, 12);
	fake_vq_publish(&t->tx);
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->tx), 6);
	assert_int_equal(metric_count(&t->nm->tx_fails), 3);
	assert_int_equal(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);

	/* avail->idx jumping ahead breaks the ring: DEVICE_NEEDS_RESET. */
	fake_put16(&t->gm, t->tx.avail + 2, (uint16_t)(t->tx.avail_idx + 100));
	virtio_net_process_tx_queue(t->n);
	assert_true(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(r32(t, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	/* A reset brings it back. */
	bring_up(t, 16, 0);
	struct virtio_net_hdr_v1 h = {0};
	guest_send(t, TX_DATA, &h, frame, sizeof(frame));
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(host_recv(t, big, sizeof(big)), HDR + sizeof(frame));
	tb_free(t);
}

static void rx_hostile(void **state)
{
	(void)state;
	struct tb *t = tb_new(NO_MRG);
	uint32_t id, len;
	/* A read-only receive buffer, one smaller than the header, then a
	 * good one of 200 bytes. */
	uint16_t ro = fake_vq_add(&t->rx, &(struct fake_buf){RX_DATA, 2048, false}, 1);
	uint16_t tiny = fake_vq_add(&t->rx, &(struct fake_buf){RX_DATA + 0x1000, 8, true}, 1);
	uint64_t good = RX_DATA + 0x2000;
	memset(backing + good, 0xee, 200);
	uint16_t gh = fake_vq_add(&t->rx, &(struct fake_buf){good, 200, true}, 1);
	/* A frame bigger than the buffer: dropped, the buffer kept for the
	 * next frame; and a runt from the backend. */
	uint8_t big[1000], small[100];
	make_frame(big, sizeof(big), 1);
	make_frame(small, sizeof(small), 2);
	struct virtio_net_hdr_v1 h = {0};
	host_send(t, &h, big, sizeof(big));
	assert_int_equal(send(t->host, "runt", 4, 0), 4);
	host_send(t, &h, small, sizeof(small));
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 3);
	fake_vq_used_elem(&t->rx, 0, &id, &len);
	assert_int_equal(id, ro);
	assert_int_equal(len, 0);
	fake_vq_used_elem(&t->rx, 1, &id, &len);
	assert_int_equal(id, tiny);
	assert_int_equal(len, 0);
	fake_vq_used_elem(&t->rx, 2, &id, &len);
	assert_int_equal(id, gh);
	assert_int_equal(len, HDR + sizeof(small));
	check_rx(t, good, small, sizeof(small), 1, NULL);
	assert_int_equal(metric_count(&t->nm->rx_fails), 3);
	assert_int_equal(metric_count(&t->nm->tap_read_fails), 1);
	assert_int_equal(metric_count(&t->nm->rx_count), 1);

	/* Mergeable buffers too small together for a frame, with every
	 * descriptor of the queue given: the frame is dropped, not waited
	 * for forever. */
	bring_up(t, 4, 0);
	for (int i = 0; i < 4; i++)
		post_rx(t, 64);
	host_send(t, &h, big, sizeof(big));
	host_send(t, &h, small, 40);
	virtio_net_process_backend(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 1);
	fake_vq_used_elem(&t->rx, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, HDR + 40);
	assert_int_equal(metric_count(&t->nm->rx_fails), 4);

	/* A broken rx ring: DEVICE_NEEDS_RESET. */
	bring_up(t, 16, 0);
	fake_put16(&t->gm, t->rx.avail + 2, (uint16_t)(t->rx.avail_idx + 50));
	host_send(t, &h, small, 40);
	virtio_net_process_backend(t->n);
	assert_true(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	tb_free(t);
}

static void activation_and_reset(void **state)
{
	(void)state;
	/* DRIVER_OK with the tx queue not ready. */
	struct tb *t = tb_new_cfg(true, NULL, NULL, 0, false, 0);
	mmio_negotiate(t->m, 1ULL << VIRTIO_F_VERSION_1);
	fake_vq_init(&t->rx, &t->gm, RX_RINGS, 16);
	fake_mmio_queue(t->m, 0, &t->rx);
	add_status(t, VIRTIO_STATUS_DRIVER_OK);
	assert_true(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(metric_count(&t->nm->activate_fails), 1);
	assert_int_equal(t->rx_pokes, 0);
	/* Not active: events do nothing. */
	struct virtio_net_hdr_v1 h = {0};
	uint8_t frame[60];
	make_frame(frame, sizeof(frame), 0);
	host_send(t, &h, frame, sizeof(frame));
	virtio_net_process_backend(t->n);
	virtio_net_process_tx_queue(t->n);
	/* A good activation wakes the rx queue, because the backend's edge
	 * went to an inactive device; the wake-up delivers the frame. */
	bring_up(t, 16, 0);
	assert_int_equal(t->rx_pokes, 1);
	uint64_t b0 = post_rx(t, 1600);
	virtio_net_process_rx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 1);
	check_rx(t, b0, frame, sizeof(frame), 1, NULL);
	/* A reset with a frame held and a chain taken: both forgotten. The
	 * 72-byte frame waits for more mergeable buffers than the 64 bytes
	 * given. */
	bring_up(t, 16, 0);
	post_rx(t, 64);
	uint8_t big[200];
	make_frame(big, sizeof(big), 0);
	host_send(t, &h, frame, sizeof(frame));
	host_send(t, &h, big, sizeof(big));
	uint64_t no_buf = metric_count(&t->nm->no_rx_avail_buffer);
	virtio_net_process_rx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 0);
	assert_int_equal(metric_count(&t->nm->no_rx_avail_buffer), no_buf + 1);
	w32(t, VIRTIO_MMIO_STATUS, 0);
	bring_up(t, 16, NO_MRG);
	uint64_t b = post_rx(t, 1600);
	virtio_net_process_rx_queue(t->n);
	assert_int_equal(fake_vq_used_idx(&t->rx), 1);
	check_rx(t, b, big, sizeof(big), 1, NULL);
	tb_free(t);
}

static void offload_flags(void **state)
{
	(void)state;
	uint64_t csum = 1ULL << VIRTIO_NET_F_GUEST_CSUM;
	uint64_t all = csum | (1ULL << VIRTIO_NET_F_GUEST_TSO4) |
		       (1ULL << VIRTIO_NET_F_GUEST_TSO6) | (1ULL << VIRTIO_NET_F_GUEST_UFO);
	assert_int_equal(virtio_net_tap_offload_flags(0), 0);
	assert_int_equal(virtio_net_tap_offload_flags(all),
			 TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO);
	assert_int_equal(virtio_net_tap_offload_flags(csum), TUN_F_CSUM);
	assert_int_equal(virtio_net_tap_offload_flags(csum | (1ULL << VIRTIO_NET_F_GUEST_TSO4)),
			 TUN_F_CSUM | TUN_F_TSO4);
	assert_int_equal(virtio_net_tap_offload_flags(csum | (1ULL << VIRTIO_NET_F_GUEST_UFO)),
			 TUN_F_CSUM | TUN_F_UFO);
	/* The host-side features offload nothing on the TAP. */
	assert_int_equal(virtio_net_tap_offload_flags((1ULL << VIRTIO_NET_F_CSUM) |
						      (1ULL << VIRTIO_NET_F_HOST_TSO4) |
						      (1ULL << VIRTIO_NET_F_MRG_RXBUF)),
			 0);
	/* TSO without GUEST_CSUM (against the spec): nothing. */
	assert_int_equal(virtio_net_tap_offload_flags(all & ~csum), 0);
}

static void create_errors(void **state)
{
	(void)state;
	struct guest_mem gm;
	gm_init_from(&gm, backing, MEM_SIZE, 1ULL << 31);
	struct net_config cfg = {.iface_id = "eth9", .host_dev_name = "a-name-too-long-x"};
	struct virtio_net_params p = {.cfg = &cfg, .gm = &gm};
	struct virtio_net *n = NULL;
	ember_err e;
	assert_int_equal(virtio_net_create(&n, &p, &e), -1);
	assert_non_null(strstr(e.msg, "network interface eth9: Could not create the network "
				      "device: Open tap device failed: Invalid interface name "
				      "(a-name-too-long-x"));
	p.mtu = 67;
	assert_int_equal(virtio_net_create(&n, &p, &e), -1);
	assert_non_null(strstr(e.msg, "mtu 67"));
	/* A bad fd stays the caller's. */
	p.mtu = 0;
	p.fd_given = true;
	p.fd = 1000000;
	assert_int_equal(virtio_net_create(&n, &p, &e), -1);
	assert_non_null(strstr(e.msg, "backend fd"));
}

/* ---- A real TAP, in a network namespace of its own ---- */

static int set_up(const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	int rc = s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ? -1 : 0;
	ifr.ifr_flags |= IFF_UP;
	if (!rc)
		rc = ioctl(s, SIOCSIFFLAGS, &ifr);
	if (s >= 0)
		close(s);
	return rc;
}

/* A packet socket on the interface: what it sends the TAP reads, and what
 * is written to the TAP it receives. */
static int packet_socket(const char *name)
{
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (s < 0)
		return -1;
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				  .sll_ifindex = (int)if_nametoindex(name)};
	if (bind(s, (struct sockaddr *)&sll, sizeof(sll))) {
		close(s);
		return -1;
	}
	return s;
}

static void real_tap(void **state)
{
	(void)state;
	int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0 || unshare(CLONE_NEWNET)) {
		if (home >= 0)
			close(home);
		skip();
	}
	/* A persistent TAP, as `ip tuntap add tap-test mode tap` makes. */
	int mk = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "tap-test");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (mk < 0 || ioctl(mk, TUNSETIFF, &ifr) || ioctl(mk, TUNSETPERSIST, 1)) {
		if (mk >= 0)
			close(mk);
		assert_int_equal(setns(home, CLONE_NEWNET), 0);
		close(home);
		skip();
	}
	close(mk);
	int v6 = open("/proc/sys/net/ipv6/conf/tap-test/disable_ipv6", O_WRONLY | O_CLOEXEC);
	if (v6 >= 0) {
		ssize_t w = write(v6, "1", 1);
		(void)w;
		close(v6);
	}

	memset(backing, 0, sizeof(backing));
	struct tb *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	gm_init_from(&t->gm, backing, MEM_SIZE, 1ULL << 31);
	t->cfg = (struct net_config){.iface_id = "eth0", .host_dev_name = "tap-test"};
	t->host = -1;
	struct virtio_net_params p = {.cfg = &t->cfg, .gm = &t->gm,
				      .hooks = {.raise_irq = hook_irq, .ctx = t}};
	ember_err e;
	if (virtio_net_create(&t->n, &p, &e))
		fail_msg("%s", e.msg);
	t->m = virtio_net_mmio(t->n);
	t->nm = virtio_net_metrics(t->n);
	bring_up(t, 16, 0); /* TUNSETOFFLOAD with every GUEST_* offload */
	assert_int_equal(metric_count(&t->nm->activate_fails), 0);
	assert_int_equal(set_up("tap-test"), 0);
	int ps = packet_socket("tap-test");
	assert_true(ps >= 0);

	/* Guest to host. */
	uint8_t frame[300], got[2048];
	make_frame(frame, sizeof(frame), 0x31);
	struct virtio_net_hdr_v1 h = {0};
	guest_send(t, TX_DATA, &h, frame, sizeof(frame));
	virtio_net_process_tx_queue(t->n);
	assert_int_equal(metric_count(&t->nm->tx_count), 1);
	bool found = false;
	for (int tries = 0; tries < 20 && !found; tries++) {
		struct pollfd pfd = {.fd = ps, .events = POLLIN};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t r = recv(ps, got, sizeof(got), 0);
		found = r == (ssize_t)sizeof(frame) && !memcmp(got, frame, sizeof(frame));
	}
	assert_true(found);

	/* Host to guest: the TAP's frames come with their vnet header. */
	for (int i = 0; i < 8; i++)
		post_rx(t, 2048);
	make_frame(frame, sizeof(frame), 0x52);
	assert_int_equal(send(ps, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	found = false;
	for (int tries = 0; tries < 20 && !found; tries++) {
		struct pollfd pfd = {.fd = virtio_net_backend_fd(t->n), .events = POLLIN};
		poll(&pfd, 1, 100);
		virtio_net_process_backend(t->n);
		for (uint16_t i = 0; i < fake_vq_used_idx(&t->rx) && !found; i++) {
			uint32_t id, len;
			fake_vq_used_elem(&t->rx, i, &id, &len);
			uint64_t gpa = RX_DATA + 0x1000ULL * id;
			found = len == HDR + sizeof(frame) &&
				!memcmp(backing + gpa + HDR, frame, sizeof(frame));
			if (found)
				check_rx(t, gpa, frame, sizeof(frame), 1, NULL);
		}
	}
	assert_true(found);
	close(ps);
	virtio_net_destroy(t->n);
	free(t);

	/* Errors name the device. */
	t = NULL;
	struct net_config bad = {.iface_id = "eth1", .host_dev_name = "bad/name"};
	struct virtio_net *n;
	p.cfg = &bad;
	assert_int_equal(virtio_net_create(&n, &p, &e), -1);
	assert_non_null(strstr(e.msg, "Could not create the network device: Open tap device "
				      "failed: Error while creating ifreq structure: "));
	assert_non_null(strstr(e.msg, "Invalid TUN/TAP Backend provided by bad/name. Check our "
				      "documentation on setting up the network devices."));

	assert_int_equal(setns(home, CLONE_NEWNET), 0);
	close(home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(identity_and_config),
		cmocka_unit_test(tx_reaches_backend),
		cmocka_unit_test(tx_work_per_pass_is_bounded),
		cmocka_unit_test(rx_work_per_pass_is_bounded),
		cmocka_unit_test(rx_reaches_guest),
		cmocka_unit_test(rx_mergeable_buffers),
		cmocka_unit_test(rx_deferred_until_buffers),
		cmocka_unit_test(mmds_hook_and_injection),
		cmocka_unit_test(tx_rate_limited),
		cmocka_unit_test(rx_rate_limited),
		cmocka_unit_test(save_gives_back_buffers_and_frames),
		cmocka_unit_test(tx_hostile),
		cmocka_unit_test(rx_hostile),
		cmocka_unit_test(activation_and_reset),
		cmocka_unit_test(offload_flags),
		cmocka_unit_test(create_errors),
		cmocka_unit_test(real_tap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
