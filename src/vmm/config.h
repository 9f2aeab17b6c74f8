/* One struct per configurable resource, shared by the config file and
 * (later) the API. Parsers take jansson values and reject unknown fields,
 * wrong types and out-of-range values with a message naming the field. */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "vmm/err.h"

#define DEFAULT_BOOT_ARGS "console=ttyS0 reboot=k panic=1 pci=off"
#define MAX_VCPUS 32
#define DEFAULT_VCPUS 1
#define DEFAULT_MEM_MIB 128
/* A sanity bound, far above any microVM: 1 TiB. */
#define MAX_MEM_MIB (1024 * 1024)

struct boot_source_config {
	char *kernel_image_path;
	char *initrd_path; /* NULL if none */
	char *boot_args;   /* NULL means DEFAULT_BOOT_ARGS */
};

struct machine_config {
	unsigned vcpu_count;
	unsigned mem_size_mib;
	bool smt;
	bool track_dirty_pages;
};

struct vmm_config {
	bool has_boot_source;
	struct boot_source_config boot_source;
	struct machine_config machine;
};

void config_init(struct vmm_config *c);
void config_free(struct vmm_config *c);
void boot_source_free(struct boot_source_config *b);

/* Firecracker's BootSource object. */
int config_parse_boot_source(json_t *j, struct boot_source_config *out, ember_err *e);
/* Firecracker's MachineConfiguration object. */
int config_parse_machine(json_t *j, struct machine_config *out, ember_err *e);
/* A whole Firecracker config file, from text. */
int config_parse_text(const char *text, size_t len, struct vmm_config *out, ember_err *e);
int config_load_file(const char *path, struct vmm_config *out, ember_err *e);

#endif
