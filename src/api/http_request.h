/* The head of one API request (request line and headers), read by Ember's
 * own parser: Firecracker's micro_http accepts the same requests. Pure
 * functions over the caller's bytes, so the fuzzer can drive them alone
 * (fuzz/api_http_fuzz.c). The connection logic is in http_conn.c. */
#ifndef EMBER_API_HTTP_REQUEST_H
#define EMBER_API_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The request line and headers together, CRLF CRLF included: larger is
 * refused (Firecracker's own limit is 1 KiB per line). */
#define API_HTTP_MAX_HEAD 8192
#define API_HTTP_MAX_METHOD 16
/* Room for any refusal message: at most 80 bytes of the request quoted. */
#define API_HTTP_ERR_SIZE 256

struct api_http_head {
	char method[API_HTTP_MAX_METHOD + 1]; /* NUL-terminated */
	const char *path;                     /* into the caller's bytes, not terminated */
	size_t path_len;
	bool http10;
	uint32_t content_length;
	bool expect_continue; /* Expect: 100-continue */
	bool chunked;         /* Transfer-Encoding: chunked (refused by the caller) */
	bool close;           /* Connection: close, or HTTP/1.0 without keep-alive */
};

/* Reads the head at the start of p[0..len).
 * >0: its length (through the empty line), h filled;
 *  0: incomplete, more bytes may finish it;
 * <0: refused: minus the HTTP status, the reason in err. */
long api_http_parse_head(const char *p, size_t len, struct api_http_head *h,
			 char err[API_HTTP_ERR_SIZE]);

#endif
