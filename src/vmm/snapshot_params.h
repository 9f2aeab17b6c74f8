/* The bodies of PUT /snapshot/create and PUT /snapshot/load, as
 * Firecracker's SnapshotCreateParams and SnapshotLoadParams (with its
 * deprecated mem_file_path and enable_diff_snapshots). */
#ifndef EMBER_SNAPSHOT_PARAMS_H
#define EMBER_SNAPSHOT_PARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "util/err.h"
#include "vmm/config.h"

enum snapshot_type { SNAPSHOT_FULL, SNAPSHOT_DIFF };
enum mem_backend_type { MEM_BACKEND_FILE, MEM_BACKEND_UFFD };

struct snapshot_create_params {
	enum snapshot_type type;
	char *snapshot_path;
	char *mem_file_path;
};

#define SNAPSHOT_MAX_OVERRIDES 16

struct net_override {
	char *iface_id;
	char *host_dev_name;
};

struct snapshot_load_params {
	char *snapshot_path;
	enum mem_backend_type backend_type;
	char *backend_path;
	bool track_dirty_pages;
	bool resume_vm;
	struct net_override net_overrides[SNAPSHOT_MAX_OVERRIDES];
	size_t nr_net_overrides;
	char *vsock_uds_path; /* vsock_override's uds_path, or NULL */
	/* huge_pages: the snapshot's own (false, Firecracker's "Snapshot",
	 * the default) or this one. */
	bool has_huge_pages;
	enum huge_pages huge_pages;
};

int snapshot_create_params_parse(json_t *j, struct snapshot_create_params *out, ember_err *e);
void snapshot_create_params_free(struct snapshot_create_params *p);
int snapshot_load_params_parse(json_t *j, struct snapshot_load_params *out, ember_err *e);
void snapshot_load_params_free(struct snapshot_load_params *p);

#endif
