#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mmds/http.h"
#include "mmds/json.h"

#define T0 5000000

/* One response, taken apart. */
struct answer {
	enum mmds_http_result result;
	size_t consumed;
	char raw[60000];
	int status;
	char version[9];
	char ctype[32];
	const char *body;
};

static const char *header(const struct answer *a, const char *name)
{
	static char value[256];
	char key[64];
	snprintf(key, sizeof(key), "\r\n%s: ", name);
	const char *p = strstr(a->raw, key);
	if (!p || p > a->body)
		return NULL;
	p += strlen(key);
	size_t n = (size_t)(strstr(p, "\r\n") - p);
	snprintf(value, sizeof(value), "%.*s", (int)n, p);
	return value;
}

static void take_apart(struct answer *a, const struct mmds_buf *out)
{
	assert_false(out->failed);
	assert_true(out->len < sizeof(a->raw));
	memcpy(a->raw, out->data, out->len);
	a->raw[out->len] = '\0';
	assert_int_equal(sscanf(a->raw, "%8s %d ", a->version, &a->status), 2);
	const char *end = strstr(a->raw, "\r\n\r\n");
	assert_non_null(end);
	a->body = end + 4;
	snprintf(a->ctype, sizeof(a->ctype), "%s", header(a, "Content-Type"));
	const char *len = header(a, "Content-Length");
	assert_non_null(len);
	assert_int_equal(strtoul(len, NULL, 10), out->len - (size_t)(a->body - a->raw));
	assert_non_null(strstr(a->raw, "\r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"));
}

static void ask_n(struct mmds *m, const char *req, size_t len, uint64_t now, struct answer *a)
{
	struct mmds_buf out = {0};
	memset(a, 0, sizeof(*a));
	a->result = mmds_http_handle(m, req, len, now, &a->consumed, &out);
	if (a->result == MMDS_HTTP_RESPONSE)
		take_apart(a, &out);
	else
		assert_int_equal(out.len, 0);
	mmds_buf_free(&out);
}

static void ask(struct mmds *m, const char *req, uint64_t now, struct answer *a)
{
	ask_n(m, req, strlen(req), now, a);
	assert_int_equal(a->result, MMDS_HTTP_RESPONSE);
	assert_int_equal(a->consumed, strlen(req));
}

static void expect(struct mmds *m, const char *req, int status, const char *ctype,
		   const char *body)
{
	struct answer *a = malloc(sizeof(*a));
	ask(m, req, T0, a);
	if (a->status != status)
		fail_msg("%s: status %d, want %d (%s)", req, a->status, status, a->body);
	if (ctype)
		assert_string_equal(a->ctype, ctype);
	if (body)
		assert_string_equal(a->body, body);
	free(a);
}

static struct mmds *new_mmds(enum mmds_version v)
{
	struct mmds *m = malloc(sizeof(*m));
	mmds_init(m, MMDS_DEFAULT_SIZE_LIMIT);
	m->version = v;
	const char *data = "{\"name\": {\"first\": \"John\", \"second\": \"Doe\"}, \"age\": 43, "
			   "\"phones\": {\"home\": {\"RO\": \"+401234567\", \"UK\": \"+441234567\"}, "
			   "\"mobile\": \"+442345678\"}}";
	json_t *j = mmds_json_parse(data, strlen(data), NULL);
	assert_int_equal(mmds_store_put(&m->store, j, NULL), 0);
	json_decref(j);
	return m;
}

static void free_mmds(struct mmds *m)
{
	mmds_free(m);
	free(m);
}

#define JSON_DATA "{\"age\":43,\"name\":{\"first\":\"John\",\"second\":\"Doe\"},\"phones\":{\"home\":" \
	"{\"RO\":\"+401234567\",\"UK\":\"+441234567\"},\"mobile\":\"+442345678\"}}"

static void exact_bytes(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V1);
	struct answer *a = malloc(sizeof(*a));
	ask(m, "GET http://169.254.169.254/ HTTP/1.0\r\n\r\n", T0, a);
	assert_string_equal(a->raw, "HTTP/1.0 200 \r\nServer: Firecracker API\r\n"
			    "Connection: keep-alive\r\nContent-Type: text/plain\r\n"
			    "Content-Length: 17\r\n\r\nage\nname/\nphones/");
	ask(m, "POST / HTTP/1.1\r\n\r\n", T0, a);
	assert_string_equal(a->raw, "HTTP/1.1 405 \r\nServer: Firecracker API\r\n"
			    "Connection: keep-alive\r\nAllow: GET, PUT\r\nContent-Type: text/plain\r\n"
			    "Content-Length: 24\r\n\r\nNot allowed HTTP method.");
	free(a);
	free_mmds(m);
}

static void v1_get(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V1);
	/* Accept: default, empty, unknown and any-type all mean IMDS text. */
	expect(m, "GET http://169.254.169.254/ HTTP/1.0\r\n\r\n", 200, "text/plain",
	       "age\nname/\nphones/");
	expect(m, "GET / HTTP/1.1\r\nAccept:\r\n\r\n", 200, "text/plain", "age\nname/\nphones/");
	expect(m, "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 200, "text/plain", NULL);
	expect(m, "GET / HTTP/1.1\r\nAccept: text/plain\r\n\r\n", 200, "text/plain", NULL);
	expect(m, "GET / HTTP/1.1\r\naccept:  application/json \r\n\r\n", 200, "application/json",
	       JSON_DATA);
	expect(m, "GET /name/first HTTP/1.1\r\nAccept: application/json\r\n\r\n", 200,
	       "application/json", "\"John\"");
	expect(m, "GET /phones/home/RO HTTP/1.1\r\n\r\n", 200, "text/plain", "+401234567");
	expect(m, "GET http://169.254.169.254:80//phones//home/ HTTP/1.1\r\n\r\n", 200, NULL,
	       "RO\nUK");
	expect(m, "GET /invalid HTTP/1.1\r\n\r\n", 404, "text/plain",
	       "Resource not found: /invalid.");
	expect(m, "GET //invalid// HTTP/1.1\r\n\r\n", 404, NULL, "Resource not found: //invalid//.");
	expect(m, "GET /age HTTP/1.1\r\n\r\n", 501, "text/plain",
	       "Cannot retrieve value. The value has an unsupported type.");
	expect(m, "GET /age HTTP/1.1\r\nAccept: application/json\r\n\r\n", 200, NULL, "43");
	/* V1 takes a bad token, or a bad TTL header, without a word. */
	expect(m, "GET /name/first HTTP/1.0\r\nX-metadata-token: bogus\r\n"
	       "X-metadata-token-ttl-seconds: application/json\r\n\r\n", 200, NULL, "John");
	/* Before any PUT: the root is null. */
	struct mmds *empty = malloc(sizeof(*empty));
	mmds_init(empty, MMDS_DEFAULT_SIZE_LIMIT);
	expect(empty, "GET /latest/meta-data HTTP/1.1\r\n\r\n", 404, NULL, NULL);
	expect(empty, "GET / HTTP/1.1\r\n\r\n", 501, NULL, NULL);
	free_mmds(empty);
	free_mmds(m);
}

static void methods_and_uris(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V2);
	const char *const not_allowed[] = {"HEAD", "POST", "PATCH", "DELETE"};
	for (size_t i = 0; i < 4; i++) {
		char req[64];
		snprintf(req, sizeof(req), "%s http://169.254.169.255/ HTTP/1.0\r\n\r\n",
			 not_allowed[i]);
		struct answer *a = malloc(sizeof(*a));
		ask(m, req, T0, a);
		assert_int_equal(a->status, 405);
		assert_string_equal(header(a, "Allow"), "GET, PUT");
		assert_string_equal(a->body, "Not allowed HTTP method.");
		free(a);
	}
	/* micro_http's own refusals: HTTP/1.1, application/json over a text body. */
	expect(m, "OPTIONS / HTTP/1.1\r\n\r\n", 501, "application/json", "Unsupported HTTP method.");
	expect(m, "get / HTTP/1.1\r\n\r\n", 501, NULL, "Unsupported HTTP method.");
	expect(m, "GET / HTTP/2.0\r\n\r\n", 501, NULL, "Unsupported HTTP version.");
	expect(m, "GET /a b HTTP/1.1\r\n\r\n", 501, NULL, "Unsupported HTTP version.");
	expect(m, "GET  HTTP/1.1 HTTP/1.1\r\n\r\n", 400, NULL, "Empty URI not allowed.");
	expect(m, "GET /\xff\xfe HTTP/1.1\r\n\r\n", 400, NULL, "Cannot parse URI as UTF-8.");
	expect(m, "GET /\xed\xa0\x80 HTTP/1.1\r\n\r\n", 400, NULL, "Cannot parse URI as UTF-8.");
	expect(m, "GET / HTTP\r\n\r\n", 400, "application/json", "Invalid request.");
	expect(m, "GET/HTTP/1.1xxxx\r\n\r\n", 400, NULL, "Invalid request.");
	/* No absolute path: Firecracker's "Invalid URI.", in the request's version. */
	struct answer *a = malloc(sizeof(*a));
	ask(m, "GET http://169.254.169.254 HTTP/1.0\r\n\r\n", T0, a);
	assert_int_equal(a->status, 400);
	assert_string_equal(a->version, "HTTP/1.0");
	assert_string_equal(a->ctype, "text/plain");
	assert_string_equal(a->body, "Invalid URI.");
	ask(m, "PUT latest/api/token HTTP/1.1\r\n\r\n", T0, a);
	assert_string_equal(a->body, "Invalid URI.");
	ask(m, "GET / HTTP/1.0\r\n\r\n", T0, a);
	assert_string_equal(a->version, "HTTP/1.0");
	ask(m, "GET / HTTP/2\r\n\r\n", T0, a);
	assert_string_equal(a->version, "HTTP/1.1");
	free(a);
	free_mmds(m);
}

static void malformed_headers(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V1);
	/* Lines end in CRLF or the request is invalid. */
	expect(m, "GET / HTTP/1.1\n\n", 400, NULL, "Invalid request.");
	expect(m, "GET / HTTP/1.1\r\nAccept: text/plain\n\r\n", 400, NULL, "Invalid request.");
	expect(m, "GET / HTTP/1.1\r\nAccept: text/plain\n\n", 400, NULL, "Invalid request.");
	expect(m, "GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, "application/json",
	       "Header is incorrectly formatted. Key: no colon here");
	expect(m, "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, NULL,
	       "Invalid value. Key:Content-Length; Value: abc");
	expect(m, "GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 400, NULL, NULL);
	expect(m, "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 200, NULL, NULL);
	expect(m, "GET / HTTP/1.1\r\nContent-Length: +0\r\n\r\n", 200, NULL, NULL);
	expect(m, "GET / HTTP/1.1\r\nX-Custom: \xc3\x28\r\n\r\n", 400, NULL, "Invalid request.");
	expect(m, "GET / HTTP/1.1\r\nAccept-Encoding: identity;q=0\r\n\r\n", 400, NULL,
	       "Invalid value. Key:Accept-Encoding; Value:identity;q=0");
	expect(m, "GET / HTTP/1.1\r\nAccept-Encoding: gzip, *;q=0\r\n\r\n", 400, NULL,
	       "Invalid value. Key:Accept-Encoding; Value: *;q=0");
	expect(m, "GET / HTTP/1.1\r\nAccept-Encoding: identity, *;q=0\r\n\r\n", 200, NULL, NULL);
	expect(m, "GET / HTTP/1.1\r\nAccept-Encoding: \r\n\r\n", 400, NULL, "Invalid request.");
	expect(m, "GET / HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/8\r\n"
	       "Content-Type: bogus\r\nExpect: 100-continue\r\nTransfer-Encoding: gzip\r\n\r\n",
	       200, NULL, NULL);
	free_mmds(m);
}

/* A body is not read (Firecracker ends a request at its empty line): the
 * request is refused and the body bytes are what comes next. */
static void body_not_read(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V2);
	const char *req = "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n"
			  "Content-Length: 5\r\n\r\nhello";
	struct answer *a = malloc(sizeof(*a));
	ask_n(m, req, strlen(req), T0, a);
	assert_int_equal(a->result, MMDS_HTTP_RESPONSE);
	assert_int_equal(a->status, 400);
	assert_string_equal(a->body, "Invalid request.");
	assert_int_equal(a->consumed, strlen(req) - 5);
	ask_n(m, req + a->consumed, 5, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_NEED_MORE);
	free(a);
	free_mmds(m);
}

static void token_flow(struct mmds *m, const char *ttl_header, const char *token_header)
{
	struct answer *a = malloc(sizeof(*a));
	char req[512];
	snprintf(req, sizeof(req), "PUT http://169.254.169.254/latest/api/token HTTP/1.1\r\n"
		 "%s: 60\r\n\r\n", ttl_header);
	ask(m, req, T0, a);
	assert_int_equal(a->status, 200);
	assert_string_equal(a->ctype, "text/plain");
	assert_string_equal(header(a, ttl_header), "60");
	assert_int_equal(strlen(a->body), MMDS_TOKEN_LEN);
	char token[MMDS_TOKEN_LEN + 1];
	strcpy(token, a->body);

	snprintf(req, sizeof(req), "GET /name/first HTTP/1.1\r\n%s: %s\r\n\r\n", token_header, token);
	ask(m, req, T0 + 59999, a);
	assert_int_equal(a->status, 200);
	assert_string_equal(a->body, "John");
	ask(m, req, T0 + 60000, a);
	if (m->version == MMDS_V2) {
		assert_int_equal(a->status, 401);
		assert_string_equal(a->body, "MMDS token not valid.");
	} else {
		assert_int_equal(a->status, 200);
	}
	free(a);
}

static void v2_tokens(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V2);
	expect(m, "GET / HTTP/1.1\r\n\r\n", 401, "text/plain",
	       "No MMDS token provided. Use `X-metadata-token` or `X-aws-ec2-metadata-token` "
	       "header to specify the session token.");
	expect(m, "GET / HTTP/1.1\r\nX-metadata-token: foo\r\n\r\n", 401, NULL,
	       "MMDS token not valid.");
	token_flow(m, "X-metadata-token-ttl-seconds", "X-metadata-token");
	token_flow(m, "X-aws-ec2-metadata-token-ttl-seconds", "X-aws-ec2-metadata-token");
	token_flow(m, "x-METADATA-token-ttl-SECONDS", "X-Metadata-Token");

	expect(m, "PUT //latest//api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 1\r\n\r\n", 200,
	       NULL, NULL);
	expect(m, "PUT /latest/api/token/ HTTP/1.1\r\nX-metadata-token-ttl-seconds: 1\r\n\r\n", 404,
	       NULL, "Resource not found: /latest/api/token/.");
	expect(m, "PUT http://169.254.169.254/token HTTP/1.0\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n",
	       404, "text/plain", "Resource not found: /token.");
	expect(m, "PUT /latest/api/token HTTP/1.1\r\n\r\n", 400, "text/plain",
	       "Token time to live value not found. Use `X-metadata-token-ttl-seconds` or "
	       "`X-aws-ec2-metadata-token-ttl-seconds` header to specify the token's lifetime.");
	expect(m, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 0\r\n\r\n", 400,
	       NULL, "Invalid time to live value provided for token: 0. Please provide a value "
	       "between 1 and 21600.");
	expect(m, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 21601\r\n\r\n",
	       400, NULL, "Invalid time to live value provided for token: 21601. Please provide a "
	       "value between 1 and 21600.");
	expect(m, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: application/json"
	       "\r\n\r\n", 400, NULL, "Invalid header. Reason: Invalid value. "
	       "Key:X-metadata-token-ttl-seconds; Value:application/json");
	expect(m, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: -5\r\n\r\n", 400,
	       NULL, NULL);
	expect(m, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 4294967296\r\n\r\n",
	       400, NULL, NULL);
	/* A TTL header on a GET is no token. */
	expect(m, "GET / HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n", 401, NULL, NULL);
	static const char *const xff[] = {"X-Forwarded-For", "x-forwarded-for", "X-fOrWaRdEd-FoR"};
	for (size_t i = 0; i < 3; i++) {
		char req[256], want[128];
		snprintf(req, sizeof(req), "PUT http://169.254.169.254/latest/api/token HTTP/1.0\r\n"
			 "X-metadata-token-ttl-seconds: 60\r\n%s: 203.0.113.195\r\n\r\n", xff[i]);
		snprintf(want, sizeof(want), "Invalid header. Reason: Unsupported header name. "
			 "Key: %s", xff[i]);
		expect(m, req, 400, "text/plain", want);
	}
	/* X-Forwarded-For only matters on the token PUT. */
	char req[256], token[MMDS_TOKEN_LEN + 1];
	ember_err e;
	assert_int_equal(mmds_token_issue(&m->tokens, 60, T0, token, &e), 0);
	snprintf(req, sizeof(req), "GET /age HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\n"
		 "Accept: application/json\r\nX-metadata-token:   %s  \r\n\r\n", token);
	expect(m, req, 200, "application/json", "43");
	free_mmds(m);
}

static void v1_tokens(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V1);
	token_flow(m, "X-metadata-token-ttl-seconds", "X-metadata-token");
	expect(m, "PUT /latest/api/token HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", 400, NULL,
	       "Invalid header. Reason: Unsupported header name. Key: X-Forwarded-For");
	free_mmds(m);
}

static void imds_compat(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V1);
	struct mmds_config c = {.version = MMDS_V1, .imds_compat = true};
	mmds_configure(m, &c);
	expect(m, "GET /name HTTP/1.1\r\nAccept: application/json\r\n\r\n", 200, "text/plain",
	       "first\nsecond");
	expect(m, "GET /age HTTP/1.1\r\nAccept: application/json\r\n\r\n", 501, "text/plain", NULL);
	c.version = MMDS_V2;
	mmds_configure(m, &c);
	expect(m, "GET /name HTTP/1.1\r\n\r\n", 401, NULL, NULL);
	free_mmds(m);
}

/* A TCP stream in pieces: nothing until the empty line, then one answer. */
static void partial_input(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V1);
	struct answer *a = malloc(sizeof(*a));
	const char *req = "GET /name/second HTTP/1.1\r\nAccept: text/plain\r\n\r\n";
	size_t n = strlen(req);
	for (size_t i = 0; i < n; i++) {
		ask_n(m, req, i, T0, a);
		if (a->result != MMDS_HTTP_NEED_MORE)
			fail_msg("answered after %zu of %zu bytes", i, n);
		assert_int_equal(a->consumed, 0);
	}
	ask_n(m, req, n, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_RESPONSE);
	assert_string_equal(a->body, "Doe");
	free(a);
	free_mmds(m);
}

static void pipelined(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V2);
	struct answer *a = malloc(sizeof(*a));
	char stream[1024];
	size_t len = (size_t)snprintf(stream, sizeof(stream),
				      "PUT /latest/api/token HTTP/1.1\r\n"
				      "X-metadata-token-ttl-seconds: 10\r\n\r\n"
				      "GET /bogus HTTP/1.1\r\n\r\n"
				      "GET /name/first HTTP/1.0\r\nX-metadata-token: ");
	ask_n(m, stream, len, T0, a);
	assert_int_equal(a->status, 200);
	char token[MMDS_TOKEN_LEN + 1];
	strcpy(token, a->body);
	size_t off = a->consumed;
	ask_n(m, stream + off, len - off, T0, a);
	assert_int_equal(a->status, 401);
	off += a->consumed;
	ask_n(m, stream + off, len - off, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_NEED_MORE);
	len += (size_t)snprintf(stream + len, sizeof(stream) - len, "%s\r\n\r\nGET", token);
	ask_n(m, stream + off, len - off, T0, a);
	assert_int_equal(a->status, 200);
	assert_string_equal(a->version, "HTTP/1.0");
	assert_string_equal(a->body, "John");
	off += a->consumed;
	assert_int_equal(len - off, 3);
	free(a);
	free_mmds(m);
}

static void oversized(void **state)
{
	(void)state;
	struct mmds *m = new_mmds(MMDS_V1);
	struct answer *a = malloc(sizeof(*a));
	char *big = malloc(MMDS_HTTP_MAX_REQUEST + 100);
	/* A header line that never ends. */
	size_t n = (size_t)snprintf(big, 64, "GET / HTTP/1.1\r\nX-Long: ");
	memset(big + n, 'a', MMDS_HTTP_MAX_REQUEST + 100 - n);
	ask_n(m, big, MMDS_HTTP_MAX_REQUEST - 1, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_NEED_MORE);
	ask_n(m, big, MMDS_HTTP_MAX_REQUEST, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_RESET);
	ask_n(m, big, MMDS_HTTP_MAX_REQUEST + 100, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_RESET);
	/* A request filling the window exactly is still served. */
	memcpy(big + MMDS_HTTP_MAX_REQUEST - 4, "\r\n\r\n", 4);
	ask_n(m, big, MMDS_HTTP_MAX_REQUEST + 100, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_RESPONSE);
	assert_int_equal(a->consumed, MMDS_HTTP_MAX_REQUEST);
	assert_int_equal(a->status, 200);
	/* An end just past the window does not count. */
	memcpy(big + MMDS_HTTP_MAX_REQUEST - 4, "aaaa\r\n\r\n", 8);
	ask_n(m, big, MMDS_HTTP_MAX_REQUEST + 4, T0, a);
	assert_int_equal(a->result, MMDS_HTTP_RESET);
	/* A long URI within the window: an ordinary 404. */
	n = (size_t)snprintf(big, MMDS_HTTP_MAX_REQUEST, "GET /%02000d HTTP/1.1\r\n\r\n", 0);
	ask_n(m, big, n, T0, a);
	assert_int_equal(a->status, 404);
	free(big);
	free(a);
	free_mmds(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_bytes),
		cmocka_unit_test(v1_get),
		cmocka_unit_test(methods_and_uris),
		cmocka_unit_test(malformed_headers),
		cmocka_unit_test(body_not_read),
		cmocka_unit_test(v2_tokens),
		cmocka_unit_test(v1_tokens),
		cmocka_unit_test(imds_compat),
		cmocka_unit_test(partial_input),
		cmocka_unit_test(pipelined),
		cmocka_unit_test(oversized),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
