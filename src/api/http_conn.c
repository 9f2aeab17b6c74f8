#include "api/http_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* How much more room a read asks for. */
#define READ_CHUNK 4096

uint64_t api_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static const char *reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

/* Appends n bytes to out. On no memory the connection just closes. */
static void out_append(struct api_conn *c, const char *p, size_t n)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	char *o = realloc(c->out, c->out_len + n);
	if (!o) {
		c->closing = true;
		c->eof = true;
		return;
	}
	memcpy(o + c->out_len, p, n);
	c->out = o;
	c->out_len += n;
}

static void queue_response(struct api_conn *c, const struct vmm_response *r)
{
	char head[256];
	size_t blen = r->body ? strlen(r->body) : 0;
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nServer: Ember\r\n%s%s", r->status,
			 reason(r->status), c->closing ? "Connection: close\r\n" : "",
			 r->deprecated ? "Deprecation: true\r\n" : "");
	/* A 204 has neither body nor length. */
	if (r->status != 204)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "%sContent-Length: %zu\r\n",
			      r->body ? "Content-Type: application/json\r\n" : "", blen);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	out_append(c, head, (size_t)n);
	if (blen)
		out_append(c, r->body, blen);
}

static void consume(struct api_conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

void api_conn_fault(struct api_conn *c, int status, const char *msg)
{
	/* Refusals may quote the request: keep the JSON string valid UTF-8. */
	char clean[API_HTTP_ERR_SIZE];
	size_t i = 0;
	for (; msg[i] && i + 1 < sizeof(clean); i++)
		clean[i] = msg[i] >= 0x20 && msg[i] < 0x7f ? msg[i] : '?';
	clean[i] = 0;
	struct vmm_response r = {0};
	vmm_response_fault(&r, status, "%s", clean);
	c->closing = true;
	c->in_len = 0; /* whatever follows cannot be framed */
	c->discard = 0;
	queue_response(c, &r);
	free(r.body);
}

int api_conn_read(struct api_conn *c, size_t max_payload)
{
	/* At most one request's worth waits; the rest stays in the socket. */
	size_t limit = API_HTTP_MAX_HEAD + max_payload + 1;
	if (c->in_len >= limit)
		return 0;
	if (c->in_cap - c->in_len < READ_CHUNK && c->in_cap < limit) {
		size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
		if (cap < c->in_len + READ_CHUNK)
			cap = c->in_len + READ_CHUNK;
		if (cap > limit)
			cap = limit;
		char *in = realloc(c->in, cap);
		if (!in)
			return -1;
		c->in = in;
		c->in_cap = cap;
	}
	ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0) {
		c->eof = true;
		return 0;
	}
	c->in_len += (size_t)n;
	return 0;
}

/* Skips the body of a refused request as it comes. */
static void skip_discarded(struct api_conn *c)
{
	size_t n = c->in_len < c->discard ? c->in_len : (size_t)c->discard;
	consume(c, n);
	c->discard -= n;
}

/* Refuses a request whose body is over the limit, before it comes. */
static bool refuse_oversized(struct api_conn *c, const struct api_http_head *h, size_t head,
			     size_t max_payload, api_dispatch_fn *dispatch, void *ctx)
{
	struct vmm_response r = {0};
	vmm_response_fault(&r, 400, "Request payload with size %u is larger than the limit of "
			   "%zu allowed by server.", h->content_length, max_payload);
	consume(c, head);
	/* A client waiting for 100 Continue may or may not send the body: the
	 * stream cannot be framed any more. Otherwise the body is skipped as it
	 * comes and the connection kept. */
	if (h->expect_continue || h->close)
		c->closing = true;
	else
		c->discard = h->content_length;
	dispatch(ctx, h, NULL, 0, &r);
	queue_response(c, &r);
	free(r.body);
	c->answered = true;
	return !c->closing;
}

/* One complete request at the start of in, or what stops it. true: carry on
 * with the next one. */
static bool process_one(struct api_conn *c, size_t max_payload, api_dispatch_fn *dispatch,
			void *ctx)
{
	struct api_http_head h;
	char err[API_HTTP_ERR_SIZE];
	long head = api_http_parse_head(c->in, c->in_len, &h, err);
	if (head == 0)
		return false;
	if (head < 0) {
		api_conn_fault(c, (int)-head, err);
		return false;
	}
	if (h.chunked) {
		api_conn_fault(c, 400, "Unsupported feature. Key: Transfer-Encoding; Value: "
				       "chunked. Send the body with a Content-Length.");
		return false;
	}
	char path[API_HTTP_MAX_HEAD];
	memcpy(path, h.path, h.path_len);
	path[h.path_len] = 0;
	h.path = path;
	if (h.content_length > max_payload)
		return refuse_oversized(c, &h, (size_t)head, max_payload, dispatch, ctx);
	size_t total = (size_t)head + h.content_length;
	if (c->in_len < total) {
		if (h.expect_continue && !c->continue_sent) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			out_append(c, cont, sizeof(cont) - 1);
			c->continue_sent = true;
		}
		return false;
	}
	/* The byte after the body is the next request's: NUL-terminate a copy. */
	char *body = malloc((size_t)h.content_length + 1);
	if (!body) {
		api_conn_fault(c, 500, "Out of memory.");
		return false;
	}
	memcpy(body, c->in + head, h.content_length);
	body[h.content_length] = 0;
	struct vmm_response r = {0};
	dispatch(ctx, &h, body, h.content_length, &r);
	free(body);
	consume(c, total);
	c->continue_sent = false;
	if (h.close)
		c->closing = true;
	queue_response(c, &r);
	free(r.body);
	c->answered = true;
	return !c->closing;
}

void api_conn_process(struct api_conn *c, size_t max_payload, api_dispatch_fn *dispatch,
		      void *ctx)
{
	while (!c->closing && c->out_off == c->out_len) {
		if (c->discard)
			skip_discarded(c);
		if (c->discard || !c->in_len)
			break;
		c->busy_since = c->busy_since ? c->busy_since : api_now_ms();
		if (!process_one(c, max_payload, dispatch, ctx))
			break;
		c->busy_since = 0; /* the next request's clock starts with its bytes */
		if (api_conn_flush(c) < 0) {
			c->closing = c->eof = true;
			break;
		}
	}
	if (c->eof && !c->closing && !c->in_len && c->out_off == c->out_len)
		c->closing = true;
	/* A client that shut its side with half a request will not finish it. */
	if (c->eof && c->in_len && !c->closing)
		c->closing = true;
	if (!c->in_len && !c->discard) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
	if (!api_conn_busy(c))
		c->busy_since = 0;
	else if (!c->busy_since)
		c->busy_since = api_now_ms();
}

int api_conn_flush(struct api_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	return 0;
}

bool api_conn_busy(const struct api_conn *c)
{
	return !c->answered || c->in_len || c->discard || c->out_off < c->out_len;
}

bool api_conn_done(const struct api_conn *c)
{
	return c->closing && c->out_off == c->out_len;
}

void api_conn_free(struct api_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}
