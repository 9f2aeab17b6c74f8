#include "mmds/http_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define JSON "application/json"
#define TEXT "text/plain"

static const struct mmds_slice none = {"", 0};

/* Writes a refusal's text and returns its status. */
__attribute__((format(printf, 3, 4))) static int fail(char *err, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, MMDS_HTTP_ERR_SIZE, fmt, ap);
	va_end(ap);
	return status;
}

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

static struct mmds_slice trim(struct mmds_slice s)
{
	while (s.len && is_space(s.p[0])) {
		s.p++;
		s.len--;
	}
	while (s.len && is_space(s.p[s.len - 1]))
		s.len--;
	return s;
}

bool mmds_slice_is(struct mmds_slice s, const char *lit)
{
	return s.len == strlen(lit) && !memcmp(s.p, lit, s.len);
}

static bool is_nocase(struct mmds_slice s, const char *lit)
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

bool mmds_parse_u32(struct mmds_slice s, uint32_t *out)
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
static struct mmds_slice abs_path(struct mmds_slice uri)
{
	static const char scheme[] = "http://";
	if (uri.len >= sizeof(scheme) - 1 && !memcmp(uri.p, scheme, sizeof(scheme) - 1)) {
		const char *rest = uri.p + sizeof(scheme) - 1;
		size_t n = uri.len - (sizeof(scheme) - 1);
		const char *slash = memchr(rest, '/', n);
		if (!slash)
			return none;
		return (struct mmds_slice){slash, n - (size_t)(slash - rest)};
	}
	return uri.len && uri.p[0] == '/' ? uri : none;
}

/* Accept-Encoding that refuses the identity encoding cannot be served. */
static int check_encoding(struct mmds_slice value, char *err)
{
	struct mmds_slice all = trim(value), rest = all;
	if (!all.len)
		return fail(err, 400, "Invalid request.");
	while (rest.p) {
		const char *comma = memchr(rest.p, ',', rest.len);
		struct mmds_slice item = {rest.p, comma ? (size_t)(comma - rest.p) : rest.len};
		rest = comma ? (struct mmds_slice){comma + 1, rest.len - item.len - 1}
			     : (struct mmds_slice){NULL, 0};
		struct mmds_slice t = trim(item);
		if (mmds_slice_is(t, "identity;q=0") ||
		    (mmds_slice_is(t, "*;q=0") && !find(all.p, all.len, "identity")))
			return fail(err, 400, "Invalid value. Key:Accept-Encoding; Value:%.*s",
				    (int)item.len, item.p);
	}
	return 0;
}

/* One "Name: value" line, into r. */
static int parse_header(struct mmds_slice line, struct mmds_http_request *r, char *err)
{
	const char *colon = memchr(line.p, ':', line.len);
	if (!colon)
		return fail(err, 400, "Header is incorrectly formatted. Key: %.*s", (int)line.len,
			    line.p);
	struct mmds_slice raw_name = {line.p, (size_t)(colon - line.p)};
	struct mmds_slice raw_value = {colon + 1, line.len - raw_name.len - 1};
	struct mmds_slice name = trim(raw_name), value = trim(raw_value);
	if (is_nocase(name, "content-length")) {
		uint32_t n;
		if (!mmds_parse_u32(value, &n))
			return fail(err, 400, "Invalid value. Key:%.*s; Value:%.*s", (int)raw_name.len,
				    raw_name.p, (int)raw_value.len, raw_value.p);
		/* Firecracker reads no body: the request falls short of it. */
		if (n)
			return fail(err, 400, "Invalid request.");
	} else if (is_nocase(name, "accept")) {
		/* Anything but the two types micro_http knows leaves text/plain. */
		if (mmds_slice_is(value, JSON))
			r->accept_json = true;
		else if (mmds_slice_is(value, TEXT))
			r->accept_json = false;
	} else if (is_nocase(name, "accept-encoding")) {
		return check_encoding(raw_value, err);
	} else if (is_nocase(name, "x-metadata-token") ||
		   is_nocase(name, "x-aws-ec2-metadata-token")) {
		r->token = (struct mmds_http_header){name, value};
	} else if (is_nocase(name, "x-metadata-token-ttl-seconds") ||
		   is_nocase(name, "x-aws-ec2-metadata-token-ttl-seconds")) {
		r->ttl = (struct mmds_http_header){name, value};
	} else if (is_nocase(name, "x-forwarded-for")) {
		r->forwarded = (struct mmds_http_header){name, value};
	}
	/* Content-Type, Expect, Transfer-Encoding, Server and the rest: nothing
	 * MMDS uses, and micro_http refuses none of their values. */
	return 0;
}

static int parse_request_line(struct mmds_slice line, struct mmds_http_request *r, char *err)
{
	/* Shortest: "GET / HTTP/1.0". */
	const char *sp1 = line.len >= 14 ? memchr(line.p, ' ', line.len) : NULL;
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line.len - (size_t)(sp1 + 1 - line.p)) : NULL;
	if (!sp2)
		return fail(err, 400, "Invalid request.");
	struct mmds_slice method = {line.p, (size_t)(sp1 - line.p)};
	struct mmds_slice uri = {sp1 + 1, (size_t)(sp2 - sp1 - 1)};
	struct mmds_slice version = {sp2 + 1, line.len - (size_t)(sp2 + 1 - line.p)};

	if (mmds_slice_is(method, "GET"))
		r->method = MMDS_METHOD_GET;
	else if (mmds_slice_is(method, "PUT"))
		r->method = MMDS_METHOD_PUT;
	else if (mmds_slice_is(method, "HEAD") || mmds_slice_is(method, "POST") ||
		 mmds_slice_is(method, "PATCH") || mmds_slice_is(method, "DELETE"))
		r->method = MMDS_METHOD_OTHER;
	else
		return fail(err, 501, "Unsupported HTTP method.");
	if (!uri.len)
		return fail(err, 400, "Empty URI not allowed.");
	if (!utf8_valid(uri.p, uri.len))
		return fail(err, 400, "Cannot parse URI as UTF-8.");
	if (mmds_slice_is(version, "HTTP/1.0"))
		r->version = "HTTP/1.0";
	else if (mmds_slice_is(version, "HTTP/1.1"))
		r->version = "HTTP/1.1";
	else
		return fail(err, 501, "Unsupported HTTP version.");
	r->path = abs_path(uri);
	return 0;
}

int mmds_http_parse(const char *p, size_t len, struct mmds_http_request *r,
		    char err[MMDS_HTTP_ERR_SIZE])
{
	memset(r, 0, sizeof(*r));
	const char *crlf = find(p, len, "\r\n");
	if (!crlf)
		return fail(err, 400, "Invalid request.");
	int status = parse_request_line((struct mmds_slice){p, (size_t)(crlf - p)}, r, err);
	if (status)
		return status;
	/* The headers end at the first CRLF CRLF from the request line's CRLF;
	 * only a request whose empty line is that one is well formed. */
	const char *blank = find(crlf, len - (size_t)(crlf - p), "\r\n\r\n");
	if (!blank || (size_t)(blank - p) + 4 != len)
		return fail(err, 400, "Invalid request.");
	struct mmds_slice headers = {crlf + 2, blank > crlf ? (size_t)(blank - crlf - 2) : 0};
	if (!utf8_valid(headers.p, headers.len))
		return fail(err, 400, "Invalid request.");
	while (headers.len) {
		const char *eol = find(headers.p, headers.len, "\r\n");
		size_t n = eol ? (size_t)(eol - headers.p) : headers.len;
		status = parse_header((struct mmds_slice){headers.p, n}, r, err);
		if (status)
			return status;
		n += eol ? 2 : 0;
		headers.p += n;
		headers.len -= n;
	}
	return 0;
}

/* Where Firecracker's MMDS endpoint sees a request end: after the first
 * "\n\n" or "\n\r\n". 0 if none yet. */
size_t mmds_http_request_end(const char *p, size_t len)
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

