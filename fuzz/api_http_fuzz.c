/* libFuzzer target: a hostile API client's byte stream. Each input is fed
 * through a socketpair in slices (the first byte picks the slice size) to
 * one api_conn, which frames and answers requests with a fake VMM; the whole
 * input is also given to the head parser alone. Checks the parser's
 * contract and that the connection never holds more than one request.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   build-fuzz/fuzz/api_http_fuzz -max_len=16384 -dict=fuzz/api_http.dict \
 *            fuzz/corpus/api_http */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/http_conn.h"
#include "api/http_request.h"

#define MAX_PAYLOAD 1000

static void dispatch(void *ctx, const struct api_http_head *h, const char *body, size_t len,
		     struct vmm_response *resp)
{
	(void)ctx;
	if (strlen(h->path) != h->path_len || !h->method[0] || h->path[0] != '/')
		abort();
	if (!body) { /* refused before its body: already answered */
		if (resp->status != 400)
			abort();
		return;
	}
	if (len > MAX_PAYLOAD || body[len])
		abort();
	if (len & 1)
		vmm_response_fault(resp, 400, "odd body: %zu bytes", len);
	else
		resp->status = 204;
}

static void check_parser(const uint8_t *in, size_t len)
{
	struct api_http_head h;
	char err[API_HTTP_ERR_SIZE];
	long r = api_http_parse_head((const char *)in, len, &h, err);
	if (r > 0) {
		if ((size_t)r > len || (size_t)r > API_HTTP_MAX_HEAD)
			abort();
		if (h.path < (const char *)in || h.path + h.path_len > (const char *)in + r)
			abort();
	} else if (r < 0 && (r < -599 || !memchr(err, 0, sizeof(err)) || !err[0])) {
		abort();
	}
}

static void drain(int fd)
{
	char buf[65536];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	check_parser(in, len);
	if (!len)
		return 0;
	size_t step = (size_t)(in[0] % 64) + 1;
	in++, len--;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		abort();
	struct api_conn *c = calloc(1, sizeof(*c));
	c->fd = sv[0];
	size_t off = 0;
	while (!api_conn_done(c)) {
		if (off < len) {
			size_t n = len - off < step ? len - off : step;
			ssize_t w = send(sv[1], in + off, n, MSG_DONTWAIT);
			off += w > 0 ? (size_t)w : 0;
		} else if (!c->eof) {
			shutdown(sv[1], SHUT_WR);
		}
		if (api_conn_read(c, MAX_PAYLOAD) < 0)
			break;
		api_conn_process(c, MAX_PAYLOAD, dispatch, NULL);
		if (c->in_len > API_HTTP_MAX_HEAD + MAX_PAYLOAD + 1)
			abort();
		if (api_conn_flush(c) < 0)
			break;
		drain(sv[1]);
		if (off == len && c->eof && !api_conn_busy(c))
			break;
	}
	api_conn_free(c);
	close(sv[1]);
	return 0;
}
