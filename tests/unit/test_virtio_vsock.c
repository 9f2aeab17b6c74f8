/* The virtio-vsock device and its Unix-socket backend, driven by a fake
 * guest driver (rings in a host buffer laid out as guest memory) and real
 * Unix sockets in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio_vsock.h"
#include "fake_driver.h"
#include "fake_mmio.h"
#include "guest/guest_mem.h"

#define MEM_SIZE (4 << 20)
#define QSIZE 64
#define RING(q) (0x1000 + (q) * 0x3000) /* queue q's rings (fake_vq_init) */
#define DESC(q) RING(q)
#define TXDATA 0x100000 /* tx packets, 0x11000 apart */
#define RXDATA 0x200000 /* rx buffers, 0x1000 apart */
#define RXBUF 0x1000
#define CID 3

static uint8_t backing[MEM_SIZE] __attribute__((aligned(4096)));

struct tb {
	struct guest_mem gm;
	struct virtio_vsock *v;
	struct virtio_mmio *m;
	struct fake_vq vq[3];
	unsigned tx_slot;
	char dir[32], path[64];
	int irqs;
};

static void hook_irq(void *ctx)
{
	((struct tb *)ctx)->irqs++;
}

static void hook_notify(void *ctx, uint32_t queue)
{
	(void)ctx, (void)queue;
}

static struct tb *tb_new(void)
{
	struct tb *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	signal(SIGPIPE, SIG_IGN); /* as main.c */
	memset(backing, 0, sizeof(backing));
	gm_init_from(&t->gm, backing, MEM_SIZE, 1ULL << 31);
	snprintf(t->dir, sizeof(t->dir), "/tmp/ember-vsock-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/v.sock", t->dir);
	struct vsock_config cfg = {.guest_cid = CID};
	snprintf(cfg.uds_path, sizeof(cfg.uds_path), "%.64s", t->path);
	struct virtio_vsock_params p = {
		.cfg = &cfg, .gm = &t->gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t},
	};
	ember_err e = {{0}};
	if (virtio_vsock_create(&t->v, &p, &e))
		fail_msg("virtio_vsock_create: %s", e.msg);
	t->m = virtio_vsock_mmio(t->v);
	assert_int_equal(r32(t, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_VSOCK);
	mmio_negotiate(t->m, 1ULL << VIRTIO_F_VERSION_1);
	for (unsigned q = 0; q < 3; q++) {
		fake_vq_init(&t->vq[q], &t->gm, RING(q), QSIZE);
		fake_mmio_queue(t->m, q, &t->vq[q]);
	}
	fake_mmio_driver_ok(t->m);
	return t;
}

static void tb_free(struct tb *t)
{
	virtio_vsock_destroy(t->v);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
	assert_int_equal(system(cmd), 0);
	free(t);
}

/* The next descriptor of queue q's table (round robin). */
static uint16_t add_desc(struct tb *t, unsigned q, uint64_t gpa, uint32_t len, uint16_t flags,
			 uint16_t next)
{
	uint16_t i = t->vq[q].next_desc;
	t->vq[q].next_desc = (uint16_t)((i + 1) % QSIZE);
	fake_desc(&t->gm, DESC(q), i, gpa, len, flags, next);
	return i;
}

static void publish(struct tb *t, unsigned q, uint16_t head)
{
	fake_vq_offer(&t->vq[q], head);
}

static void give_rx(struct tb *t, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t gpa = RXDATA + (uint64_t)(t->vq[0].avail_idx % QSIZE) * RXBUF;
		publish(t, 0, add_desc(t, 0, gpa, RXBUF, VIRTQ_DESC_F_WRITE, 0));
	}
	virtio_vsock_queue_event(t->v, VSOCK_RXQ);
}

static struct vsock_hdr hdr(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len)
{
	return (struct vsock_hdr){.src_cid = CID, .dst_cid = VSOCK_HOST_CID,
				  .src_port = src_port, .dst_port = dst_port, .len = len,
				  .type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 1 << 20};
}

/* A tx packet of header and payload in one readable buffer of `buf_len`
 * bytes (0: exactly what it holds). */
static void tx_raw(struct tb *t, const struct vsock_hdr *h, const void *data, uint32_t n,
		   uint32_t buf_len)
{
	uint64_t gpa = TXDATA + (uint64_t)(t->tx_slot++ % 8) * 0x11000;
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(h, raw);
	assert_int_equal(gm_write(&t->gm, gpa, raw, sizeof(raw)), 0);
	if (n)
		assert_int_equal(gm_write(&t->gm, gpa + VSOCK_HDR_SIZE, data, n), 0);
	publish(t, 1, add_desc(t, 1, gpa, buf_len ? buf_len : VSOCK_HDR_SIZE + n, 0, 0));
	virtio_vsock_queue_event(t->v, VSOCK_TXQ);
}

static void tx(struct tb *t, struct vsock_hdr h, const void *data)
{
	tx_raw(t, &h, data, h.len, 0);
}

/* The next packet the device put in the rx queue; false if none. */
static bool rx(struct tb *t, struct vsock_hdr *h, void *data)
{
	if (fake_vq_used_idx(&t->vq[0]) == t->vq[0].used_seen)
		return false;
	uint32_t id, len;
	fake_vq_used_elem(&t->vq[0], t->vq[0].used_seen++, &id, &len);
	uint64_t gpa;
	assert_int_equal(gm_read(&t->gm, DESC(0) + 16ULL * id, &gpa, 8), 0);
	uint8_t raw[VSOCK_HDR_SIZE];
	assert_int_equal(gm_read(&t->gm, gpa, raw, sizeof(raw)), 0);
	vsock_hdr_decode(raw, h);
	assert_int_equal(len, VSOCK_HDR_SIZE + h->len);
	assert_int_equal(h->src_cid, VSOCK_HOST_CID);
	assert_int_equal(h->dst_cid, CID);
	if (data && h->len)
		assert_int_equal(gm_read(&t->gm, gpa + VSOCK_HDR_SIZE, data, h->len), 0);
	/* the buffer goes back to the driver */
	publish(t, 0, (uint16_t)id);
	return true;
}

static void expect_rx(struct tb *t, uint16_t op, uint32_t src, uint32_t dst, struct vsock_hdr *out,
		      void *data)
{
	struct vsock_hdr h;
	assert_true(rx(t, &h, data));
	assert_int_equal(h.op, op);
	assert_int_equal(h.src_port, src);
	assert_int_equal(h.dst_port, dst);
	if (out)
		*out = h;
}

static int listen_at(struct tb *t, uint32_t port)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.64s_%u", t->path, port);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static int connect_host(struct tb *t)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Runs the backend until its epoll set is quiet. */
static void pump(struct tb *t)
{
	struct pollfd p = {.fd = virtio_vsock_epoll_fd(t->v), .events = POLLIN};
	for (int i = 0; i < 100 && poll(&p, 1, 50) == 1; i++)
		virtio_vsock_backend_event(t->v);
}

static void read_exactly(int fd, void *buf, size_t n)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	for (size_t got = 0; got < n;) {
		assert_int_equal(poll(&p, 1, 2000), 1);
		ssize_t r = read(fd, (char *)buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

/* ---- Config ---- */

static void config_parse(void **state)
{
	(void)state;
	struct vsock_config c;
	ember_err e = {{0}};
	json_t *j = json_loads("{\"guest_cid\": 3, \"uds_path\": \"/tmp/v.sock\", \"vsock_id\": \"vsock0\"}", 0, NULL);
	assert_int_equal(vsock_config_parse(j, &c, &e), 0);
	assert_int_equal(c.guest_cid, 3);
	assert_string_equal(c.uds_path, "/tmp/v.sock");
	json_t *back = vsock_config_json(&c);
	assert_true(json_equal(back, j));
	json_decref(back);
	json_decref(j);
	static const char *bad[] = {
		"{\"guest_cid\": 2, \"uds_path\": \"/tmp/v\"}",
		"{\"guest_cid\": 4294967296, \"uds_path\": \"/tmp/v\"}",
		"{\"guest_cid\": 3}",
		"{\"uds_path\": \"/tmp/v\"}",
		"{\"guest_cid\": 3, \"uds_path\": \"\"}",
		"{\"guest_cid\": 3, \"uds_path\": \"/tmp/v\", \"x\": 1}",
		"{\"guest_cid\": \"3\", \"uds_path\": \"/tmp/v\"}",
		"{\"guest_cid\": 3, \"uds_path\": \"/tmp/v\", \"vsock_id\": \"a b\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = json_loads(bad[i], 0, NULL);
		assert_non_null(j);
		assert_int_equal(vsock_config_parse(j, &c, &e), -1);
		assert_non_null(strstr(e.msg, "vsock"));
		json_decref(j);
	}
}

static void config_space_is_cid(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	assert_int_equal(r32(t, VIRTIO_MMIO_CONFIG), CID);
	assert_int_equal(r32(t, VIRTIO_MMIO_CONFIG + 4), 0);
	tb_free(t);
}

static void uds_path_in_use(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	struct vsock_config cfg = {.guest_cid = CID};
	snprintf(cfg.uds_path, sizeof(cfg.uds_path), "%.64s", t->path);
	struct virtio_vsock_params p = {.cfg = &cfg, .gm = &t->gm,
					.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t}};
	struct virtio_vsock *v2;
	ember_err e = {{0}};
	assert_int_equal(virtio_vsock_create(&v2, &p, &e), -1);
	assert_non_null(strstr(e.msg, "Address already in use"));
	tb_free(t);
}

/* ---- Guest-initiated ---- */

static void guest_connects_and_echoes(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	int l = listen_at(t, 52);
	give_rx(t, 8);
	tx(t, hdr(VSOCK_OP_REQUEST, 1000, 52, 0), NULL);
	expect_rx(t, VSOCK_OP_RESPONSE, 52, 1000, NULL, NULL);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 1);
	int s = accept(l, NULL, NULL);
	assert_true(s >= 0);
	tx(t, hdr(VSOCK_OP_RW, 1000, 52, 5), "hello");
	char buf[64];
	read_exactly(s, buf, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(write(s, "world!", 6), 6);
	pump(t);
	struct vsock_hdr h;
	expect_rx(t, VSOCK_OP_RW, 52, 1000, &h, buf);
	assert_int_equal(h.len, 6);
	assert_memory_equal(buf, "world!", 6);
	assert_int_equal(h.buf_alloc, VSOCK_CONN_TX_BUF_BIG);
	assert_int_equal(h.fwd_cnt, 5);
	/* the host closes: SHUTDOWN(SEND); the guest closes: RST */
	close(s);
	pump(t);
	expect_rx(t, VSOCK_OP_SHUTDOWN, 52, 1000, &h, NULL);
	assert_int_equal(h.flags & VSOCK_FLAGS_SHUTDOWN_SEND, VSOCK_FLAGS_SHUTDOWN_SEND);
	struct vsock_hdr sd = hdr(VSOCK_OP_SHUTDOWN, 1000, 52, 0);
	sd.flags = 3;
	tx(t, sd, NULL);
	expect_rx(t, VSOCK_OP_RST, 52, 1000, NULL, NULL);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 0);
	struct vsock_metrics *m = virtio_vsock_metrics(t->v);
	assert_int_equal(metric_count(&m->conns_added), 1);
	assert_int_equal(metric_count(&m->conns_removed), 1);
	assert_int_equal(metric_count(&m->tx_bytes_count), 5);
	assert_int_equal(metric_count(&m->rx_bytes_count), 6);
	close(l);
	tb_free(t);
}

static void guest_connect_refused(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	give_rx(t, 4);
	tx(t, hdr(VSOCK_OP_REQUEST, 1000, 99, 0), NULL);
	expect_rx(t, VSOCK_OP_RST, 99, 1000, NULL, NULL);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 0);
	tb_free(t);
}

/* The guest closes first; what it sent before still reaches the host, then
 * the host sees the end. */
static void guest_closes(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	int l = listen_at(t, 7);
	give_rx(t, 4);
	tx(t, hdr(VSOCK_OP_REQUEST, 1000, 7, 0), NULL);
	expect_rx(t, VSOCK_OP_RESPONSE, 7, 1000, NULL, NULL);
	int s = accept(l, NULL, NULL);
	tx(t, hdr(VSOCK_OP_RW, 1000, 7, 3), "bye");
	struct vsock_hdr sd = hdr(VSOCK_OP_SHUTDOWN, 1000, 7, 0);
	sd.flags = 3;
	tx(t, sd, NULL);
	expect_rx(t, VSOCK_OP_RST, 7, 1000, NULL, NULL);
	char buf[8];
	read_exactly(s, buf, 3);
	assert_int_equal(read(s, buf, sizeof(buf)), 0);
	close(s);
	close(l);
	tb_free(t);
}

/* ---- Host-initiated ---- */

static int host_connect_to_guest(struct tb *t, uint32_t port, uint32_t *local)
{
	int s = connect_host(t);
	char line[32];
	int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	assert_int_equal(write(s, line, (size_t)n), n);
	pump(t);
	struct vsock_hdr h;
	assert_true(rx(t, &h, NULL));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.dst_port, port);
	*local = h.src_port;
	return s;
}

static void host_connects(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	give_rx(t, 8);
	uint32_t local;
	int s = host_connect_to_guest(t, 1234, &local);
	assert_int_equal(local, 1u << 30);
	tx(t, hdr(VSOCK_OP_RESPONSE, 1234, local, 0), NULL);
	char want[32], buf[64];
	int n = snprintf(want, sizeof(want), "OK %u\n", local);
	read_exactly(s, buf, (size_t)n);
	assert_memory_equal(buf, want, (size_t)n);
	assert_int_equal(write(s, "ping", 4), 4);
	pump(t);
	struct vsock_hdr h;
	expect_rx(t, VSOCK_OP_RW, local, 1234, &h, buf);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(h.fwd_cnt, 0); /* the OK line is Ember's, not the guest's */
	tx(t, hdr(VSOCK_OP_RW, 1234, local, 3), "abc");
	read_exactly(s, buf, 3);
	assert_int_equal(write(s, "x", 1), 1);
	pump(t);
	expect_rx(t, VSOCK_OP_RW, local, 1234, &h, buf);
	assert_int_equal(h.fwd_cnt, 3);
	/* the guest resets: the host sees the end */
	tx(t, hdr(VSOCK_OP_RST, 1234, local, 0), NULL);
	assert_int_equal(read(s, buf, sizeof(buf)), 0);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 0);
	close(s);
	tb_free(t);
}

static void host_connect_refused_by_guest(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	give_rx(t, 8);
	uint32_t local;
	int s = host_connect_to_guest(t, 5, &local);
	tx(t, hdr(VSOCK_OP_RST, 5, local, 0), NULL);
	char buf[8];
	assert_int_equal(read(s, buf, sizeof(buf)), 0);
	close(s);
	tb_free(t);
}

/* The CONNECT line in pieces, and the stream right behind its '\n' in the
 * same write: the line is taken up to the '\n' and not a byte further. */
static void host_connect_line_in_pieces(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	give_rx(t, 8);
	int s = connect_host(t);
	assert_int_equal(write(s, "CONN", 4), 4);
	pump(t);
	struct vsock_hdr h;
	assert_false(rx(t, &h, NULL));
	assert_int_equal(write(s, "ECT 77\nhello", 12), 12);
	pump(t);
	expect_rx(t, VSOCK_OP_REQUEST, 1u << 30, 77, &h, NULL);
	tx(t, hdr(VSOCK_OP_RESPONSE, 77, h.src_port, 0), NULL);
	pump(t);
	char buf[16];
	expect_rx(t, VSOCK_OP_RW, 1u << 30, 77, &h, buf);
	assert_int_equal(h.len, 5);
	assert_memory_equal(buf, "hello", 5);
	close(s);
	tb_free(t);
}

static void host_bad_connect_line(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	give_rx(t, 8);
	static const char *bad[] = {"HELLO 5\n", "CONNECT\n", "CONNECT -5\n", "CONNECT 99999999999\n",
				    "CONNECT 0123456789012345678901234567890\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int s = connect_host(t);
		assert_int_equal(write(s, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
		pump(t);
		char buf[8];
		ssize_t r = read(s, buf, sizeof(buf)); /* unread bytes make it a reset */
		assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
		close(s);
	}
	struct vsock_hdr h;
	assert_false(rx(t, &h, NULL));
	int s = connect_host(t);
	assert_int_equal(write(s, "connect 7\n", 10), 10); /* any case, as Firecracker */
	pump(t);
	assert_true(rx(t, &h, NULL));
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	close(s);
	tb_free(t);
}

/* ---- Flow control and a hostile guest ---- */

/* Ember sends no more than the guest's credit, and goes on when it grows. */
static void honours_guest_credit(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	int l = listen_at(t, 52);
	give_rx(t, 16);
	struct vsock_hdr req = hdr(VSOCK_OP_REQUEST, 1000, 52, 0);
	req.buf_alloc = 100;
	tx(t, req, NULL);
	expect_rx(t, VSOCK_OP_RESPONSE, 52, 1000, NULL, NULL);
	int s = accept(l, NULL, NULL);
	char data[300];
	memset(data, 'x', sizeof(data));
	assert_int_equal(write(s, data, sizeof(data)), (ssize_t)sizeof(data));
	pump(t);
	struct vsock_hdr h;
	uint32_t got = 0;
	while (rx(t, &h, NULL))
		got += h.len;
	assert_int_equal(got, 100);
	struct vsock_hdr cu = hdr(VSOCK_OP_CREDIT_UPDATE, 1000, 52, 0);
	cu.buf_alloc = 100;
	cu.fwd_cnt = 100;
	tx(t, cu, NULL);
	while (rx(t, &h, NULL))
		got += h.len;
	assert_int_equal(got, 200);
	/* a guest claiming to have read more than it was sent gets nothing more */
	cu.fwd_cnt = 100000;
	tx(t, cu, NULL);
	assert_false(rx(t, &h, NULL));
	close(s);
	close(l);
	tb_free(t);
}

/* A guest sending past the credit Ember gave it (host not reading) is
 * reset, and its connection's buffer stays bounded. */
static void credit_lie_resets(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	int l = listen_at(t, 52);
	give_rx(t, 16);
	tx(t, hdr(VSOCK_OP_REQUEST, 1000, 52, 0), NULL);
	expect_rx(t, VSOCK_OP_RESPONSE, 52, 1000, NULL, NULL);
	int s = accept(l, NULL, NULL); /* never reads */
	static uint8_t chunk[VSOCK_MAX_PKT_BUF_SIZE];
	struct vsock_metrics *m = virtio_vsock_metrics(t->v);
	for (int i = 0; i < 200 && !metric_count(&m->conns_killed); i++)
		tx(t, hdr(VSOCK_OP_RW, 1000, 52, sizeof(chunk)), chunk);
	assert_int_equal(metric_count(&m->conns_killed), 1);
	assert_int_equal(metric_count(&m->conn_event_fails), 1);
	struct vsock_hdr h;
	do /* credit updates came before */
		assert_true(rx(t, &h, NULL));
	while (h.op == VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 0);
	close(s);
	close(l);
	tb_free(t);
}

static void hostile_packets(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	give_rx(t, 16);
	struct vsock_metrics *m = virtio_vsock_metrics(t->v);
	/* no header */
	struct vsock_hdr h = hdr(VSOCK_OP_RW, 1, 2, 0);
	tx_raw(t, &h, NULL, 0, 20);
	/* more payload claimed than given, and more than any packet may have */
	h.len = 100;
	tx_raw(t, &h, NULL, 0, VSOCK_HDR_SIZE + 10);
	h.len = VSOCK_MAX_PKT_BUF_SIZE + 1;
	tx_raw(t, &h, NULL, 0, VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BUF_SIZE + 1);
	assert_int_equal(metric_count(&m->tx_queue_event_fails), 3);
	/* a device-writable tx buffer */
	publish(t, 1, add_desc(t, 1, TXDATA, 64, VIRTQ_DESC_F_WRITE, 0));
	virtio_vsock_queue_event(t->v, VSOCK_TXQ);
	assert_int_equal(metric_count(&m->tx_queue_event_fails), 4);
	/* wrong CIDs: dropped */
	h = hdr(VSOCK_OP_REQUEST, 1000, 52, 0);
	h.src_cid = 7;
	tx(t, h, NULL);
	h = hdr(VSOCK_OP_REQUEST, 1000, 52, 0);
	h.dst_cid = 1;
	tx(t, h, NULL);
	assert_int_equal(metric_count(&m->muxer_event_fails), 2);
	struct vsock_hdr r;
	assert_false(rx(t, &r, NULL));
	/* a packet of no connection, and one of an unknown type: RST */
	tx(t, hdr(VSOCK_OP_RW, 1000, 52, 3), "abc");
	expect_rx(t, VSOCK_OP_RST, 52, 1000, NULL, NULL);
	h = hdr(VSOCK_OP_REQUEST, 1001, 52, 0);
	h.type = 2;
	tx(t, h, NULL);
	expect_rx(t, VSOCK_OP_RST, 52, 1001, NULL, NULL);
	/* an rx buffer too small for a header, and a readable one */
	uint64_t gpa = RXDATA + 0x80000;
	publish(t, 0, add_desc(t, 0, gpa, 10, VIRTQ_DESC_F_WRITE, 0));
	tx(t, hdr(VSOCK_OP_RW, 1000, 53, 0), NULL);
	/* a header split over two descriptors is fine */
	h = hdr(VSOCK_OP_RW, 1000, 54, 0);
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(&h, raw);
	assert_int_equal(gm_write(&t->gm, TXDATA, raw, 10), 0);
	assert_int_equal(gm_write(&t->gm, TXDATA + 0x800, raw + 10, VSOCK_HDR_SIZE - 10), 0);
	uint16_t second = add_desc(t, 1, TXDATA + 0x800, VSOCK_HDR_SIZE - 10, 0, 0);
	publish(t, 1, add_desc(t, 1, TXDATA, 10, VIRTQ_DESC_F_NEXT, second));
	virtio_vsock_queue_event(t->v, VSOCK_TXQ);
	assert_int_equal(r32(t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	tb_free(t);
}

/* A guest that never gives rx buffers: resets owed to it are bounded, and
 * its tx queue waits. */
static void control_queue_bounded(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	for (int i = 0; i < VSOCK_CTLQ_SIZE + 32; i++) {
		struct vsock_hdr h = hdr(VSOCK_OP_RW, (uint32_t)i, 1, 0);
		uint64_t gpa = TXDATA + (uint64_t)(i % QSIZE) * 64;
		uint8_t raw[VSOCK_HDR_SIZE];
		vsock_hdr_encode(&h, raw);
		assert_int_equal(gm_write(&t->gm, gpa, raw, sizeof(raw)), 0);
		publish(t, 1, add_desc(t, 1, gpa, VSOCK_HDR_SIZE, 0, 0));
		if (i % 32 == 31)
			virtio_vsock_queue_event(t->v, VSOCK_TXQ);
	}
	assert_int_equal(fake_vq_used_idx(&t->vq[1]), VSOCK_CTLQ_SIZE);
	give_rx(t, 32);
	struct vsock_hdr h;
	int n = 0;
	while (rx(t, &h, NULL))
		n++, virtio_vsock_queue_event(t->v, VSOCK_RXQ);
	assert_int_equal(n, VSOCK_CTLQ_SIZE + 32);
	assert_int_equal(fake_vq_used_idx(&t->vq[1]), VSOCK_CTLQ_SIZE + 32);
	tb_free(t);
}

static void device_reset_drops_connections(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	int l = listen_at(t, 52);
	give_rx(t, 8);
	tx(t, hdr(VSOCK_OP_REQUEST, 1000, 52, 0), NULL);
	expect_rx(t, VSOCK_OP_RESPONSE, 52, 1000, NULL, NULL);
	int s = accept(l, NULL, NULL);
	w32(t, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 0);
	char buf[4];
	assert_int_equal(read(s, buf, sizeof(buf)), 0);
	close(s);
	close(l);
	tb_free(t);
}

/* The larger credit goes to VSOCK_BIG_BUF_CONNS connections open at once,
 * the rest get Firecracker's 64 KiB; a connection keeps its credit for life,
 * and the next one gets a closed connection's large credit back. */
static void large_credit_is_bounded(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	int l = listen_at(t, 52);
	give_rx(t, QSIZE);
	struct vsock_hdr h;
	for (uint32_t i = 0; i <= VSOCK_BIG_BUF_CONNS; i++) {
		tx(t, hdr(VSOCK_OP_REQUEST, 1000 + i, 52, 0), NULL);
		expect_rx(t, VSOCK_OP_RESPONSE, 52, 1000 + i, &h, NULL);
		assert_int_equal(h.buf_alloc, i < VSOCK_BIG_BUF_CONNS ? VSOCK_CONN_TX_BUF_BIG
								       : VSOCK_CONN_TX_BUF_SIZE);
		int s = accept(l, NULL, NULL);
		assert_true(s >= 0);
		close(s); /* the host end goes; the connection stays until its RST */
	}
	/* every packet of a connection carries its own credit */
	tx(t, hdr(VSOCK_OP_CREDIT_REQUEST, 1000 + VSOCK_BIG_BUF_CONNS, 52, 0), NULL);
	expect_rx(t, VSOCK_OP_CREDIT_UPDATE, 52, 1000 + VSOCK_BIG_BUF_CONNS, &h, NULL);
	assert_int_equal(h.buf_alloc, VSOCK_CONN_TX_BUF_SIZE);
	tx(t, hdr(VSOCK_OP_RST, 1000, 52, 0), NULL);
	tx(t, hdr(VSOCK_OP_REQUEST, 2000, 52, 0), NULL);
	expect_rx(t, VSOCK_OP_RESPONSE, 52, 2000, &h, NULL);
	assert_int_equal(h.buf_alloc, VSOCK_CONN_TX_BUF_BIG);
	close(l);
	tb_free(t);
}

/* As Firecracker's CONN_SHUTDOWN_TIMEOUT: a connection both ends shut down
 * that is not gone VSOCK_CONN_SHUTDOWN_TIMEOUT_MS later is reset: (a) the
 * guest shut down both ways while the host is not taking what it sent
 * before, (b) the host closed and the guest does not answer. */
static void shutdown_timeout_resets(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	struct vsock_metrics *m = virtio_vsock_metrics(t->v);
	int l = listen_at(t, 52);
	give_rx(t, 32);
	/* (a): the guest sends within its credit until the host's socket is
	 * full and Ember holds some (a credit update stops short) */
	tx(t, hdr(VSOCK_OP_REQUEST, 1000, 52, 0), NULL);
	struct vsock_hdr h;
	expect_rx(t, VSOCK_OP_RESPONSE, 52, 1000, &h, NULL);
	int sa = accept(l, NULL, NULL); /* never reads */
	assert_true(sa >= 0);
	uint32_t credit = h.buf_alloc, fwd = h.fwd_cnt, sent = 0;
	static uint8_t chunk[VSOCK_MAX_PKT_BUF_SIZE];
	for (int i = 0;; i++) {
		assert_true(i < 200);
		uint32_t room = credit - (sent - fwd);
		if (room) {
			uint32_t n = room < sizeof(chunk) ? room : (uint32_t)sizeof(chunk);
			tx(t, hdr(VSOCK_OP_RW, 1000, 52, n), chunk);
			sent += n;
			while (rx(t, &h, NULL))
				fwd = h.fwd_cnt;
			continue;
		}
		tx(t, hdr(VSOCK_OP_CREDIT_REQUEST, 1000, 52, 0), NULL);
		expect_rx(t, VSOCK_OP_CREDIT_UPDATE, 52, 1000, &h, NULL);
		fwd = h.fwd_cnt;
		if (fwd != sent)
			break;
	}
	struct vsock_hdr sd = hdr(VSOCK_OP_SHUTDOWN, 1000, 52, 0);
	sd.flags = VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND;
	tx(t, sd, NULL);
	assert_false(rx(t, &h, NULL)); /* not yet: the host may still read */
	/* (b) */
	uint32_t local;
	int sb = host_connect_to_guest(t, 1234, &local);
	tx(t, hdr(VSOCK_OP_RESPONSE, 1234, local, 0), NULL);
	char line[32];
	int n = snprintf(line, sizeof(line), "OK %u\n", local);
	read_exactly(sb, line, (size_t)n);
	close(sb);
	pump(t);
	expect_rx(t, VSOCK_OP_SHUTDOWN, local, 1234, &h, NULL);
	assert_int_equal(h.flags, VSOCK_FLAGS_SHUTDOWN_RCV | VSOCK_FLAGS_SHUTDOWN_SEND);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 2);
	assert_int_equal(metric_count(&m->conns_killed), 0);
	/* the timer resets both */
	struct pollfd p = {.fd = virtio_vsock_timer_fd(t->v), .events = POLLIN};
	bool rst_a = false, rst_b = false;
	for (int i = 0; i < 10 && !(rst_a && rst_b); i++) {
		if (poll(&p, 1, VSOCK_CONN_SHUTDOWN_TIMEOUT_MS) == 1)
			virtio_vsock_timer_event(t->v);
		while (rx(t, &h, NULL)) {
			assert_int_equal(h.op, VSOCK_OP_RST);
			rst_a |= h.src_port == 52 && h.dst_port == 1000;
			rst_b |= h.src_port == local && h.dst_port == 1234;
		}
	}
	assert_true(rst_a && rst_b);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 0);
	assert_int_equal(metric_count(&m->conns_killed), 2);
	close(sa);
	close(l);
	tb_free(t);
}

/* 1 MiB each way through one connection, with credit both ways: the
 * guest sends within the credit Ember gives, Ember within the guest's. */
static void bulk_both_ways(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	int l = listen_at(t, 52);
	give_rx(t, 16);
	struct vsock_hdr req = hdr(VSOCK_OP_REQUEST, 1000, 52, 0);
	req.buf_alloc = 256 * 1024;
	tx(t, req, NULL);
	struct vsock_hdr h;
	expect_rx(t, VSOCK_OP_RESPONSE, 52, 1000, &h, NULL);
	int s = accept(l, NULL, NULL);
	fcntl(s, F_SETFL, O_NONBLOCK);
	enum { TOTAL = 1 << 20, CHUNK = 3000 };
	static uint8_t out[TOTAL], got_host[TOTAL], got_guest[TOTAL];
	for (size_t i = 0; i < TOTAL; i++)
		out[i] = (uint8_t)(i * 7 + i / 251);
	uint32_t sent = 0, host_got = 0, host_sent = 0, guest_got = 0, guest_fwd = 0;
	uint32_t ember_buf = h.buf_alloc, ember_fwd = h.fwd_cnt;
	for (int round = 0; round < 100000 && (host_got < TOTAL || guest_got < TOTAL); round++) {
		/* guest -> host, within Ember's credit */
		uint32_t credit = ember_buf - (sent - ember_fwd);
		if (sent < TOTAL && credit) {
			uint32_t n = TOTAL - sent < CHUNK ? TOTAL - sent : CHUNK;
			n = n < credit ? n : credit;
			struct vsock_hdr rw = hdr(VSOCK_OP_RW, 1000, 52, n);
			rw.buf_alloc = 256 * 1024;
			rw.fwd_cnt = guest_fwd;
			tx(t, rw, out + sent);
			sent += n;
		}
		ssize_t r = read(s, got_host + host_got, TOTAL - host_got);
		if (r > 0)
			host_got += (uint32_t)r;
		/* host -> guest */
		if (host_sent < TOTAL) {
			ssize_t w = write(s, out + host_sent, TOTAL - host_sent < 8192 ? TOTAL - host_sent : 8192);
			if (w > 0)
				host_sent += (uint32_t)w;
		}
		struct pollfd p = {.fd = virtio_vsock_epoll_fd(t->v), .events = POLLIN};
		if (poll(&p, 1, 0) == 1)
			virtio_vsock_backend_event(t->v);
		virtio_vsock_queue_event(t->v, VSOCK_RXQ);
		uint8_t data[RXBUF];
		bool read_some = false;
		while (rx(t, &h, data)) {
			ember_buf = h.buf_alloc;
			ember_fwd = h.fwd_cnt;
			if (h.op == VSOCK_OP_RW) {
				assert_true(guest_got + h.len <= TOTAL);
				memcpy(got_guest + guest_got, data, h.len);
				guest_got += h.len;
				read_some = true;
			} else {
				assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
			}
		}
		if (read_some) { /* the guest's app read it all: tell Ember */
			guest_fwd = guest_got;
			struct vsock_hdr cu = hdr(VSOCK_OP_CREDIT_UPDATE, 1000, 52, 0);
			cu.buf_alloc = 256 * 1024;
			cu.fwd_cnt = guest_fwd;
			tx(t, cu, NULL);
		}
	}
	assert_int_equal(host_got, TOTAL);
	assert_int_equal(guest_got, TOTAL);
	assert_memory_equal(got_host, out, TOTAL);
	assert_memory_equal(got_guest, out, TOTAL);
	struct vsock_metrics *m = virtio_vsock_metrics(t->v);
	assert_int_equal(metric_count(&m->conns_killed), 0);
	close(s);
	close(l);
	tb_free(t);
}

/* ---- Snapshots ---- */

#define EVDATA 0x300000

/* A device made from the same config the way a restore makes it: the
 * old one gone (its socket file with it, as a restore's caller does), a
 * new one listening at uds_path, its transport then its own state back. */
static int restore_into_new(struct tb *t, json_t *transport, json_t *state, ember_err *e)
{
	virtio_vsock_destroy(t->v);
	unlink(t->path);
	struct vsock_config cfg = {.guest_cid = CID};
	snprintf(cfg.uds_path, sizeof(cfg.uds_path), "%.64s", t->path);
	struct virtio_vsock_params p = {
		.cfg = &cfg, .gm = &t->gm,
		.hooks = {.raise_irq = hook_irq, .queue_notify = hook_notify, .ctx = t},
	};
	if (virtio_vsock_create(&t->v, &p, e))
		fail_msg("virtio_vsock_create: %s", e->msg);
	t->m = virtio_vsock_mmio(t->v);
	if (virtio_mmio_restore(t->m, transport, e))
		fail_msg("virtio_mmio_restore: %s", e->msg);
	return virtio_vsock_restore(t->v, state, e);
}

static void snapshot_resets_the_transport(void **state)
{
	(void)state;
	struct tb *t = tb_new();
	give_rx(t, 8);
	/* An event buffer, and a connection open when the snapshot is taken. */
	uint32_t junk = 0xffffffff;
	assert_int_equal(gm_write(&t->gm, EVDATA, &junk, 4), 0);
	publish(t, 2, add_desc(t, 2, EVDATA, 4, VIRTQ_DESC_F_WRITE, 0));
	uint32_t local;
	int s = host_connect_to_guest(t, 52, &local);
	tx(t, hdr(VSOCK_OP_RESPONSE, 52, local, 0), NULL);
	char buf[64];
	assert_true(read(s, buf, sizeof(buf)) > 0); /* its OK line */
	assert_int_equal(virtio_vsock_nr_conns(t->v), 1);

	json_t *dev = virtio_vsock_save(t->v);
	json_t *transport = virtio_mmio_save(t->m);
	assert_non_null(dev);
	assert_non_null(transport);
	assert_int_equal(json_integer_value(json_object_get(dev, "guest_cid")), CID);
	assert_int_equal(fake_vq_used_idx(&t->vq[2]), 0); /* the source sends no event */

	ember_err e = {{0}};
	int irqs = t->irqs;
	assert_int_equal(restore_into_new(t, transport, dev, &e), 0);
	/* The host's end of the old connection is gone with the old device;
	 * the new one has none and told the driver so. */
	assert_int_equal(read(s, buf, sizeof(buf)), 0);
	close(s);
	assert_int_equal(virtio_vsock_nr_conns(t->v), 0);
	assert_int_equal(fake_vq_used_idx(&t->vq[2]), 1);
	uint32_t id, len, ev;
	fake_vq_used_elem(&t->vq[2], 0, &id, &len);
	assert_int_equal(gm_read(&t->gm, EVDATA, &ev, 4), 0);
	assert_int_equal(len, 4);
	assert_int_equal(ev, 0); /* VIRTIO_VSOCK_EVENT_TRANSPORT_RESET */
	assert_true(t->irqs > irqs);
	/* The guest's packets for the old connection are answered with a
	 * reset, once the driver has handled the event (it gives the event
	 * buffer back): nothing reaches the rx queue before. */
	tx(t, hdr(VSOCK_OP_RW, 52, local, 1), "x");
	struct vsock_hdr h;
	assert_false(rx(t, &h, NULL));
	/* A look at the event queue without a new buffer (the restore looks
	 * at every ready queue once) is no answer. */
	virtio_vsock_queue_event(t->v, VSOCK_EVQ);
	assert_false(rx(t, &h, NULL));
	publish(t, 2, (uint16_t)id);
	virtio_vsock_queue_event(t->v, VSOCK_EVQ);
	expect_rx(t, VSOCK_OP_RST, local, 52, NULL, NULL);
	/* A new host connection works. */
	s = host_connect_to_guest(t, 52, &local);
	tx(t, hdr(VSOCK_OP_RESPONSE, 52, local, 0), NULL);
	char want[32];
	int n = snprintf(want, sizeof(want), "OK %u\n", local);
	read_exactly(s, buf, (size_t)n);
	assert_memory_equal(buf, want, (size_t)n);
	close(s);
	json_decref(dev);
	json_decref(transport);
	tb_free(t);
}

static void snapshot_state_is_checked(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"[]", "{}", "{\"guest_cid\": \"3\"}", "{\"guest_cid\": 4}",
		"{\"guest_cid\": -1}", "{\"guest_cid\": 4294967299}",
		"{\"guest_cid\": 3, \"next_local_port\": 5}",
		"{\"guest_cid\": 3}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tb *t = tb_new();
		json_t *transport = virtio_mmio_save(t->m);
		json_t *dev = json_loads(bad[i], 0, NULL);
		assert_non_null(dev);
		ember_err e = {{0}};
		assert_int_equal(restore_into_new(t, transport, dev, &e), -1);
		assert_true(strstr(e.msg, "guest_cid") || strstr(e.msg, "next_local_port"));
		assert_int_equal(fake_vq_used_idx(&t->vq[2]), 0); /* no event for a refused state */
		json_decref(dev);
		json_decref(transport);
		tb_free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_parse),
		cmocka_unit_test(config_space_is_cid),
		cmocka_unit_test(uds_path_in_use),
		cmocka_unit_test(guest_connects_and_echoes),
		cmocka_unit_test(guest_connect_refused),
		cmocka_unit_test(guest_closes),
		cmocka_unit_test(host_connects),
		cmocka_unit_test(host_connect_refused_by_guest),
		cmocka_unit_test(host_connect_line_in_pieces),
		cmocka_unit_test(host_bad_connect_line),
		cmocka_unit_test(honours_guest_credit),
		cmocka_unit_test(credit_lie_resets),
		cmocka_unit_test(hostile_packets),
		cmocka_unit_test(control_queue_bounded),
		cmocka_unit_test(device_reset_drops_connections),
		cmocka_unit_test(bulk_both_ways),
		cmocka_unit_test(shutdown_timeout_resets),
		cmocka_unit_test(large_credit_is_bounded),
		cmocka_unit_test(snapshot_resets_the_transport),
		cmocka_unit_test(snapshot_state_is_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
