#include "api/http_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Writes a refusal's text and returns minus its status. */
__attribute__((format(printf, 3, 4))) static long refuse(char *err, int status,
							  const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, API_HTTP_ERR_SIZE, fmt, ap);
	va_end(ap);
	return -status;
}

/* The index of the first CRLF in p[0..len), or len. */
static size_t line_end(const char *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (p[i] == '\r' && p[i + 1] == '\n')
			return i;
	return len;
}

static size_t head_end(const char *p, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (!memcmp(p + i, "\r\n\r\n", 4))
			return i + 4;
	return 0;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool equal_nocase(const char *p, size_t len, const char *lit)
{
	if (len != strlen(lit))
		return false;
	for (size_t i = 0; i < len; i++)
		if (lower(p[i]) != lit[i])
			return false;
	return true;
}

/* A comma-separated list (Connection) holds token, any case. */
static bool list_has(const char *p, size_t len, const char *token)
{
	size_t i = 0;
	while (i < len) {
		size_t start = i;
		while (i < len && p[i] != ',')
			i++;
		size_t a = start, b = i;
		while (a < b && (p[a] == ' ' || p[a] == '\t'))
			a++;
		while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
			b--;
		if (equal_nocase(p + a, b - a, token))
			return true;
		i++;
	}
	return false;
}

/* RFC 9110's tchar: what a method or a header name is made of. */
static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Header values: visible ASCII, spaces, tabs and obs-text; no controls. */
static bool value_ok(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static long parse_request_line(const char *p, size_t len, struct api_http_head *h, char *err)
{
	const char *sp1 = memchr(p, ' ', len);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - p)) : NULL;
	if (!sp2)
		return refuse(err, 400, "Invalid request line: %.*s", len > 80 ? 80 : (int)len, p);
	size_t mlen = (size_t)(sp1 - p);
	if (!mlen || mlen > API_HTTP_MAX_METHOD)
		return refuse(err, 400, "Invalid HTTP method.");
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar(p[i]))
			return refuse(err, 400, "Invalid HTTP method.");
	memcpy(h->method, p, mlen);
	h->method[mlen] = 0;

	h->path = sp1 + 1;
	h->path_len = (size_t)(sp2 - h->path);
	if (!h->path_len)
		return refuse(err, 400, "Empty URI not allowed.");
	if (h->path[0] != '/')
		return refuse(err, 400, "Invalid URI: it must be an absolute path.");
	for (size_t i = 0; i < h->path_len; i++) {
		unsigned char c = (unsigned char)h->path[i];
		if (c <= 0x20 || c >= 0x7f)
			return refuse(err, 400, "Invalid URI: it holds a byte that is not visible ASCII.");
	}

	const char *v = sp2 + 1;
	size_t vlen = len - (size_t)(v - p);
	if (vlen == 8 && !memcmp(v, "HTTP/1.1", 8))
		h->http10 = false;
	else if (vlen == 8 && !memcmp(v, "HTTP/1.0", 8))
		h->http10 = true;
	else
		return refuse(err, 400, "Unsupported HTTP version: %.*s", vlen > 40 ? 40 : (int)vlen,
			      v);
	h->close = h->http10; /* until a Connection header says otherwise */
	return 0;
}

static long parse_content_length(const char *v, size_t vlen, bool *seen, struct api_http_head *h,
				 char *err)
{
	uint64_t n = 0;
	bool ok = vlen > 0;
	for (size_t i = 0; ok && i < vlen; i++) {
		ok = v[i] >= '0' && v[i] <= '9';
		n = n * 10 + (uint64_t)(v[i] - '0');
		ok = ok && n <= UINT32_MAX;
	}
	if (!ok || (*seen && n != h->content_length))
		return refuse(err, 400, "Invalid value. Key:Content-Length; Value:%.*s",
			      vlen > 40 ? 40 : (int)vlen, v);
	*seen = true;
	h->content_length = (uint32_t)n;
	return 0;
}

/* One "Name: value" line. */
static long parse_header(const char *p, size_t len, bool *seen_length, struct api_http_head *h,
			 char *err)
{
	const char *colon = memchr(p, ':', len);
	size_t nlen = colon ? (size_t)(colon - p) : 0;
	for (size_t i = 0; i < nlen && colon; i++)
		if (!is_tchar(p[i]))
			colon = NULL;
	if (!colon || !nlen)
		return refuse(err, 400, "Header is incorrectly formatted. Key: %.*s",
			      len > 80 ? 80 : (int)len, p);
	const char *v = colon + 1, *end = p + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vlen = (size_t)(end - v);
	if (!value_ok(v, vlen))
		return refuse(err, 400, "Header contains invalid characters. Key: %.*s",
			      nlen > 80 ? 80 : (int)nlen, p);

	if (equal_nocase(p, nlen, "content-length"))
		return parse_content_length(v, vlen, seen_length, h, err);
	if (equal_nocase(p, nlen, "transfer-encoding")) {
		/* Any coding but identity frames the body some other way. */
		if (!equal_nocase(v, vlen, "identity"))
			h->chunked = true;
	} else if (equal_nocase(p, nlen, "expect")) {
		/* Other expectations are ignored, as micro_http does. */
		if (equal_nocase(v, vlen, "100-continue"))
			h->expect_continue = true;
	} else if (equal_nocase(p, nlen, "connection")) {
		if (list_has(v, vlen, "close"))
			h->close = true;
		else if (list_has(v, vlen, "keep-alive"))
			h->close = false;
	}
	return 0;
}

long api_http_parse_head(const char *p, size_t len, struct api_http_head *h,
			 char err[API_HTTP_ERR_SIZE])
{
	memset(h, 0, sizeof(*h));
	size_t scan = len < API_HTTP_MAX_HEAD ? len : API_HTTP_MAX_HEAD;
	size_t first = line_end(p, scan);
	if (first == scan) /* a request line still coming in, or far too long */
		return len >= API_HTTP_MAX_HEAD
			       ? refuse(err, 400, "Request line is longer than the limit of "
						  "%d bytes allowed by server.", API_HTTP_MAX_HEAD)
			       : 0;
	/* A bad request line is refused at once, without waiting for the rest. */
	long r = parse_request_line(p, first, h, err);
	if (r)
		return r;
	size_t end = head_end(p + first, scan - first);
	if (!end)
		return len >= API_HTTP_MAX_HEAD
			       ? refuse(err, 400, "Request headers are larger than the limit of "
						  "%d bytes allowed by server.", API_HTTP_MAX_HEAD)
			       : 0;
	end += first;
	bool seen_length = false;
	size_t at = first + 2;
	while (at < end - 2) {
		size_t n = line_end(p + at, end - at);
		if (memchr(p + at, '\n', n) || memchr(p + at, '\r', n))
			return refuse(err, 400, "Invalid request: a bare CR or LF in the headers.");
		if (p[at] == ' ' || p[at] == '\t')
			return refuse(err, 400, "Invalid request: folded header lines are not "
						"supported.");
		r = parse_header(p + at, n, &seen_length, h, err);
		if (r)
			return r;
		at += n + 2;
	}
	return (long)end;
}
