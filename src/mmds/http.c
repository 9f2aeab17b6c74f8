#include "mmds/http.h"

#include <stdlib.h>
#include <string.h>

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

struct slice {
	const char *p;
	size_t len;
};

struct header {
	struct slice name, value; /* name.p NULL when absent */
};

struct request {
	enum { M_GET, M_PUT, M_OTHER } method;
	const char *version; /* "HTTP/1.0" or "HTTP/1.1", echoed in the answer */
	struct slice path;   /* the absolute path, empty if the URI has none */
	bool accept_json;    /* Accept: application/json; else text/plain */
	struct header token, ttl, forwarded;
};

/* One answer. Parse errors go out as HTTP/1.1 with micro_http's default
 * content type (application/json, over a text body), as Firecracker's. */
struct reply {
	const char *version;
	int status;
	const char *ctype;
	bool allow;             /* 405: Allow: GET, PUT */
	const struct header *echo; /* the TTL header, echoed with the token */
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

static void respond_text(struct mmds_buf *out, const char *version, int status,
			 const char *ctype, const char *body)
{
	respond(out, &(struct reply){version, status, ctype, false, NULL, body, strlen(body)});
}

/* A message with request text in it: the text is bounded by the request. */
static void respond_fmt(struct mmds_buf *out, const char *version, int status, const char *ctype,
			const char *prefix, struct slice a, const char *mid, struct slice b,
			const char *suffix)
{
	struct mmds_buf body = {0};
	mmds_buf_adds(&body, prefix);
	mmds_buf_add(&body, a.p, a.len);
	mmds_buf_adds(&body, mid);
	mmds_buf_add(&body, b.p, b.len);
	mmds_buf_adds(&body, suffix);
	if (body.failed)
		out->failed = true;
	else
		respond(out, &(struct reply){version, status, ctype, false, NULL, body.data, body.len});
	mmds_buf_free(&body);
}

static const struct slice none = {"", 0};

static const char *find(const char *p, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(p + i, needle, n))
			return p + i;
	return NULL;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static struct slice trim(struct slice s)
{
	while (s.len && is_space(s.p[0])) {
		s.p++;
		s.len--;
	}
	while (s.len && is_space(s.p[s.len - 1]))
		s.len--;
	return s;
}

static bool is(struct slice s, const char *lit)
{
	return s.len == strlen(lit) && !memcmp(s.p, lit, s.len);
}

static bool is_nocase(struct slice s, const char *lit)
{
	if (s.len != strlen(lit))
		return false;
	for (size_t i = 0; i < s.len; i++) {
		char c = s.p[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != lit[i])
			return false;
	}
	return true;
}

/* Strict UTF-8, as Rust's str::from_utf8: no overlongs, surrogates or code
 * points past U+10FFFF. */
static bool utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		unsigned c = *p++;
		if (c < 0x80)
			continue;
		int more;
		unsigned min, cp;
		if ((c & 0xe0) == 0xc0) {
			more = 1, min = 0x80, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			more = 2, min = 0x800, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			more = 3, min = 0x10000, cp = c & 0x07;
		} else {
			return false;
		}
		if (end - p < more)
			return false;
		while (more--) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (*p++ & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* Rust's str::parse::<u32>: an optional '+', then decimal digits. */
static bool parse_u32(struct slice s, uint32_t *out)
{
	size_t i = s.len && s.p[0] == '+';
	if (i == s.len)
		return false;
	uint64_t v = 0;
	for (; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s.p[i] - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

/* micro_http's Uri::get_abs_path: "http://host[:port]/path" or "/path";
 * anything else has no absolute path. */
static struct slice abs_path(struct slice uri)
{
	static const char scheme[] = "http://";
	if (uri.len >= sizeof(scheme) - 1 && !memcmp(uri.p, scheme, sizeof(scheme) - 1)) {
		const char *rest = uri.p + sizeof(scheme) - 1;
		size_t n = uri.len - (sizeof(scheme) - 1);
		const char *slash = memchr(rest, '/', n);
		if (!slash)
			return none;
		return (struct slice){slash, n - (size_t)(slash - rest)};
	}
	return uri.len && uri.p[0] == '/' ? uri : none;
}

/* Accept-Encoding that refuses the identity encoding cannot be served. */
static int check_encoding(struct slice value, const char *ver, struct mmds_buf *out)
{
	struct slice all = trim(value), rest = all;
	if (!all.len) {
		respond_text(out, ver, 400, JSON, "Invalid request.");
		return -1;
	}
	while (rest.p) {
		const char *comma = memchr(rest.p, ',', rest.len);
		struct slice item = {rest.p, comma ? (size_t)(comma - rest.p) : rest.len};
		rest = comma ? (struct slice){comma + 1, rest.len - item.len - 1}
			     : (struct slice){NULL, 0};
		struct slice t = trim(item);
		if (is(t, "identity;q=0") || (is(t, "*;q=0") && !find(all.p, all.len, "identity"))) {
			respond_fmt(out, ver, 400, JSON, "Invalid value. Key:", (struct slice){
				"Accept-Encoding", 15}, "; Value:", item, "");
			return -1;
		}
	}
	return 0;
}

/* One "Name: value" line, into r. -1 with the answer written. */
static int parse_header(struct slice line, struct request *r, struct mmds_buf *out)
{
	const char *ver = "HTTP/1.1";
	const char *colon = memchr(line.p, ':', line.len);
	if (!colon) {
		respond_fmt(out, ver, 400, JSON, "Header is incorrectly formatted. Key: ", line, "",
			    none, "");
		return -1;
	}
	struct slice raw_name = {line.p, (size_t)(colon - line.p)};
	struct slice raw_value = {colon + 1, line.len - raw_name.len - 1};
	struct slice name = trim(raw_name), value = trim(raw_value);
	if (is_nocase(name, "content-length")) {
		uint32_t n;
		if (!parse_u32(value, &n)) {
			respond_fmt(out, ver, 400, JSON, "Invalid value. Key:", raw_name, "; Value:",
				    raw_value, "");
			return -1;
		}
		if (n) { /* Firecracker reads no body: the request is short of it. */
			respond_text(out, ver, 400, JSON, "Invalid request.");
			return -1;
		}
	} else if (is_nocase(name, "accept")) {
		/* Anything but the two types micro_http knows leaves text/plain. */
		if (is(value, JSON))
			r->accept_json = true;
		else if (is(value, TEXT))
			r->accept_json = false;
	} else if (is_nocase(name, "accept-encoding")) {
		return check_encoding(raw_value, ver, out);
	} else if (is_nocase(name, "content-type") || is_nocase(name, "expect") ||
		   is_nocase(name, "transfer-encoding") || is_nocase(name, "server")) {
		/* Parsed and ignored by micro_http; nothing MMDS uses. */
	} else if (is_nocase(name, "x-metadata-token") ||
		   is_nocase(name, "x-aws-ec2-metadata-token")) {
		r->token = (struct header){name, value};
	} else if (is_nocase(name, "x-metadata-token-ttl-seconds") ||
		   is_nocase(name, "x-aws-ec2-metadata-token-ttl-seconds")) {
		r->ttl = (struct header){name, value};
	} else if (is_nocase(name, "x-forwarded-for")) {
		r->forwarded = (struct header){name, value};
	}
	return 0;
}

/* micro_http's Request::try_from on one request's bytes (through its empty
 * line). -1 with the answer written. */
static int parse_request(const char *p, size_t len, struct request *r, struct mmds_buf *out)
{
	const char *v11 = "HTTP/1.1";
	const char *crlf = find(p, len, "\r\n");
	/* Shortest: "GET / HTTP/1.0". */
	if (!crlf || crlf - p < 14) {
		respond_text(out, v11, 400, JSON, "Invalid request.");
		return -1;
	}
	size_t line_len = (size_t)(crlf - p);
	const char *sp1 = memchr(p, ' ', line_len);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - p)) : NULL;
	if (!sp2) {
		respond_text(out, v11, 400, JSON, "Invalid request.");
		return -1;
	}
	struct slice method = {p, (size_t)(sp1 - p)};
	struct slice uri = {sp1 + 1, (size_t)(sp2 - sp1 - 1)};
	struct slice version = {sp2 + 1, line_len - (size_t)(sp2 + 1 - p)};

	if (is(method, "GET"))
		r->method = M_GET;
	else if (is(method, "PUT"))
		r->method = M_PUT;
	else if (is(method, "HEAD") || is(method, "POST") || is(method, "PATCH") ||
		 is(method, "DELETE"))
		r->method = M_OTHER;
	else {
		respond_text(out, v11, 501, JSON, "Unsupported HTTP method.");
		return -1;
	}
	if (!uri.len) {
		respond_text(out, v11, 400, JSON, "Empty URI not allowed.");
		return -1;
	}
	if (!utf8_valid(uri.p, uri.len)) {
		respond_text(out, v11, 400, JSON, "Cannot parse URI as UTF-8.");
		return -1;
	}
	if (is(version, "HTTP/1.0"))
		r->version = "HTTP/1.0";
	else if (is(version, "HTTP/1.1"))
		r->version = "HTTP/1.1";
	else {
		respond_text(out, v11, 501, JSON, "Unsupported HTTP version.");
		return -1;
	}
	r->path = abs_path(uri);

	/* The headers end at the first CRLF CRLF from the request line's CRLF;
	 * only a request whose empty line is that one is well formed. */
	size_t at = line_len;
	const char *blank = find(p + at, len - at, "\r\n\r\n");
	if (!blank || (size_t)(blank - p) + 4 != len) {
		respond_text(out, v11, 400, JSON, "Invalid request.");
		return -1;
	}
	struct slice headers = {crlf + 2, blank > crlf ? (size_t)(blank - crlf - 2) : 0};
	if (!utf8_valid(headers.p, headers.len)) {
		respond_text(out, v11, 400, JSON, "Invalid request.");
		return -1;
	}
	while (headers.len) {
		const char *eol = find(headers.p, headers.len, "\r\n");
		struct slice line = {headers.p, eol ? (size_t)(eol - headers.p) : headers.len};
		if (parse_header(line, r, out))
			return -1;
		headers.p += line.len + (eol ? 2 : 0);
		headers.len -= line.len + (eol ? 2 : 0);
	}
	return 0;
}

static void get(struct mmds *m, const struct request *r, struct mmds_buf *out)
{
	/* imds_compat: IMDS text whatever the guest accepts, as EC2's IMDS. */
	bool json = r->accept_json && !m->imds_compat;
	const char *ctype = json ? JSON : TEXT;
	enum mmds_format fmt = json ? MMDS_FORMAT_JSON : MMDS_FORMAT_IMDS;
	struct mmds_buf body = {0};
	switch (mmds_store_get(&m->store, r->path.p, r->path.len, fmt, &body)) {
	case MMDS_FOUND:
		if (body.failed)
			out->failed = true;
		else
			respond(out, &(struct reply){r->version, 200, ctype, false, NULL,
						     body.data ? body.data : "", body.len});
		break;
	case MMDS_NOT_FOUND:
		respond_fmt(out, r->version, 404, TEXT, "Resource not found: ", r->path, ".", none,
			    "");
		break;
	case MMDS_UNSUPPORTED:
		respond_text(out, r->version, 501, TEXT,
			     "Cannot retrieve value. The value has an unsupported type.");
		break;
	}
	mmds_buf_free(&body);
}

static void get_checked(struct mmds *m, const struct request *r, uint64_t now_ms,
			struct mmds_buf *out)
{
	/* V1 takes any token or none; V2 wants a live one. */
	if (m->version == MMDS_V2) {
		if (!r->token.name.p) {
			respond_text(out, r->version, 401, TEXT,
				     "No MMDS token provided. Use `X-metadata-token` or "
				     "`X-aws-ec2-metadata-token` header to specify the session "
				     "token.");
			return;
		}
		if (!mmds_token_valid(&m->tokens, r->token.value.p, r->token.value.len, now_ms)) {
			respond_text(out, r->version, 401, TEXT, "MMDS token not valid.");
			return;
		}
	}
	get(m, r, out);
}

static void put_token(struct mmds *m, const struct request *r, uint64_t now_ms,
		      struct mmds_buf *out)
{
	if (r->forwarded.name.p) {
		respond_fmt(out, r->version, 400, TEXT,
			    "Invalid header. Reason: Unsupported header name. Key: ",
			    r->forwarded.name, "", none, "");
		return;
	}
	char path[MMDS_HTTP_MAX_REQUEST];
	size_t len = r->path.len < sizeof(path) ? r->path.len : sizeof(path);
	memcpy(path, r->path.p, len);
	len = mmds_path_sanitize(path, len);
	if (!is((struct slice){path, len}, TOKEN_PATH)) {
		respond_fmt(out, r->version, 404, TEXT, "Resource not found: ", r->path, ".", none,
			    "");
		return;
	}
	if (!r->ttl.name.p) {
		respond_text(out, r->version, 400, TEXT,
			     "Token time to live value not found. Use `X-metadata-token-ttl-seconds` "
			     "or `X-aws-ec2-metadata-token-ttl-seconds` header to specify the "
			     "token's lifetime.");
		return;
	}
	uint32_t ttl;
	if (!parse_u32(r->ttl.value, &ttl)) {
		respond_fmt(out, r->version, 400, TEXT, "Invalid header. Reason: Invalid value. Key:",
			    r->ttl.name, "; Value:", r->ttl.value, "");
		return;
	}
	char token[MMDS_TOKEN_LEN + 1];
	ember_err e;
	if (mmds_token_issue(&m->tokens, ttl, now_ms, token, &e)) {
		respond_text(out, r->version, 400, TEXT, e.msg);
		return;
	}
	/* The lifetime goes back under the name the guest used, as Firecracker. */
	char ttl_text[12];
	int n = snprintf(ttl_text, sizeof(ttl_text), "%u", ttl);
	struct header echo = {r->ttl.name, {ttl_text, (size_t)n}};
	respond(out, &(struct reply){r->version, 200, TEXT, false, &echo, token, MMDS_TOKEN_LEN});
}

/* Where Firecracker's MMDS endpoint sees a request end: after the first
 * "\n\n" or "\n\r\n". 0 if none yet. */
static size_t request_end(const char *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n')
			return i + 2;
		if (i + 3 <= len && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

enum mmds_http_result mmds_http_handle(struct mmds *m, const void *in, size_t len,
				       uint64_t now_ms, size_t *consumed, struct mmds_buf *resp)
{
	const char *p = in;
	size_t window = len < MMDS_HTTP_MAX_REQUEST ? len : MMDS_HTTP_MAX_REQUEST;
	size_t end = request_end(p, window);
	*consumed = 0;
	if (!end)
		return len >= MMDS_HTTP_MAX_REQUEST ? MMDS_HTTP_RESET : MMDS_HTTP_NEED_MORE;
	*consumed = end;

	struct request r = {0};
	if (parse_request(p, end, &r, resp))
		return MMDS_HTTP_RESPONSE;
	if (!r.path.len) {
		respond_text(resp, r.version, 400, TEXT, "Invalid URI.");
		return MMDS_HTTP_RESPONSE;
	}
	if (r.method == M_GET)
		get_checked(m, &r, now_ms, resp);
	else if (r.method == M_PUT)
		put_token(m, &r, now_ms, resp);
	else
		respond(resp, &(struct reply){r.version, 405, TEXT, true, NULL,
					      "Not allowed HTTP method.", 24});
	return MMDS_HTTP_RESPONSE;
}
