#include "mmds/store.h"

#include <stdlib.h>
#include <string.h>

#include "mmds/json.h"

#define MSG_TOO_LARGE "MMDS limit exceeded error: The MMDS patch request doesn't fit."
#define MSG_NOT_INITIALIZED "MMDS error: The MMDS data store is not initialized."

void mmds_store_init(struct mmds_store *s, size_t limit)
{
	s->data = NULL;
	s->limit = limit;
}

void mmds_store_free(struct mmds_store *s)
{
	json_decref(s->data);
	s->data = NULL;
}

int mmds_store_http_status(int rc)
{
	return rc == MMDS_STORE_TOO_LARGE ? 413 : 400;
}

/* 0 if v serializes within the limit. */
static int check_size(const struct mmds_store *s, const json_t *v, ember_err *e)
{
	struct mmds_buf b = {0};
	mmds_json_dump(v, &b);
	bool failed = b.failed;
	size_t len = b.len;
	mmds_buf_free(&b);
	if (failed) {
		err_set(e, "MMDS error: out of memory");
		return MMDS_STORE_INVALID;
	}
	if (len > s->limit) {
		err_set(e, MSG_TOO_LARGE);
		return MMDS_STORE_TOO_LARGE;
	}
	return 0;
}

int mmds_store_put(struct mmds_store *s, const json_t *value, ember_err *e)
{
	int rc = check_size(s, value, e);
	if (rc)
		return rc;
	json_t *copy = json_deep_copy(value);
	if (!copy) {
		err_set(e, "MMDS error: out of memory");
		return MMDS_STORE_INVALID;
	}
	json_decref(s->data);
	s->data = copy;
	return 0;
}

int mmds_store_patch(struct mmds_store *s, const json_t *patch, ember_err *e)
{
	if (!s->data) {
		err_set(e, MSG_NOT_INITIALIZED);
		return MMDS_STORE_INVALID;
	}
	/* Merge into a copy, so a result over the limit leaves the store as is. */
	json_t *next = mmds_json_merge(json_deep_copy(s->data), patch);
	if (!next) {
		err_set(e, "MMDS error: out of memory");
		return MMDS_STORE_INVALID;
	}
	int rc = check_size(s, next, e);
	if (rc) {
		json_decref(next);
		return rc;
	}
	json_decref(s->data);
	s->data = next;
	return 0;
}

char *mmds_store_dump(const struct mmds_store *s)
{
	if (!s->data || json_is_null(s->data))
		return strdup("{}");
	struct mmds_buf b = {0};
	mmds_json_dump(s->data, &b);
	if (b.failed || !b.data) {
		mmds_buf_free(&b);
		return NULL;
	}
	return b.data;
}

size_t mmds_path_sanitize(char *path, size_t len)
{
	size_t w = 0;
	for (size_t r = 0; r < len; r++)
		if (path[r] != '/' || !w || path[w - 1] != '/')
			path[w++] = path[r];
	return w;
}

/* IMDS text: only strings and objects have one. */
static enum mmds_lookup format_imds(const json_t *v, struct mmds_buf *out)
{
	if (json_is_string(v)) {
		mmds_buf_add(out, json_string_value(v), json_string_length(v));
		return MMDS_FOUND;
	}
	if (!json_is_object(v))
		return MMDS_UNSUPPORTED;
	struct mmds_json_member *m;
	size_t n;
	if (mmds_json_members(v, &m, &n)) {
		out->failed = true;
		return MMDS_FOUND;
	}
	for (size_t i = 0; i < n; i++) {
		if (i)
			mmds_buf_addc(out, '\n');
		mmds_buf_add(out, m[i].key, m[i].key_len);
		if (json_is_object(m[i].value))
			mmds_buf_addc(out, '/');
	}
	free(m);
	return MMDS_FOUND;
}

enum mmds_lookup mmds_store_get(const struct mmds_store *s, const char *path, size_t len,
				enum mmds_format fmt, struct mmds_buf *out)
{
	char *p = malloc(len + 1);
	if (!p) {
		out->failed = true;
		return MMDS_NOT_FOUND;
	}
	memcpy(p, path, len);
	len = mmds_path_sanitize(p, len);
	/* A pointer splits on "/": "/a/" would look up the key "" in a. */
	if (len && p[len - 1] == '/')
		len--;
	/* Before any PUT the store is null, as in Firecracker: the root exists. */
	const json_t *v = mmds_json_pointer(s->data ? s->data : json_null(), p, len);
	free(p);
	if (!v)
		return MMDS_NOT_FOUND;
	if (fmt == MMDS_FORMAT_IMDS)
		return format_imds(v, out);
	mmds_json_dump(v, out);
	return MMDS_FOUND;
}
