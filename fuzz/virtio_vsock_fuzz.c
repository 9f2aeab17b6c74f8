/* libFuzzer target: a hostile driver against virtio-vsock and its Unix-
 * socket backend. The input is a script (fuzz_driver.h) whose own ops
 * notify the tx or rx queue, run the backend (after a host program at
 * <uds_path>_52 accepted what came and wrote bytes of the input into each
 * connection), connect a host client with a CONNECT line from the input,
 * and fire the timeout timer. Queue 0 is rx, 1 tx (fz_chain's bit 7).
 *
 * Checked: the connection count stays within VSOCK_MAX_CONNECTIONS;
 * ASan, UBSan and LeakSanitizer do the rest (the used ring is not read
 * back: a guest may well point a buffer at it).
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh virtio_vsock_fuzz (docs/fuzzing.md) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio_vsock.h"
#include "fuzz_driver.h"
#include "fuzz_quiet.h"

static char dir[64];
static int host_listener = -1; /* <uds_path>_52 */
static int host_conns[16];
static unsigned nr_host_conns;

static void hook_irq(void *ctx)
{
	(void)ctx;
}

static void hook_notify(void *ctx, uint32_t queue)
{
	(void)ctx, (void)queue;
}

static void sock_path(char *out, size_t n, const char *suffix)
{
	snprintf(out, n, "%s/v.sock%s", dir, suffix);
}

static void setup_once(void)
{
	if (dir[0])
		return;
	signal(SIGPIPE, SIG_IGN); /* as main.c: a closed peer is an EPIPE */
	snprintf(dir, sizeof(dir), "/tmp/ember-vsock-fuzz-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	sock_path(sa.sun_path, sizeof(sa.sun_path), "_52");
	host_listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (host_listener < 0 || bind(host_listener, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(host_listener, 64))
		abort();
}

/* The host program: takes new connections (up to 16 kept) and writes n
 * input bytes into each. */
static void host_side(struct fz *f)
{
	int c;
	while ((c = accept4(host_listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		if (nr_host_conns < 16)
			host_conns[nr_host_conns++] = c;
		else
			close(c);
	}
	const uint8_t *src;
	size_t n = fz_bytes(f, &src, fz_u8(f));
	for (unsigned i = 0; i < nr_host_conns; i++)
		if (n && write(host_conns[i], src, n) < 0) {
			close(host_conns[i]);
			host_conns[i--] = host_conns[--nr_host_conns];
		}
}

static void host_client(struct fz *f)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	sock_path(sa.sun_path, sizeof(sa.sun_path), "");
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c < 0)
		abort();
	if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		const uint8_t *src;
		size_t n = fz_bytes(f, &src, fz_u8(f) % 40);
		if (write(c, src, n) < 0) {
			/* a full socket: fine */
		}
	}
	if (nr_host_conns < 16)
		host_conns[nr_host_conns++] = c;
	else
		close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	if (len < 1)
		return 0;
	setup_once();
	struct fz f = {in, len, 1};
	struct fz_mem mem;
	fz_mem_init(&mem);
	struct vsock_config cfg = {.guest_cid = 3};
	sock_path(cfg.uds_path, sizeof(cfg.uds_path), "");
	unlink(cfg.uds_path);
	struct virtio_vsock_params p = {.cfg = &cfg, .gm = &mem.gm,
					.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify}};
	struct virtio_vsock *v;
	ember_err e;
	if (virtio_vsock_create(&v, &p, &e))
		abort();
	struct fz_driver d = {.m = virtio_vsock_mmio(v), .gm = &mem.gm};
	if (!(in[0] & 8))
		fz_bring_up(&d, ~0ULL, in[0] >> 4);
	while (fz_more(&f)) {
		uint8_t op = fz_u8(&f) % 12;
		if (fz_driver_op(&d, op, &f))
			continue;
		switch (op) {
		case 7:
			virtio_vsock_queue_event(v, VSOCK_TXQ);
			break;
		case 8:
			virtio_vsock_queue_event(v, VSOCK_RXQ);
			break;
		case 9:
			host_side(&f);
			virtio_vsock_backend_event(v);
			break;
		case 10:
			host_client(&f);
			virtio_vsock_backend_event(v);
			break;
		default:
			virtio_vsock_timer_event(v);
			break;
		}
		if (virtio_vsock_nr_conns(v) > VSOCK_MAX_CONNECTIONS)
			abort();
	}
	virtio_vsock_destroy(v);
	for (unsigned i = 0; i < nr_host_conns; i++)
		close(host_conns[i]);
	nr_host_conns = 0;
	int c;
	while ((c = accept4(host_listener, NULL, NULL, 0)) >= 0)
		close(c);
	fz_mem_free(&mem);
	return 0;
}
