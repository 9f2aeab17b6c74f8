/* Firecracker's Drive and PartialDrive objects. */
#include "devices/drive_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json_strict.h"

const char *drive_cache_type_name(enum drive_cache_type t)
{
	return t == DRIVE_CACHE_WRITEBACK ? "Writeback" : "Unsafe";
}

const char *drive_io_engine_name(enum drive_io_engine t)
{
	return t == DRIVE_IO_ASYNC ? "Async" : "Sync";
}

/* A string field given must not be empty (it becomes a path or part of
 * the kernel command line). */
static int nonempty(const char *what, const char *key, const char *s, ember_err *e)
{
	if (s && !*s)
		return err_set(e, "%s: %s: is empty", what, key);
	return 0;
}

/* The partuuid goes into the kernel command line as root=PARTUUID=<it>: a
 * space or a quote would let it add arguments of its own. */
static int check_partuuid(const char *s, ember_err *e)
{
	for (const char *p = s; *p; p++)
		if (*p <= ' ' || *p > '~' || *p == '"')
			return err_set(e, "drive: partuuid: must be printable ASCII without spaces "
					  "or quotes");
	return 0;
}

static int parse_enum(const char *key, const char *s, const char *a, const char *b, int *out,
		      ember_err *e)
{
	if (!s)
		return 0;
	if (!strcmp(s, a))
		*out = 0;
	else if (!strcmp(s, b))
		*out = 1;
	else
		return err_set(e, "drive: %s: must be %s or %s (got \"%s\")", key, a, b, s);
	return 0;
}

/* The same rule in the config file as through the API's path. */
static int drive_id_check(const char *id, ember_err *e)
{
	if (!json_id_valid(id))
		return err_set(e, "drive: drive_id \"%s\" is invalid: use 1 to 64 letters, digits "
				  "or '_'", id);
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int drive_config_parse(json_t *j, struct drive_config *out, ember_err *e)
{
	struct {
		const char *drive_id, *partuuid, *path_on_host, *cache_type, *io_engine, *socket;
		int is_root_device, is_read_only;
		json_t *rate_limiter;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), drive_id, JF_STRING, true),
		JFIELD(__typeof__(v), partuuid, JF_STRING, false),
		JFIELD(__typeof__(v), is_root_device, JF_BOOL, true),
		JFIELD(__typeof__(v), cache_type, JF_STRING, false),
		JFIELD(__typeof__(v), is_read_only, JF_BOOL, false),
		JFIELD(__typeof__(v), path_on_host, JF_STRING, false),
		JFIELD(__typeof__(v), rate_limiter, JF_OBJECT, false),
		JFIELD(__typeof__(v), io_engine, JF_STRING, false),
		JFIELD(__typeof__(v), socket, JF_STRING, false),
	};
	if (json_strict_parse("drive", j, f, 9, &v, e))
		return -1;
	const char *id = v.drive_id, *path = v.path_on_host, *partuuid = v.partuuid;
	bool root = v.is_root_device == 1, ro = v.is_read_only == 1;
	int cache = DRIVE_CACHE_UNSAFE, engine = DRIVE_IO_SYNC;
	struct rate_limiter_config rl = {0};
	if (nonempty("drive", "drive_id", id, e) || drive_id_check(id, e) ||
	    nonempty("drive", "partuuid", partuuid, e) || (partuuid && check_partuuid(partuuid, e)) ||
	    nonempty("drive", "path_on_host", path, e) ||
	    parse_enum("cache_type", v.cache_type, "Unsafe", "Writeback", &cache, e) ||
	    parse_enum("io_engine", v.io_engine, "Sync", "Async", &engine, e))
		return -1;
	if (v.socket)
		return err_set(e, "drive: socket: vhost-user block devices are not supported by "
				  "Ember; use path_on_host");
	if (!path)
		return err_set(e, "drive: missing field \"path_on_host\"");
	if (v.rate_limiter && rate_limiter_config_parse(v.rate_limiter, &rl, e))
		return err_prefix(e, "drive");

	struct drive_config c = {
		.drive_id = strdup(id),
		.path_on_host = strdup(path),
		.partuuid = dup_or_null(partuuid),
		.is_root_device = root,
		.is_read_only = ro,
		.cache_type = (enum drive_cache_type)cache,
		.io_engine = (enum drive_io_engine)engine,
		.rate_limiter = rl,
	};
	if (!c.drive_id || !c.path_on_host || (partuuid && !c.partuuid)) {
		drive_config_free(&c);
		return err_set(e, "drive: out of memory");
	}
	drive_config_free(out);
	*out = c;
	return 0;
}

int drive_config_copy(struct drive_config *dst, const struct drive_config *src, ember_err *e)
{
	struct drive_config c = *src;
	c.drive_id = dup_or_null(src->drive_id);
	c.path_on_host = dup_or_null(src->path_on_host);
	c.partuuid = dup_or_null(src->partuuid);
	if ((src->drive_id && !c.drive_id) || (src->path_on_host && !c.path_on_host) ||
	    (src->partuuid && !c.partuuid)) {
		drive_config_free(&c);
		return err_set(e, "drive: out of memory");
	}
	*dst = c;
	return 0;
}

void drive_config_free(struct drive_config *c)
{
	free(c->drive_id);
	free(c->path_on_host);
	free(c->partuuid);
	memset(c, 0, sizeof(*c));
}

json_t *drive_config_json(const struct drive_config *c)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	bad |= json_object_set_new(o, "drive_id", json_string(c->drive_id));
	bad |= json_object_set_new(o, "partuuid",
				   c->partuuid ? json_string(c->partuuid) : json_null());
	bad |= json_object_set_new(o, "is_root_device", json_boolean(c->is_root_device));
	bad |= json_object_set_new(o, "cache_type",
				   json_string(drive_cache_type_name(c->cache_type)));
	bad |= json_object_set_new(o, "is_read_only", json_boolean(c->is_read_only));
	bad |= json_object_set_new(o, "path_on_host", json_string(c->path_on_host));
	bad |= json_object_set_new(o, "rate_limiter", rate_limiter_config_json(&c->rate_limiter));
	bad |= json_object_set_new(o, "io_engine", json_string(drive_io_engine_name(c->io_engine)));
	bad |= json_object_set_new(o, "socket", json_null());
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int drive_patch_parse(json_t *j, struct drive_patch *out, ember_err *e)
{
	struct {
		const char *drive_id, *path_on_host;
		json_t *rate_limiter;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), drive_id, JF_STRING, true),
		JFIELD(__typeof__(v), path_on_host, JF_STRING, false),
		JFIELD(__typeof__(v), rate_limiter, JF_OBJECT, false),
	};
	if (json_strict_parse("drive update", j, f, 3, &v, e))
		return -1;
	const char *id = v.drive_id, *path = v.path_on_host;
	struct rate_limiter_config rl = {0};
	if (nonempty("drive update", "drive_id", id, e) || drive_id_check(id, e) ||
	    nonempty("drive update", "path_on_host", path, e))
		return -1;
	if (v.rate_limiter && rate_limiter_config_parse(v.rate_limiter, &rl, e))
		return err_prefix(e, "drive update");
	struct drive_patch p = {.drive_id = strdup(id), .path_on_host = dup_or_null(path),
				.rate_limiter = rl};
	if (!p.drive_id || (path && !p.path_on_host)) {
		drive_patch_free(&p);
		return err_set(e, "drive update: out of memory");
	}
	drive_patch_free(out);
	*out = p;
	return 0;
}

void drive_patch_free(struct drive_patch *p)
{
	free(p->drive_id);
	free(p->path_on_host);
	memset(p, 0, sizeof(*p));
}

int drive_config_apply_patch(struct drive_config *c, const struct drive_patch *p, ember_err *e)
{
	if (p->path_on_host) {
		char *path = strdup(p->path_on_host);
		if (!path)
			return err_set(e, "drive update: out of memory");
		free(c->path_on_host);
		c->path_on_host = path;
	}
	rate_limiter_config_apply_update(&c->rate_limiter, &p->rate_limiter);
	return 0;
}

struct drive_config *drive_list_find(const struct drive_list *l, const char *drive_id)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].drive_id, drive_id))
			return &l->v[i];
	return NULL;
}

int drive_list_put(struct drive_list *l, struct drive_config *d, ember_err *e)
{
	struct drive_config *old = drive_list_find(l, d->drive_id);
	size_t pos = old ? (size_t)(old - l->v) : l->n;
	bool has_root = l->n && l->v[0].is_root_device;
	if (d->is_root_device && has_root && pos != 0)
		return err_set(e, "drive %s: a root block device already exists (drive %s)",
			       d->drive_id, l->v[0].drive_id);
	if (old) {
		drive_config_free(old);
		*old = *d;
		if (pos != 0 && d->is_root_device) {
			struct drive_config first = l->v[0];
			l->v[0] = l->v[pos];
			l->v[pos] = first;
		}
	} else {
		struct drive_config *v = realloc(l->v, (l->n + 1) * sizeof(*v));
		if (!v)
			return err_set(e, "drive %s: out of memory", d->drive_id);
		l->v = v;
		if (d->is_root_device) {
			memmove(v + 1, v, l->n * sizeof(*v));
			v[0] = *d;
		} else {
			v[l->n] = *d;
		}
		l->n++;
	}
	memset(d, 0, sizeof(*d));
	return 0;
}

void drive_list_free(struct drive_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		drive_config_free(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

json_t *drive_list_json(const struct drive_list *l)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < l->n; i++) {
		if (json_array_append_new(a, drive_config_json(&l->v[i]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int drive_root_cmdline(const struct drive_config *drives, size_t n, char *buf, size_t size,
		       ember_err *e)
{
	const struct drive_config *root = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!drives[i].is_root_device)
			continue;
		if (root)
			return err_set(e, "drives \"%s\" and \"%s\" are both the root device",
				       root->drive_id, drives[i].drive_id);
		root = &drives[i];
	}
	int len;
	if (!root)
		len = snprintf(buf, size, "%s", "");
	else if (root->partuuid)
		len = snprintf(buf, size, "root=PARTUUID=%s %s", root->partuuid,
			       root->is_read_only ? "ro" : "rw");
	else
		len = snprintf(buf, size, "root=/dev/vda %s", root->is_read_only ? "ro" : "rw");
	if (len < 0 || (size_t)len >= size)
		return err_set(e, "the root= kernel argument does not fit in %zu bytes", size);
	return len;
}
