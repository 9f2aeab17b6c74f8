/* Strict reading of JSON objects for every resource parser (config file and
 * API alike): a table of fields, each with its type and whether it is
 * required, and where its value goes. Unknown fields, wrong types and
 * missing required fields are errors naming the field. As Firecracker's
 * serde Option fields, an explicit null means "absent" for every optional
 * field. Strings with a NUL byte are refused (each becomes a C string).
 * A leaf module: it needs only jansson and util/err. */
#ifndef EMBER_UTIL_JSON_STRICT_H
#define EMBER_UTIL_JSON_STRICT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "util/err.h"

enum jfield_type {
	JF_STRING, /* const char * into the JSON value (NULL if absent) */
	JF_BOOL,   /* int: -1 absent, else 0 or 1 */
	JF_INT,    /* struct jint */
	JF_OBJECT, /* json_t * borrowed (NULL if absent) */
	JF_ARRAY,  /* json_t * borrowed (NULL if absent) */
};

/* An integer field: whether it was given, and its value. */
struct jint {
	bool set;
	json_int_t v;
};

struct jfield {
	const char *name;
	enum jfield_type type;
	bool required;
	size_t offset; /* of the destination in the caller's struct */
};

/* A field of `type` whose destination is member `name` of struct `view`,
 * the member named as the JSON field. */
#define JFIELD(view, name, type, required) {#name, type, required, offsetof(view, name)}

/* Reads object j into *out (a struct laid out as the table says). `what`
 * starts every message ("drive: unknown field \"x\""). Strings and
 * objects point into j, so j must outlive their use. -1 and e set on the
 * first problem. */
int json_strict_parse(const char *what, json_t *j, const struct jfield *f, size_t n, void *out,
		      ember_err *e);

/* "object", "array", "string", "integer", "number", "boolean" or "null",
 * for messages about a value of the wrong type. */
const char *json_type_name(const json_t *v);

/* Firecracker's resource ids (drive_id, iface_id, vsock_id, ...): 1 to 64
 * ASCII letters, digits or '_'. */
#define JSON_ID_MAX 64
bool json_id_valid(const char *id);

#endif
