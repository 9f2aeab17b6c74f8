/* Snapshots of a VM (docs/snapshot-format.md): its state as JSON for the
 * state file (vmm/snapshot_file.h), its memory file, and the state applied
 * to a VM rebuilt by vmm_restore (builder.c). */
#ifndef EMBER_SNAPSHOT_H
#define EMBER_SNAPSHOT_H

#include <stddef.h>

#include <jansson.h>

#include "util/err.h"
#include "vmm/dirty.h"
#include "vmm/vmm.h"

/* The VM must be paused. KVM's vCPU and VM state, every device's state
 * (devices finish their work in flight first), the legacy devices and the
 * memory layout. */
json_t *vmm_save_state(struct vmm *m, ember_err *e);
/* Applies a saved state to a VM just rebuilt from the same config, its
 * vCPUs created but not started. */
int vmm_restore_state(struct vmm *m, json_t *state, ember_err *e);
/* Guest memory, region after region, to path (replaced atomically); with
 * dirty, only those pages, into a sparse file of the memory's size. */
int vmm_write_memory(struct vmm *m, const char *path, const struct dirty_map *dirty,
		     ember_err *e);

/* Writing a file whole or not at all: a temporary file next to path
 * (tmp gets its name), then fsync and rename over path (the temporary is
 * removed on failure). */
int snapshot_tmp_create(const char *path, char *tmp, size_t size, ember_err *e);
int snapshot_tmp_commit(int fd, const char *tmp, const char *path, ember_err *e);

#endif
