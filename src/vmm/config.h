/* One struct per configurable resource, shared by the config file and
 * (later) the API. Parsers take jansson values and reject unknown fields,
 * wrong types and out-of-range values with a message naming the field. */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "arch/x86/cpu_template.h"

#include "devices/device.h"
#include "devices/drive_config.h"
#include "devices/net_config.h"
#include "mmds/config.h"
#include "util/json_strict.h"
#include "util/err.h"
#include "util/log.h"
#include "vmm/metrics.h"

#define DEFAULT_BOOT_ARGS "console=ttyS0 reboot=k panic=1 pci=off"
#define MAX_VCPUS 32
/* Firecracker's words for a vcpu_count it refuses. */
#define VCPU_COUNT_RULE                                                                    \
	"The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even "   \
	"number if SMT is enabled."
#define DEFAULT_VCPUS 1
#define DEFAULT_MEM_MIB 128
/* A sanity bound, far above any microVM: 1 TiB. */
#define MAX_MEM_MIB (1024 * 1024)

struct boot_source_config {
	char *kernel_image_path;
	char *initrd_path; /* NULL if none */
	char *boot_args;   /* NULL means DEFAULT_BOOT_ARGS */
};

/* Firecracker's HugePageConfig: 4 KiB pages, THP (madvise), or hugetlbfs
 * 2 MiB pages from the host's pool. */
enum huge_pages { HUGE_PAGES_NONE, HUGE_PAGES_TRANSPARENT, HUGE_PAGES_2M };

struct machine_config {
	unsigned vcpu_count;
	unsigned mem_size_mib;
	bool smt;
	bool track_dirty_pages;
	enum huge_pages huge_pages;
	/* A static template; a custom one (PUT /cpu-config) is in vmm_config. */
	enum cpu_static_template cpu_template;
};

/* A MachineConfiguration body with every field optional (PATCH), each
 * present value already checked on its own; config_update_machine checks
 * them together. */
struct machine_patch {
	bool has_vcpu_count, has_mem_size_mib, has_smt, has_track_dirty_pages, has_huge_pages,
		has_cpu_template;
	struct machine_config v;
};

/* Firecracker's Logger object: every field optional; an absent one leaves
 * that setting as it is. */
struct logger_config {
	char *log_path;
	bool has_level, has_show_level, has_show_log_origin;
	enum log_level level;
	bool show_level, show_log_origin;
	char *module;
};

#define MAX_NET_IFACES 16
/* Drives, network interfaces and any other virtio device together: one
 * GSI each, 5 to 20 (vmm/virtio_devs.h). */
#define MAX_VIRTIO_DEVICES 16

/* A device of a kind with its own config section (device_ops.config). */
struct device_config {
	const struct device_ops *ops;
	void *cfg;
};

struct vmm_config {
	bool has_boot_source;
	struct boot_source_config boot_source;
	struct machine_config machine;
	/* PUT /cpu-config or the config file's "cpu-config" (NULL: none); a
	 * static machine-config cpu_template replaces it and it replaces one. */
	struct cpu_template *cpu_custom;
	bool has_logger;
	struct logger_config logger;
	bool has_metrics;
	struct metrics_config metrics;
	bool has_mmds;
	struct mmds_config mmds;
	struct net_config net[MAX_NET_IFACES];
	size_t nr_net;
	struct drive_list drives;
	/* At most one device of each such kind. */
	struct device_config devices[MAX_VIRTIO_DEVICES];
	size_t nr_devices;
	/* PUT /serial: the guest's console goes to this file instead of
	 * stdout (NULL: stdout). API only, as Firecracker (no config-file
	 * section, not in GET /vm/config). */
	char *serial_out_path;
};

void config_init(struct vmm_config *c);
void config_free(struct vmm_config *c);
void boot_source_free(struct boot_source_config *b);

/* Firecracker's BootSource object. */
int config_parse_boot_source(json_t *j, struct boot_source_config *out, ember_err *e);
/* Firecracker's MachineConfiguration object as the update a PUT makes:
 * vcpu_count and mem_size_mib required, other fields back to their
 * defaults, except cpu_template, which an absent field leaves as it is. */
int config_parse_machine(json_t *j, struct machine_patch *out, ember_err *e);
/* A PATCH body: every field optional. */
int config_parse_machine_patch(json_t *j, struct machine_patch *out, ember_err *e);
/* Applies an update to c's machine config (and its CPU template), or
 * refuses it with Firecracker's words, changing nothing. */
int config_update_machine(struct vmm_config *c, const struct machine_patch *p, ember_err *e);
/* Sets c's custom CPU template (taking t), dropping any static one. */
void config_set_cpu_custom(struct vmm_config *c, struct cpu_template *t);
/* The config file's "cpu-config": a template object, or the path of a
 * file holding one. */
int config_parse_cpu_config(json_t *j, struct cpu_template **out, ember_err *e);
void config_machine_defaults(struct machine_config *m);
/* Checks a whole machine config as Firecracker does after a PUT or PATCH:
 * with huge pages, mem_size_mib must be a multiple of 2 (MiB). */
int config_check_machine(const struct machine_config *m, ember_err *e);
const char *huge_pages_name(enum huge_pages h);
/* JSON views, for GET /machine-config and GET /vm/config. */
json_t *config_machine_json(const struct machine_config *m);
json_t *config_boot_source_json(const struct boot_source_config *b);
/* Firecracker's SerialDevice object: *path is NULL or a new string. */
int config_parse_serial(json_t *j, char **path, ember_err *e);
int config_parse_logger(json_t *j, struct logger_config *out, ember_err *e);
void logger_config_free(struct logger_config *l);
json_t *config_logger_json(const struct logger_config *l);
json_t *metrics_config_json(const struct metrics_config *m);
/* Applies a logger config to the process's logger; -1 if log_path cannot be
 * opened (nothing changed then). */
int config_apply_logger(const struct logger_config *l, ember_err *e);
/* Index of the interface with this id in c->net, or -1. */
int config_find_net(const struct vmm_config *c, const char *iface_id);
/* Adds or replaces (same iface_id) an interface, moving *n in; Firecracker's
 * uniqueness rules for host_dev_name and guest_mac. */
int config_put_net(struct vmm_config *c, struct net_config *n, ember_err *e);
/* The config of kind ops, or NULL. */
struct device_config *config_find_device(struct vmm_config *c, const struct device_ops *ops);
/* Adds or replaces the device of kind ops, taking cfg (freed on failure). */
int config_put_device(struct vmm_config *c, const struct device_ops *ops, void *cfg, ember_err *e);
/* -1 and e set (the kind's message) if a device of the config does not fit
 * a VM of mem_size_mib (device_config_ops.check_mem). */
int config_check_devices_mem(const struct vmm_config *c, uint64_t mem_size_mib, bool mem_changed,
			     ember_err *e);
/* -1 and e set if the config has (with one more device, if adding) more
 * virtio devices than MAX_VIRTIO_DEVICES. */
int config_check_device_count(const struct vmm_config *c, bool adding, ember_err *e);
/* A whole Firecracker config file, from text. */
int config_parse_text(const char *text, size_t len, struct vmm_config *out, ember_err *e);
int config_load_file(const char *path, struct vmm_config *out, ember_err *e);

#endif
