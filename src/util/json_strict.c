#include "util/json_strict.h"

#include <string.h>

const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

static const char *const type_names[] = {
	[JF_STRING] = "string", [JF_BOOL] = "boolean", [JF_INT] = "integer",
	[JF_OBJECT] = "an object", [JF_ARRAY] = "an array",
};

static bool type_ok(const json_t *v, enum jfield_type t)
{
	switch (t) {
	case JF_STRING: return json_is_string(v);
	case JF_BOOL: return json_is_boolean(v);
	case JF_INT: return json_is_integer(v);
	case JF_OBJECT: return json_is_object(v);
	case JF_ARRAY: return json_is_array(v);
	}
	return false;
}

static void set_absent(const struct jfield *f, char *base)
{
	void *p = base + f->offset;
	switch (f->type) {
	case JF_STRING: *(const char **)p = NULL; break;
	case JF_BOOL: *(int *)p = -1; break;
	case JF_INT: *(struct jint *)p = (struct jint){0}; break;
	case JF_OBJECT:
	case JF_ARRAY: *(json_t **)p = NULL; break;
	}
}

static void set_value(const struct jfield *f, char *base, json_t *v)
{
	void *p = base + f->offset;
	switch (f->type) {
	case JF_STRING: *(const char **)p = json_string_value(v); break;
	case JF_BOOL: *(int *)p = json_is_true(v); break;
	case JF_INT: *(struct jint *)p = (struct jint){true, json_integer_value(v)}; break;
	case JF_OBJECT:
	case JF_ARRAY: *(json_t **)p = v; break;
	}
}

int json_strict_parse(const char *what, json_t *j, const struct jfield *f, size_t n, void *out,
		      ember_err *e)
{
	if (!json_is_object(j))
		return err_set(e, "%s: expected an object, got %s", what, json_type_name(j));
	char *base = out;
	for (size_t i = 0; i < n; i++)
		set_absent(&f[i], base);
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		size_t i;
		for (i = 0; i < n && strcmp(key, f[i].name); i++)
			;
		if (i == n)
			return err_set(e, "%s: unknown field \"%s\"", what, key);
		if (json_is_null(v) && !f[i].required)
			continue; /* serde's Option: null is None */
		if (!type_ok(v, f[i].type))
			return err_set(e, "%s: %s: expected %s, got %s", what, key,
				       type_names[f[i].type], json_type_name(v));
		/* Every string becomes a C string: a path, an id, a command line. */
		if (json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v))
			return err_set(e, "%s: %s: contains a NUL byte", what, key);
		set_value(&f[i], base, v);
	}
	for (size_t i = 0; i < n; i++)
		if (f[i].required && !json_object_get(j, f[i].name))
			return err_set(e, "%s: missing field \"%s\"", what, f[i].name);
	return 0;
}

bool json_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > JSON_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!(c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z')))
			return false;
	}
	return true;
}
