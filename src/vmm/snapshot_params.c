#include "vmm/snapshot_params.h"

#include <stdlib.h>
#include <string.h>

#include "util/json_strict.h"

static char *dup_path(const char *what, const char *s, ember_err *e)
{
	if (!*s) {
		err_set(e, "%s: the path is empty", what);
		return NULL;
	}
	char *d = strdup(s);
	if (!d)
		err_set(e, "out of memory");
	return d;
}

struct create_view {
	const char *snapshot_type, *snapshot_path, *mem_file_path;
	json_t *version; /* Firecracker's older clients send it; ignored */
};

int snapshot_create_params_parse(json_t *j, struct snapshot_create_params *out, ember_err *e)
{
	static const struct jfield f[] = {
		JFIELD(struct create_view, snapshot_type, JF_STRING, false),
		JFIELD(struct create_view, snapshot_path, JF_STRING, true),
		JFIELD(struct create_view, mem_file_path, JF_STRING, true),
	};
	struct create_view v = {0};
	memset(out, 0, sizeof(*out));
	if (json_strict_parse("snapshot/create", j, f, sizeof(f) / sizeof(f[0]), &v, e))
		return -1;
	if (!v.snapshot_type || !strcmp(v.snapshot_type, "Full"))
		out->type = SNAPSHOT_FULL;
	else if (!strcmp(v.snapshot_type, "Diff"))
		out->type = SNAPSHOT_DIFF;
	else
		return err_set(e, "snapshot/create: snapshot_type: unknown variant `%s`, expected "
			       "`Full` or `Diff`", v.snapshot_type);
	out->snapshot_path = dup_path("snapshot_path", v.snapshot_path, e);
	if (out->snapshot_path)
		out->mem_file_path = dup_path("mem_file_path", v.mem_file_path, e);
	if (!out->mem_file_path) {
		snapshot_create_params_free(out);
		return -1;
	}
	return 0;
}

void snapshot_create_params_free(struct snapshot_create_params *p)
{
	free(p->snapshot_path);
	free(p->mem_file_path);
	memset(p, 0, sizeof(*p));
}

struct backend_view {
	const char *backend_type, *backend_path;
};

struct override_view {
	const char *iface_id, *host_dev_name;
};

struct vsock_override_view {
	const char *uds_path;
};

/* VsockOverride {"uds_path"}: the path is checked as PUT /vsock's. */
static int parse_vsock_override(json_t *o, struct snapshot_load_params *out, ember_err *e)
{
	static const struct jfield f[] = {
		JFIELD(struct vsock_override_view, uds_path, JF_STRING, true),
	};
	struct vsock_override_view v = {0};
	if (json_strict_parse("vsock_override", o, f, 1, &v, e))
		return -1;
	out->vsock_uds_path = strdup(v.uds_path);
	return out->vsock_uds_path ? 0 : err_set(e, "out of memory");
}

struct load_view {
	const char *snapshot_path, *mem_file_path, *huge_pages;
	json_t *mem_backend, *network_overrides, *vsock_override;
	int enable_diff_snapshots, track_dirty_pages, resume_vm, clock_realtime;
};

static int parse_overrides(json_t *arr, struct snapshot_load_params *out, ember_err *e)
{
	static const struct jfield f[] = {
		JFIELD(struct override_view, iface_id, JF_STRING, true),
		JFIELD(struct override_view, host_dev_name, JF_STRING, true),
	};
	if (json_array_size(arr) > SNAPSHOT_MAX_OVERRIDES)
		return err_set(e, "network_overrides: more than %d entries", SNAPSHOT_MAX_OVERRIDES);
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		struct override_view v = {0};
		if (json_strict_parse("network_overrides", o, f, 2, &v, e))
			return -1;
		if (!json_id_valid(v.iface_id))
			return err_set(e, "network_overrides: iface_id `%s` is not a valid id",
				       v.iface_id);
		struct net_override *n = &out->net_overrides[out->nr_net_overrides++];
		n->iface_id = strdup(v.iface_id);
		n->host_dev_name = strdup(v.host_dev_name);
		if (!n->iface_id || !n->host_dev_name)
			return err_set(e, "out of memory");
	}
	return 0;
}

int snapshot_load_params_parse(json_t *j, struct snapshot_load_params *out, ember_err *e)
{
	static const struct jfield f[] = {
		JFIELD(struct load_view, snapshot_path, JF_STRING, true),
		JFIELD(struct load_view, mem_file_path, JF_STRING, false),
		JFIELD(struct load_view, mem_backend, JF_OBJECT, false),
		JFIELD(struct load_view, network_overrides, JF_ARRAY, false),
		JFIELD(struct load_view, vsock_override, JF_OBJECT, false),
		JFIELD(struct load_view, huge_pages, JF_STRING, false),
		JFIELD(struct load_view, enable_diff_snapshots, JF_BOOL, false),
		JFIELD(struct load_view, track_dirty_pages, JF_BOOL, false),
		JFIELD(struct load_view, resume_vm, JF_BOOL, false),
		JFIELD(struct load_view, clock_realtime, JF_BOOL, false),
	};
	static const struct jfield bf[] = {
		JFIELD(struct backend_view, backend_type, JF_STRING, true),
		JFIELD(struct backend_view, backend_path, JF_STRING, true),
	};
	struct load_view v = {0};
	memset(out, 0, sizeof(*out));
	if (json_strict_parse("snapshot/load", j, f, sizeof(f) / sizeof(f[0]), &v, e))
		return -1;
	/* Firecracker's words for these two. */
	if (v.mem_backend && v.mem_file_path)
		return err_set(e, "too many fields: either `mem_backend` or `mem_file_path` "
			       "exclusively is required");
	if (!v.mem_backend && !v.mem_file_path)
		return err_set(e, "missing field: either `mem_backend` or `mem_file_path` is "
			       "required");
	if (v.clock_realtime == 1)
		return err_set(e, "snapshot/load: clock_realtime is not supported by Ember yet");
	/* Firecracker's SnapshotLoadHugePageConfig: "Snapshot" (the default)
	 * keeps what the snapshot's machine config says. */
	if (v.huge_pages && strcmp(v.huge_pages, "Snapshot")) {
		out->has_huge_pages = true;
		if (!strcmp(v.huge_pages, "None"))
			out->huge_pages = HUGE_PAGES_NONE;
		else if (!strcmp(v.huge_pages, "Transparent"))
			out->huge_pages = HUGE_PAGES_TRANSPARENT;
		else if (!strcmp(v.huge_pages, "2M"))
			out->huge_pages = HUGE_PAGES_2M;
		else
			return err_set(e, "huge_pages: unknown variant `%s`, expected one of "
				       "`Snapshot`, `None`, `Transparent`, `2M`", v.huge_pages);
	}
	const char *path = v.mem_file_path;
	out->backend_type = MEM_BACKEND_FILE;
	if (v.mem_backend) {
		struct backend_view b = {0};
		if (json_strict_parse("mem_backend", v.mem_backend, bf, 2, &b, e))
			return -1;
		if (!strcmp(b.backend_type, "File"))
			out->backend_type = MEM_BACKEND_FILE;
		else if (!strcmp(b.backend_type, "Uffd"))
			out->backend_type = MEM_BACKEND_UFFD;
		else
			return err_set(e, "mem_backend: backend_type: unknown variant `%s`, "
				       "expected `File` or `Uffd`", b.backend_type);
		path = b.backend_path;
	}
	out->track_dirty_pages = v.track_dirty_pages == 1 || v.enable_diff_snapshots == 1;
	out->resume_vm = v.resume_vm == 1;
	out->snapshot_path = dup_path("snapshot_path", v.snapshot_path, e);
	if (out->snapshot_path)
		out->backend_path = dup_path("backend_path", path, e);
	if (!out->backend_path ||
	    (v.network_overrides && parse_overrides(v.network_overrides, out, e)) ||
	    (v.vsock_override && parse_vsock_override(v.vsock_override, out, e))) {
		snapshot_load_params_free(out);
		return -1;
	}
	return 0;
}

void snapshot_load_params_free(struct snapshot_load_params *p)
{
	free(p->snapshot_path);
	free(p->backend_path);
	free(p->vsock_uds_path);
	for (size_t i = 0; i < p->nr_net_overrides; i++) {
		free(p->net_overrides[i].iface_id);
		free(p->net_overrides[i].host_dev_name);
	}
	memset(p, 0, sizeof(*p));
}
