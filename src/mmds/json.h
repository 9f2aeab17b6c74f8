/* The JSON operations MMDS needs, with Firecracker's (serde_json's) results:
 * the byte-exact compact text its data store limit counts and its guests
 * read, RFC 7396 merge patch, and RFC 6901 pointer lookup. */
#ifndef EMBER_MMDS_JSON_H
#define EMBER_MMDS_JSON_H

#include <stddef.h>

#include <jansson.h>

#include "mmds/buf.h"
#include "util/err.h"

/* serde_json's recursion limit (128, counted so that 127 levels of arrays
 * and objects pass): deeper input is refused, as Firecracker refuses it.
 * It also bounds the recursion of everything below. */
#define MMDS_JSON_MAX_DEPTH 127

/* Any JSON value (not only objects and arrays), as Firecracker's PUT and
 * PATCH /mmds accept; a duplicate key keeps its last value, as serde_json
 * does. NULL with a message on bad input. */
json_t *mmds_json_parse(const char *text, size_t len, ember_err *e);

/* Appends v as serde_json::to_vec writes it: no whitespace, object keys in
 * byte order (serde_json's map is a BTreeMap), numbers as Rust prints them
 * (floats in shortest round-trip form: 12.12, 1.0, 1e100, 1e-7), only ",
 * \ and control characters escaped. */
void mmds_json_dump(const json_t *v, struct mmds_buf *out);

/* An object's members in the order serde_json keeps them: keys compared
 * bytewise. *out is malloc'd (NULL when empty); -1 when out of memory. */
struct mmds_json_member {
	const char *key;
	size_t key_len;
	json_t *value;
};
int mmds_json_members(const json_t *obj, struct mmds_json_member **out, size_t *n);

/* RFC 7396 merge patch, as Firecracker's json_patch. Consumes target (NULL
 * stands for null) and returns the result as a new reference, sharing
 * nothing with patch; target's objects are modified in place, so it must not
 * be shared either. NULL when out of memory. */
json_t *mmds_json_merge(json_t *target, const json_t *patch);

/* RFC 6901 pointer lookup, as serde_json's Value::pointer: "" is the root,
 * "~1" is "/" and "~0" is "~", array indices are plain decimals without a
 * sign or leading zero. Returns a borrowed reference, or NULL. */
json_t *mmds_json_pointer(const json_t *root, const char *ptr, size_t len);

#endif
