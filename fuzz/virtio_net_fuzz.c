/* libFuzzer target: a hostile driver and a hostile backend against
 * virtio-net. A SOCK_DGRAM socketpair stands in for the TAP (one frame,
 * vnet header first, per datagram). The input's first byte sets the MAC,
 * the MTU and the queue size; the rest is a script (fuzz_driver.h) whose
 * own ops process the tx and rx queues, send frames from the backend,
 * inject frames as MMDS does, read what the device sent, and install a TX
 * hook that consumes broadcast frames and answers each with an injected
 * copy (the MMDS detour), and take a snapshot: the device's state saved
 * and restored into a fresh device on the same memory, or a hostile state
 * (JSON from the input) restored instead.
 *
 * Checked: every frame the device hands the hook or the backend is within
 * VIRTIO_NET_MAX_FRAME (plus its vnet header for the backend), and the
 * injection queue never holds more than its bound.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh virtio_net_fuzz (docs/fuzzing.md) */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_quiet.h"
#include "devices/virtio_net.h"
#include "fuzz_driver.h"
#include "mmds/metrics.h"

struct ctx {
	struct virtio_net *n;
	int host;
	/* QueueNotify written, or the device kicked its rx queue on activation. */
	bool kicked[2];
};

static void hook_irq(void *ctx)
{
	(void)ctx;
}

/* As the VMM wires it (vmm/virtio_devs.c): the queue's ioeventfd, served
 * after the register access that caused it. */
static void hook_notify(void *ctx, uint32_t queue)
{
	struct ctx *c = ctx;
	if (queue > 1)
		abort();
	c->kicked[queue] = true;
}

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return 1000000000;
}

static bool tx_frame(void *ctx, const uint8_t *frame, size_t len, uint8_t hdr_flags)
{
	struct ctx *c = ctx;
	(void)hdr_flags;
	if (len > VIRTIO_NET_MAX_FRAME)
		abort();
	if (!len || frame[0] != 0xff)
		return false;
	virtio_net_inject_rx(c->n, frame, len); /* may be refused: queue full */
	return true;
}

static void drain_host(int fd)
{
	static uint8_t buf[VIRTIO_NET_MAX_BUFFER + 100];
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
		if (r < 0)
			return;
		if (r < VIRTIO_NET_HDR_SIZE || r > VIRTIO_NET_MAX_BUFFER)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	if (len < 1)
		return 0;
	struct fz f = {in, len, 1};
	struct fz_mem mem;
	fz_mem_init(&mem);
	struct net_config cfg = {.iface_id = "eth0", .host_dev_name = "tap0",
				 .has_guest_mac = in[0] & 1,
				 .guest_mac = {0x06, 0, 0xac, 0x10, 0, 2}};
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv))
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	struct mmds_metrics mmds = {0};
	struct virtio_net_params p = {
		.cfg = &cfg, .fd_given = true, .fd = sv[0], .mtu = in[0] & 2 ? 1500 : 0,
		.gm = &mem.gm, .mmds_metrics = &mmds,
		.now_ns = fake_clock,
	};
	struct ctx c = {.host = sv[1]};
	p.hooks = (struct virtio_mmio_hooks){.raise_irq = hook_irq, .queue_notify = hook_notify,
					     .ctx = &c};
	ember_err e;
	if (virtio_net_create(&c.n, &p, &e))
		abort();
	struct virtio_net_tx_hook hook = {.tx_frame = tx_frame, .ctx = &c};
	struct fz_driver d = {.m = virtio_net_mmio(c.n), .gm = &mem.gm};
	if (!(in[0] & 8))
		fz_bring_up(&d, ~0ULL, in[0] >> 4);
	while (fz_more(&f)) {
		uint8_t op = fz_u8(&f) % 14;
		if (fz_driver_op(&d, op, &f)) {
			if (c.kicked[VIRTIO_NET_RX_QUEUE])
				virtio_net_process_rx_queue(c.n);
			if (c.kicked[VIRTIO_NET_TX_QUEUE])
				virtio_net_process_tx_queue(c.n);
			c.kicked[0] = c.kicked[1] = false;
			continue;
		}
		switch (op) {
		case 7:
			virtio_net_process_tx_queue(c.n);
			break;
		case 8:
			virtio_net_process_rx_queue(c.n);
			break;
		case 9: { /* the backend has a frame (vnet header first) */
			const uint8_t *b;
			size_t n = fz_bytes(&f, &b, fz_u16(&f));
			send(c.host, b, n, MSG_DONTWAIT);
			virtio_net_process_backend(c.n);
			break;
		}
		case 10: { /* MMDS answers */
			const uint8_t *b;
			size_t n = fz_bytes(&f, &b, fz_u16(&f));
			virtio_net_inject_rx(c.n, b, n);
			if (virtio_net_injected_pending(c.n) > VIRTIO_NET_INJECT_MAX_FRAMES)
				abort();
			break;
		}
		case 11:
			drain_host(c.host);
			break;
		case 12:
			virtio_net_set_tx_hook(c.n, fz_u8(&f) & 1 ? &hook : NULL);
			break;
		case 13: { /* a snapshot: u8 hostile, [u16 n, n bytes of JSON] */
			json_t *own = virtio_net_save(c.n);
			json_t *tr = virtio_mmio_save(virtio_net_mmio(c.n));
			if (!own || !tr)
				abort();
			if (fz_u8(&f) & 1) {
				const uint8_t *b;
				size_t n = fz_bytes(&f, &b, fz_u16(&f));
				json_decref(own);
				own = json_loadb((const char *)b, n, 0, NULL);
			}
			p.fd = dup(virtio_net_backend_fd(c.n));
			virtio_net_destroy(c.n);
			if (p.fd < 0 || virtio_net_create(&c.n, &p, &e))
				abort();
			d.m = virtio_net_mmio(c.n);
			e.msg[0] = 0;
			if (virtio_mmio_restore(d.m, tr, &e) && !e.msg[0])
				abort(); /* a refusal must say why */
			e.msg[0] = 0;
			if (own && virtio_net_restore(c.n, own, &e) && !e.msg[0])
				abort();
			if (virtio_net_injected_pending(c.n) > VIRTIO_NET_INJECT_MAX_FRAMES)
				abort();
			json_decref(own);
			json_decref(tr);
			break;
		}
		}
	}
	drain_host(c.host);
	virtio_net_destroy(c.n);
	close(c.host);
	fz_mem_free(&mem);
	return 0;
}
