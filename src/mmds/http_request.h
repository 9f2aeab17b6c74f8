/* A guest's HTTP request read the way Firecracker's micro_http reads it,
 * for the MMDS handler (http.c). Slices point into the caller's bytes. */
#ifndef EMBER_MMDS_HTTP_REQUEST_H
#define EMBER_MMDS_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mmds_slice {
	const char *p;
	size_t len;
};

struct mmds_http_header {
	struct mmds_slice name, value; /* trimmed; name.p is NULL when absent */
};

struct mmds_http_request {
	enum { MMDS_METHOD_GET, MMDS_METHOD_PUT, MMDS_METHOD_OTHER } method;
	const char *version;    /* "HTTP/1.0" or "HTTP/1.1" */
	struct mmds_slice path; /* the URI's absolute path; empty if it has none */
	bool accept_json;       /* Accept: application/json, else text/plain */
	/* The headers MMDS acts on; of repeated ones, the last. */
	struct mmds_http_header token, ttl, forwarded;
};

/* Where Firecracker's MMDS endpoint sees a request end: just after the
 * first "\n\n" or "\n\r\n". 0 if there is none in p[0..len). */
size_t mmds_http_request_end(const char *p, size_t len);

/* Room for any refusal message: they quote at most one request. */
#define MMDS_HTTP_ERR_SIZE 2600

/* Reads one request, p[0..len) through its empty line. 0, or the status
 * micro_http refuses it with (400, 501) and the text in err. */
int mmds_http_parse(const char *p, size_t len, struct mmds_http_request *r,
		    char err[MMDS_HTTP_ERR_SIZE]);

bool mmds_slice_is(struct mmds_slice s, const char *lit);
/* Rust's str::parse::<u32>: an optional '+', then decimal digits. */
bool mmds_parse_u32(struct mmds_slice s, uint32_t *out);

#endif
