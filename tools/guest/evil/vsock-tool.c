/* vsock-tool: the guest side of Ember's vsock tests (test_vsock.py).
 *
 *   vsock-tool listen PORT
 *	echo server on AF_VSOCK port PORT: every connection gets back what
 *	it sends until it shuts down its side (one child per connection).
 *	Prints "EMBER-VSOCK-LISTENING=PORT" once it listens.
 *   vsock-tool echo CID PORT BYTES [CONNS]
 *	CONNS (default 1) connections at once to CID:PORT, each sending BYTES
 *	pseudo-random bytes, shutting down its sending side and reading the
 *	echo to the end. Prints EMBER-ECHO-OK=<connections whose echo matched
 *	in length and CRC-32> and EMBER-ECHO-CRC=<crc of what connection 0
 *	sent>.
 *   vsock-tool send CID PORT BYTES [raw]
 *	bulk sender: BYTES pseudo-random bytes, then shutdown; prints
 *	EMBER-SEND-CRC=<crc32> and EMBER-SEND-MS=<milliseconds>. With "raw"
 *	(the benchmark's): one 64 KiB block made once and sent over and over,
 *	no CRC, so the guest's own work per byte (which under TCG costs as
 *	much as the transfer) is left out; no EMBER-SEND-CRC line.
 *   vsock-tool connect CID PORT
 *	prints EMBER-CONNECT=ok, or the errno name connect() failed with.
 *
 * Checksums are zlib's CRC-32 (Python's zlib.crc32 on the host). The
 * bytes of connection i are xorshift64 from seed i + 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void fill(uint64_t *state, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0) {
			uint64_t x = *state;
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			*state = x;
		}
		buf[i] = (uint8_t)(*state >> (8 * (i % 8)));
	}
}

static int vsock_connect(unsigned cid, unsigned port)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int do_listen(unsigned port)
{
	int l = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 128)) {
		printf("EMBER-VSOCK-LISTEN-ERROR=%s\n", strerror(errno));
		return 1;
	}
	signal(SIGCHLD, SIG_IGN);
	printf("EMBER-VSOCK-LISTENING=%u\n", port);
	fflush(stdout);
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			continue;
		if (fork() == 0) {
			close(l);
			static uint8_t buf[65536];
			for (;;) {
				ssize_t r = read(c, buf, sizeof(buf));
				if (r <= 0)
					break;
				for (ssize_t w = 0; w < r;) {
					ssize_t n = write(c, buf + w, (size_t)(r - w));
					if (n <= 0)
						_exit(1);
					w += n;
				}
			}
			shutdown(c, SHUT_WR);
			/* until the peer is gone: the RST ends it */
			while (read(c, buf, sizeof(buf)) > 0)
				;
			_exit(0);
		}
		close(c);
	}
}

struct conn {
	int fd;
	uint64_t seed;
	uint64_t sent, got;
	uint32_t crc_sent, crc_got;
	size_t pend_off, pend_len;
	uint8_t pend[16384];
	bool shut, done;
};

static int do_echo(unsigned cid, unsigned port, uint64_t bytes, unsigned nconns)
{
	struct conn *cs = calloc(nconns, sizeof(*cs));
	struct pollfd *pf = calloc(nconns, sizeof(*pf));
	for (unsigned i = 0; i < nconns; i++) {
		cs[i].seed = i + 1;
		cs[i].fd = vsock_connect(cid, port);
		if (cs[i].fd < 0) {
			printf("EMBER-ECHO-ERROR=connect %u: %s\n", i, strerror(errno));
			return 1;
		}
		fcntl(cs[i].fd, F_SETFL, O_NONBLOCK);
	}
	unsigned left = nconns;
	static uint8_t buf[65536];
	while (left) {
		for (unsigned i = 0; i < nconns; i++) {
			struct conn *c = &cs[i];
			pf[i].fd = c->done ? -1 : c->fd;
			pf[i].events = POLLIN | (c->shut ? 0 : POLLOUT);
		}
		if (poll(pf, nconns, 60000) <= 0) {
			printf("EMBER-ECHO-ERROR=stalled\n");
			break;
		}
		for (unsigned i = 0; i < nconns; i++) {
			struct conn *c = &cs[i];
			if (c->done)
				continue;
			if (pf[i].revents & POLLOUT && !c->shut) {
				if (c->pend_off == c->pend_len && c->sent < bytes) {
					size_t n = sizeof(c->pend);
					if (n > bytes - c->sent)
						n = (size_t)(bytes - c->sent);
					fill(&c->seed, c->pend, n);
					c->crc_sent = crc32_update(c->crc_sent, c->pend, n);
					c->pend_off = 0;
					c->pend_len = n;
					c->sent += n;
				}
				ssize_t w = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
				if (w > 0)
					c->pend_off += (size_t)w;
				if (c->pend_off == c->pend_len && c->sent == bytes) {
					shutdown(c->fd, SHUT_WR);
					c->shut = true;
				}
			}
			if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				ssize_t r = read(c->fd, buf, sizeof(buf));
				if (r > 0) {
					c->crc_got = crc32_update(c->crc_got, buf, (size_t)r);
					c->got += (uint64_t)r;
				} else if (r == 0 || errno != EAGAIN) {
					c->done = true;
					left--;
				}
			}
		}
	}
	unsigned ok = 0;
	for (unsigned i = 0; i < nconns; i++) {
		if (cs[i].got == bytes && cs[i].crc_got == cs[i].crc_sent)
			ok++;
		else
			printf("EMBER-ECHO-BAD=%u sent %llu got %llu\n", i,
			       (unsigned long long)cs[i].sent, (unsigned long long)cs[i].got);
		close(cs[i].fd);
	}
	printf("EMBER-ECHO-CRC=%08x\n", cs[0].crc_sent);
	printf("EMBER-ECHO-OK=%u\n", ok);
	return 0;
}

static int do_send(unsigned cid, unsigned port, uint64_t bytes, bool raw)
{
	int fd = vsock_connect(cid, port);
	if (fd < 0) {
		printf("EMBER-SEND-ERROR=%s\n", strerror(errno));
		return 1;
	}
	static uint8_t buf[65536];
	uint64_t seed = 1, t0 = now_ms();
	uint32_t crc = 0;
	if (raw)
		fill(&seed, buf, sizeof(buf));
	for (uint64_t sent = 0; sent < bytes;) {
		size_t n = sizeof(buf);
		if (n > bytes - sent)
			n = (size_t)(bytes - sent);
		if (!raw) {
			fill(&seed, buf, n);
			crc = crc32_update(crc, buf, n);
		}
		for (size_t w = 0; w < n;) {
			ssize_t r = write(fd, buf + w, n - w);
			if (r <= 0) {
				printf("EMBER-SEND-ERROR=%s\n", strerror(errno));
				return 1;
			}
			w += (size_t)r;
		}
		sent += n;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	printf("EMBER-SEND-MS=%llu\n", (unsigned long long)(now_ms() - t0));
	if (!raw)
		printf("EMBER-SEND-CRC=%08x\n", crc);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	crc_init();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "listen"))
		return do_listen((unsigned)strtoul(argv[2], NULL, 0));
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "echo"))
		return do_echo((unsigned)strtoul(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0),
			       strtoull(argv[4], NULL, 0),
			       argc == 6 ? (unsigned)strtoul(argv[5], NULL, 0) : 1);
	if ((argc == 5 || (argc == 6 && !strcmp(argv[5], "raw"))) && !strcmp(argv[1], "send"))
		return do_send((unsigned)strtoul(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0),
			       strtoull(argv[4], NULL, 0), argc == 6);
	if (argc == 4 && !strcmp(argv[1], "connect")) {
		int fd = vsock_connect((unsigned)strtoul(argv[2], NULL, 0),
				       (unsigned)strtoul(argv[3], NULL, 0));
		if (fd < 0) {
			const char *name = errno == ECONNRESET ? "ECONNRESET"
					   : errno == ECONNREFUSED ? "ECONNREFUSED"
					   : errno == ETIMEDOUT ? "ETIMEDOUT" : strerror(errno);
			printf("EMBER-CONNECT=%s\n", name);
			return 1;
		}
		printf("EMBER-CONNECT=ok\n");
		close(fd);
		return 0;
	}
	fprintf(stderr, "usage: vsock-tool listen PORT | echo CID PORT BYTES [CONNS] | "
			"send CID PORT BYTES [raw] | connect CID PORT\n");
	return 2;
}
