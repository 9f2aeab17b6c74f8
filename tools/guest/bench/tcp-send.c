/* tcp-send: the bench's guest -> host sender (bench/guest_io.py, net-tx).
 * Connects to HOST:PORT and sends MIB MiB of zeros in large send() calls
 * from one buffer, then shuts its side down and waits for the peer's EOF,
 * so that the guest's own tool costs as little as it can: no pipe, no
 * second process, no per-KiB copies, as `dd | nc` had (busybox nc moves
 * the data through a pipe in small reads).
 *
 * Usage: tcp-send HOST PORT MIB [CHUNK_KIB]   (CHUNK_KIB default 256)
 * Exits 0 when every byte was sent and the peer closed; 1 otherwise, with a
 * line on stderr. Built static by tools/guest/build-evil.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int fail(const char *what)
{
	fprintf(stderr, "tcp-send: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: tcp-send HOST PORT MIB [CHUNK_KIB]\n");
		return 2;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "tcp-send: %s is not an IPv4 address\n", argv[1]);
		return 2;
	}
	unsigned long long total = strtoull(argv[3], NULL, 10) << 20;
	size_t chunk = (argc == 5 ? strtoul(argv[4], NULL, 10) : 256) << 10;
	if (chunk == 0 || chunk > (64u << 20)) {
		fprintf(stderr, "tcp-send: chunk of %zu bytes\n", chunk);
		return 2;
	}
	char *buf = calloc(1, chunk);
	if (!buf)
		return fail("calloc");
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return fail("socket");
	/* A bound on a host that never answers: the bench's step timeout is
	 * the real one. */
	struct timeval tv = {.tv_sec = 30};
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fail("connect");
	while (total) {
		size_t n = total < chunk ? (size_t)total : chunk;
		ssize_t w = send(s, buf, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return fail("send");
		}
		total -= (unsigned long long)w;
	}
	if (shutdown(s, SHUT_WR) < 0)
		return fail("shutdown");
	/* The peer closes once it has counted everything. */
	for (;;) {
		ssize_t r = recv(s, buf, chunk, 0);
		if (r == 0)
			break;
		if (r < 0 && errno != EINTR)
			return fail("recv");
	}
	close(s);
	return 0;
}
