/* The MMDS data store: one JSON value the API replaces (PUT /mmds), merges
 * into (PATCH /mmds) and reads (GET /mmds), and the guest reads piecewise by
 * URI path. Behaviour, messages and limits are Firecracker's. Not locked:
 * the owner serialises the API thread and the network device around it. */
#ifndef EMBER_MMDS_STORE_H
#define EMBER_MMDS_STORE_H

#include <stddef.h>

#include <jansson.h>

#include "mmds/buf.h"
#include "util/err.h"

/* Firecracker's --mmds-size-limit defaults to --http-api-max-payload-size,
 * whose default this is. */
#define MMDS_DEFAULT_SIZE_LIMIT 51200

struct mmds_store {
	json_t *data; /* NULL until the first PUT: "not initialized" */
	size_t limit; /* bytes the compact serialization may take */
};

/* Failures of put and patch, by the HTTP status Firecracker's API gives. */
enum {
	MMDS_STORE_INVALID = -1,   /* 400 */
	MMDS_STORE_TOO_LARGE = -2, /* 413 */
};

void mmds_store_init(struct mmds_store *s, size_t limit);
void mmds_store_free(struct mmds_store *s);

/* PUT /mmds: any JSON value replaces the contents (value is copied). 0, or
 * MMDS_STORE_TOO_LARGE when its serialization exceeds the limit; a failure
 * changes nothing. */
int mmds_store_put(struct mmds_store *s, const json_t *value, ember_err *e);
/* PATCH /mmds: RFC 7396 merge of patch into the contents. 0, or
 * MMDS_STORE_INVALID before any PUT, or MMDS_STORE_TOO_LARGE when the result
 * would exceed the limit; a failure changes nothing. */
int mmds_store_patch(struct mmds_store *s, const json_t *patch, ember_err *e);
/* 400 or 413 for a failure code above. */
int mmds_store_http_status(int rc);
/* GET /mmds: the contents as compact JSON ("{}" when empty or null), malloc'd
 * and NUL-terminated; NULL when out of memory. */
char *mmds_store_dump(const struct mmds_store *s);

/* Collapses every run of '/' into one, in place (Firecracker's
 * sanitize_uri); returns the new length. */
size_t mmds_path_sanitize(char *path, size_t len);

enum mmds_format {
	MMDS_FORMAT_IMDS, /* text/plain, the default */
	MMDS_FORMAT_JSON, /* Accept: application/json */
};

enum mmds_lookup {
	MMDS_FOUND,
	MMDS_NOT_FOUND,   /* 404 */
	MMDS_UNSUPPORTED, /* 501: IMDS has no text form for this value */
};

/* The guest's view: the value at a URI path (duplicate slashes collapsed,
 * one trailing slash ignored, then read as a JSON pointer) appended to out
 * as compact JSON, or in IMDS text: a string as is, an object as its keys
 * one per line ("/" after a key whose value is an object), anything else
 * MMDS_UNSUPPORTED. */
enum mmds_lookup mmds_store_get(const struct mmds_store *s, const char *path, size_t len,
				enum mmds_format fmt, struct mmds_buf *out);

#endif
