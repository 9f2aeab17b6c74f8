#include "mmds/http.h"

#include <stdio.h>
#include <string.h>

#include "mmds/http_request.h"

/* Firecracker's micro_http writes these on every response. */
#define SERVER_HEADER "Server: Firecracker API\r\n"
#define TOKEN_PATH "/latest/api/token"
#define TEXT "text/plain"
#define JSON "application/json"

void mmds_init(struct mmds *m, size_t size_limit)
{
	mmds_store_init(&m->store, size_limit);
	mmds_tokens_init(&m->tokens);
	m->version = MMDS_V1;
	m->imds_compat = false;
}

void mmds_free(struct mmds *m)
{
	mmds_store_free(&m->store);
}

void mmds_configure(struct mmds *m, const struct mmds_config *c)
{
	m->version = c->version;
	m->imds_compat = c->imds_compat;
}

/* One answer. */
struct reply {
	const char *version;
	int status;
	const char *ctype;
	bool allow;                           /* 405: Allow: GET, PUT */
	const struct mmds_http_header *echo; /* the TTL header, echoed with the token */
	const char *body;
	size_t body_len;
};

static void respond(struct mmds_buf *out, const struct reply *r)
{
	mmds_buf_addf(out, "%s %d \r\n", r->version, r->status);
	mmds_buf_adds(out, SERVER_HEADER "Connection: keep-alive\r\n");
	if (r->allow)
		mmds_buf_adds(out, "Allow: GET, PUT\r\n");
	mmds_buf_addf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n", r->ctype, r->body_len);
	if (r->echo) {
		mmds_buf_add(out, r->echo->name.p, r->echo->name.len);
		mmds_buf_adds(out, ": ");
		mmds_buf_add(out, r->echo->value.p, r->echo->value.len);
		mmds_buf_adds(out, "\r\n");
	}
	mmds_buf_adds(out, "\r\n");
	mmds_buf_add(out, r->body, r->body_len);
}

static void respond_text(struct mmds_buf *out, const char *version, int status, const char *body)
{
	respond(out, &(struct reply){version, status, TEXT, false, NULL, body, strlen(body)});
}

/* "Resource not found: <path>.", the path as the guest wrote it. */
static void not_found(struct mmds_buf *out, const struct mmds_http_request *r)
{
	char body[MMDS_HTTP_ERR_SIZE];
	int n = snprintf(body, sizeof(body), "Resource not found: %.*s.", (int)r->path.len,
			 r->path.p);
	respond_text(out, r->version, 404, n < (int)sizeof(body) ? body : "Resource not found.");
}

static void get(struct mmds *m, const struct mmds_http_request *r, struct mmds_buf *out)
{
	/* imds_compat: IMDS text whatever the guest accepts, as EC2's IMDS. */
	bool json = r->accept_json && !m->imds_compat;
	enum mmds_format fmt = json ? MMDS_FORMAT_JSON : MMDS_FORMAT_IMDS;
	struct mmds_buf body = {0};
	switch (mmds_store_get(&m->store, r->path.p, r->path.len, fmt, &body)) {
	case MMDS_FOUND:
		if (body.failed)
			out->failed = true;
		else
			respond(out, &(struct reply){r->version, 200, json ? JSON : TEXT, false, NULL,
						     body.data ? body.data : "", body.len});
		break;
	case MMDS_NOT_FOUND:
		not_found(out, r);
		break;
	case MMDS_UNSUPPORTED:
		respond_text(out, r->version, 501,
			     "Cannot retrieve value. The value has an unsupported type.");
		break;
	}
	mmds_buf_free(&body);
}

static void get_checked(struct mmds *m, const struct mmds_http_request *r, uint64_t now_ms,
			struct mmds_buf *out)
{
	/* V1 takes any token or none; V2 wants a live one. */
	if (m->version == MMDS_V2 && !r->token.name.p) {
		respond_text(out, r->version, 401,
			     "No MMDS token provided. Use `X-metadata-token` or "
			     "`X-aws-ec2-metadata-token` header to specify the session token.");
		return;
	}
	if (m->version == MMDS_V2 &&
	    !mmds_token_valid(&m->tokens, r->token.value.p, r->token.value.len, now_ms)) {
		respond_text(out, r->version, 401, "MMDS token not valid.");
		return;
	}
	get(m, r, out);
}

static void put_token(struct mmds *m, const struct mmds_http_request *r, uint64_t now_ms,
		      struct mmds_buf *out)
{
	char text[MMDS_HTTP_ERR_SIZE];
	if (r->forwarded.name.p) {
		snprintf(text, sizeof(text), "Invalid header. Reason: Unsupported header name. Key: "
			 "%.*s", (int)r->forwarded.name.len, r->forwarded.name.p);
		respond_text(out, r->version, 400, text);
		return;
	}
	char path[MMDS_HTTP_MAX_REQUEST];
	size_t len = r->path.len < sizeof(path) ? r->path.len : sizeof(path);
	memcpy(path, r->path.p, len);
	len = mmds_path_sanitize(path, len);
	if (!mmds_slice_is((struct mmds_slice){path, len}, TOKEN_PATH)) {
		not_found(out, r);
		return;
	}
	uint32_t ttl;
	if (!r->ttl.name.p) {
		respond_text(out, r->version, 400,
			     "Token time to live value not found. Use `X-metadata-token-ttl-seconds` "
			     "or `X-aws-ec2-metadata-token-ttl-seconds` header to specify the "
			     "token's lifetime.");
		return;
	}
	if (!mmds_parse_u32(r->ttl.value, &ttl)) {
		snprintf(text, sizeof(text), "Invalid header. Reason: Invalid value. Key:%.*s; "
			 "Value:%.*s", (int)r->ttl.name.len, r->ttl.name.p, (int)r->ttl.value.len,
			 r->ttl.value.p);
		respond_text(out, r->version, 400, text);
		return;
	}
	char token[MMDS_TOKEN_LEN + 1];
	ember_err e;
	if (mmds_token_issue(&m->tokens, ttl, now_ms, token, &e)) {
		respond_text(out, r->version, 400, e.msg);
		return;
	}
	/* The lifetime goes back under the name the guest used, as Firecracker. */
	char ttl_text[12];
	int n = snprintf(ttl_text, sizeof(ttl_text), "%u", ttl);
	struct mmds_http_header echo = {r->ttl.name, {ttl_text, (size_t)n}};
	respond(out, &(struct reply){r->version, 200, TEXT, false, &echo, token, MMDS_TOKEN_LEN});
}

enum mmds_http_result mmds_http_handle(struct mmds *m, const void *in, size_t len,
				       uint64_t now_ms, size_t *consumed, struct mmds_buf *resp)
{
	const char *p = in;
	size_t window = len < MMDS_HTTP_MAX_REQUEST ? len : MMDS_HTTP_MAX_REQUEST;
	size_t end = mmds_http_request_end(p, window);
	*consumed = end;
	if (!end)
		return len >= MMDS_HTTP_MAX_REQUEST ? MMDS_HTTP_RESET : MMDS_HTTP_NEED_MORE;

	struct mmds_http_request r;
	char err[MMDS_HTTP_ERR_SIZE];
	int status = mmds_http_parse(p, end, &r, err);
	if (status) {
		/* micro_http's refusals: HTTP/1.1, and its default content type,
		 * application/json, over a text body, as Firecracker sends them. */
		respond(resp, &(struct reply){"HTTP/1.1", status, JSON, false, NULL, err,
					      strlen(err)});
		return MMDS_HTTP_RESPONSE;
	}
	if (!r.path.len)
		respond_text(resp, r.version, 400, "Invalid URI.");
	else if (r.method == MMDS_METHOD_GET)
		get_checked(m, &r, now_ms, resp);
	else if (r.method == MMDS_METHOD_PUT)
		put_token(m, &r, now_ms, resp);
	else
		respond(resp, &(struct reply){r.version, 405, TEXT, true, NULL,
					      "Not allowed HTTP method.", 24});
	return MMDS_HTTP_RESPONSE;
}
