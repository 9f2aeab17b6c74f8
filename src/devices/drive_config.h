/* Firecracker's Drive object (PUT /drives/{id}, the config file's "drives")
 * and PartialDrive (PATCH /drives/{id}), parsed strictly, and the JSON view
 * GET /vm/config shows. Also the root= kernel argument a root drive adds.
 *
 * Null is accepted where Firecracker's serde accepts it (the Option fields:
 * partuuid, is_read_only, path_on_host, rate_limiter, io_engine, socket).
 * See docs/block.md. */
#ifndef EMBER_DRIVE_CONFIG_H
#define EMBER_DRIVE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "devices/rate_limiter.h"
#include "util/err.h"

/* Unsafe (the default): FLUSH is not offered, and a FLUSH is acknowledged
 * without syncing. Writeback: FLUSH is offered and runs fdatasync. */
enum drive_cache_type { DRIVE_CACHE_UNSAFE = 0, DRIVE_CACHE_WRITEBACK };
/* Sync (the default): blocking preadv/pwritev on the VMM thread. Async:
 * io_uring. */
enum drive_io_engine { DRIVE_IO_SYNC = 0, DRIVE_IO_ASYNC };

struct drive_config {
	char *drive_id;
	char *path_on_host;
	char *partuuid; /* NULL if none */
	bool is_root_device;
	bool is_read_only;
	enum drive_cache_type cache_type;
	enum drive_io_engine io_engine;
	struct rate_limiter_config rate_limiter;
};

/* PartialDrive: what PATCH may change once the microVM runs. */
struct drive_patch {
	char *drive_id;
	char *path_on_host; /* NULL: keep the file */
	/* Buckets absent here keep their state (rate_limiter.h). */
	struct rate_limiter_config rate_limiter;
};

const char *drive_cache_type_name(enum drive_cache_type t);
const char *drive_io_engine_name(enum drive_io_engine t);

/* Parses a Drive object. On success *out is replaced (the old contents are
 * freed); on failure it is left alone. Refuses "socket" (vhost-user). */
int drive_config_parse(json_t *j, struct drive_config *out, ember_err *e);
/* Deep copy; -1 only when out of memory. */
int drive_config_copy(struct drive_config *dst, const struct drive_config *src, ember_err *e);
void drive_config_free(struct drive_config *c);
/* GET /vm/config's view, every field present as in Firecracker:
 * {"drive_id", "partuuid", "is_root_device", "cache_type", "is_read_only",
 *  "path_on_host", "rate_limiter", "io_engine", "socket": null}.
 * New reference, NULL when out of memory. */
json_t *drive_config_json(const struct drive_config *c);

int drive_patch_parse(json_t *j, struct drive_patch *out, ember_err *e);
void drive_patch_free(struct drive_patch *p);
/* The config after a PATCH (path and rate-limiter buckets); -1 only when
 * out of memory. */
int drive_config_apply_patch(struct drive_config *c, const struct drive_patch *p, ember_err *e);

/* The drives configured before boot, in attach order: drive i becomes
 * /dev/vd<a+i>. */
struct drive_list {
	struct drive_config *v;
	size_t n;
};

/* PUT /drives/{id} (and each entry of the config file's "drives"), with
 * Firecracker's BlockBuilder rules: a drive whose id exists replaces it in
 * place; there is at most one root device, and it is kept first so that it
 * is /dev/vda (a new root goes to the front; a drive that becomes the root
 * swaps places with the first). On success the list owns *d's contents and
 * *d is zeroed; on failure *d is untouched. */
int drive_list_put(struct drive_list *l, struct drive_config *d, ember_err *e);
struct drive_config *drive_list_find(const struct drive_list *l, const char *drive_id);
void drive_list_free(struct drive_list *l);
/* GET /vm/config's "drives" array. New reference, NULL when out of memory. */
json_t *drive_list_json(const struct drive_list *l);

/* The kernel command-line fragment Firecracker appends for the root drive,
 * "root=/dev/vda rw", "root=/dev/vda ro" or "root=PARTUUID=<partuuid> rw|ro",
 * written to buf (an empty string when no drive is the root). The VMM must
 * attach the root drive first so that it is /dev/vda, as Firecracker does.
 * Returns the length, or -1 with e set if two drives claim to be the root
 * or buf is too small. */
int drive_root_cmdline(const struct drive_config *drives, size_t n, char *buf, size_t size,
		       ember_err *e);

#endif
