/* Ember's metrics, in Firecracker's format: one JSON object per flush,
 *   {"utc_timestamp_ms": ..., "api_server": {...}, "block_<id>": {...},
 *    "block": {...}, ...}
 * written as one line to a file or named pipe (PUT /metrics or the config
 * file's "metrics" section). See docs/metrics.md.
 *
 * Two kinds of counters, as in Firecracker:
 *  - struct metric_inc (SharedIncMetric): bumped from any thread; a flush
 *    reports the increase since the previous flush.
 *  - struct metric_store (SharedStoreMetric): set to a value; a flush reports
 *    the value itself.
 * Bumping is a relaxed atomic add, so vCPU and device threads need no lock.
 * Flushing, the per-device lists and the sink are for one thread at a time
 * (the VMM thread); the flush takes the struct's own mutex. */
#ifndef EMBER_METRICS_H
#define EMBER_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "devices/i8042.h"
#include "devices/serial.h"
#include "mmds/metrics.h"
#include "util/err.h"
#include "util/metrics.h"

/* Firecracker flushes every 60 s once the microVM has started, once right
 * at InstanceStart, on the FlushMetrics action, and when the VMM stops. */
#define METRICS_FLUSH_PERIOD_S 60
/*
 * The groups. Each is a list X(arg, kind, name) from which both the C struct
 * and the JSON field names are generated, so a member is named exactly as
 * Firecracker names the field (src/vmm/src/logger/metrics.rs and the device
 * metrics of Firecracker 1.x), in Firecracker's order.
 */
#define METRICS_API_SERVER(X, a) \
	X(a, store, process_startup_time_us) \
	X(a, store, process_startup_time_cpu_us)

#define METRICS_GET_API_REQUESTS(X, a) \
	X(a, inc, instance_info_count) \
	X(a, inc, machine_cfg_count) \
	X(a, inc, mmds_count) \
	X(a, inc, vmm_version_count) \
	X(a, inc, hotplug_memory_count)

#define METRICS_PUT_API_REQUESTS(X, a) \
	X(a, inc, actions_count) \
	X(a, inc, actions_fails) \
	X(a, inc, boot_source_count) \
	X(a, inc, boot_source_fails) \
	X(a, inc, drive_count) \
	X(a, inc, drive_fails) \
	X(a, inc, logger_count) \
	X(a, inc, logger_fails) \
	X(a, inc, machine_cfg_count) \
	X(a, inc, machine_cfg_fails) \
	X(a, inc, cpu_cfg_count) \
	X(a, inc, cpu_cfg_fails) \
	X(a, inc, metrics_count) \
	X(a, inc, metrics_fails) \
	X(a, inc, network_count) \
	X(a, inc, network_fails) \
	X(a, inc, mmds_count) \
	X(a, inc, mmds_fails) \
	X(a, inc, vsock_count) \
	X(a, inc, vsock_fails) \
	X(a, inc, pmem_count) \
	X(a, inc, pmem_fails) \
	X(a, inc, serial_count) \
	X(a, inc, serial_fails) \
	X(a, inc, hotplug_memory_count) \
	X(a, inc, hotplug_memory_fails)

#define METRICS_PATCH_API_REQUESTS(X, a) \
	X(a, inc, drive_count) \
	X(a, inc, drive_fails) \
	X(a, inc, network_count) \
	X(a, inc, network_fails) \
	X(a, inc, machine_cfg_count) \
	X(a, inc, machine_cfg_fails) \
	X(a, inc, mmds_count) \
	X(a, inc, mmds_fails) \
	X(a, inc, hotplug_memory_count) \
	X(a, inc, hotplug_memory_fails)

#define METRICS_DEPRECATED_API(X, a) \
	X(a, inc, deprecated_http_api_calls)

#define METRICS_LOGGER(X, a) \
	X(a, inc, missed_metrics_count) \
	X(a, inc, metrics_fails) \
	X(a, inc, missed_log_count)

/* Durations in microseconds of snapshot and pause/resume operations. */
#define METRICS_LATENCIES_US(X, a) \
	X(a, store, full_create_snapshot) \
	X(a, store, diff_create_snapshot) \
	X(a, store, load_snapshot) \
	X(a, store, pause_vm) \
	X(a, store, resume_vm) \
	X(a, store, vmm_full_create_snapshot) \
	X(a, store, vmm_diff_create_snapshot) \
	X(a, store, vmm_load_snapshot) \
	X(a, store, vmm_pause_vm) \
	X(a, store, vmm_resume_vm)

#define METRICS_SECCOMP(X, a) \
	X(a, store, num_faults)

/* Deadly signals are stores (0 or 1), as in Firecracker; SIGPIPE counts. */
#define METRICS_SIGNALS(X, a) \
	X(a, store, sigbus) \
	X(a, store, sigsegv) \
	X(a, store, sigxfsz) \
	X(a, store, sigxcpu) \
	X(a, inc, sigpipe) \
	X(a, store, sighup) \
	X(a, store, sigill)

#define METRICS_VCPU(X, a) \
	X(a, inc, exit_io_in) \
	X(a, inc, exit_io_out) \
	X(a, inc, exit_mmio_read) \
	X(a, inc, exit_mmio_write) \
	X(a, inc, failures) \
	X(a, inc, kvmclock_ctrl_fails) \
	X(a, latency, exit_io_in_agg) \
	X(a, latency, exit_io_out_agg) \
	X(a, latency, exit_mmio_read_agg) \
	X(a, latency, exit_mmio_write_agg)

#define METRICS_INTERRUPTS(X, a) \
	X(a, inc, triggers) \
	X(a, inc, config_updates)

#define METRICS_VMM(X, a) \
	X(a, store, panic_count)

struct api_server_metrics { METRICS_API_SERVER(METRICS_MEMBER, _) };
struct get_api_requests_metrics { METRICS_GET_API_REQUESTS(METRICS_MEMBER, _) };
struct put_api_requests_metrics { METRICS_PUT_API_REQUESTS(METRICS_MEMBER, _) };
struct patch_api_requests_metrics { METRICS_PATCH_API_REQUESTS(METRICS_MEMBER, _) };
struct deprecated_api_metrics { METRICS_DEPRECATED_API(METRICS_MEMBER, _) };
struct logger_metrics { METRICS_LOGGER(METRICS_MEMBER, _) };
struct latencies_us_metrics { METRICS_LATENCIES_US(METRICS_MEMBER, _) };
struct seccomp_metrics { METRICS_SECCOMP(METRICS_MEMBER, _) };
struct signals_metrics { METRICS_SIGNALS(METRICS_MEMBER, _) };
struct vcpu_metrics { METRICS_VCPU(METRICS_MEMBER, _) };
struct interrupts_metrics { METRICS_INTERRUPTS(METRICS_MEMBER, _) };
struct vmm_metrics { METRICS_VMM(METRICS_MEMBER, _) };

struct metrics {
	pthread_mutex_t lock; /* flush baselines, device lists, extras */
	struct api_server_metrics api_server;
	struct get_api_requests_metrics get_api_requests;
	struct put_api_requests_metrics put_api_requests;
	struct patch_api_requests_metrics patch_api_requests;
	struct deprecated_api_metrics deprecated_api;
	struct logger_metrics logger;
	struct mmds_metrics mmds;
	struct latencies_us_metrics latencies_us;
	struct seccomp_metrics seccomp;
	struct signals_metrics signals;
	struct vcpu_metrics vcpu;
	struct interrupts_metrics interrupts;
	struct vmm_metrics vmm;
	struct i8042_metrics i8042;
	struct uart_metrics uart;
	struct metrics_devices devices; /* block_<id>, net_<id>, ... */
	char *instance_id;    /* emitted as "id" if set (emit_id) */
	json_t *properties;   /* emitted as "properties" if set */
};

void metrics_init(struct metrics *m);
void metrics_destroy(struct metrics *m);

/* The "metrics" object of PUT /metrics and of the config file. */
struct metrics_config {
	char *metrics_path;
	bool emit_id;
	json_t *properties; /* an object of strings, or NULL; owned */
};

/* Strict: metrics_path required, emit_id and properties optional, any other
 * field refused. On success *out is replaced. */
int metrics_config_parse(json_t *j, struct metrics_config *out, ember_err *e);
void metrics_config_free(struct metrics_config *c);
/* Takes the config's emit_id (with the instance id to emit) and properties
 * into the flush output. */
void metrics_apply_config(struct metrics *m, const struct metrics_config *c,
			  const char *instance_id);

/* One flush: the whole object, every increment reported as its delta since
 * the previous flush (whose baseline this advances). NULL if out of memory. */
json_t *metrics_flush_json(struct metrics *m, uint64_t utc_ms);

/* Where flushes go: a regular file (created if missing, appended to) or a
 * named pipe, never blocking. See metrics_sink_open in metrics.c. */
struct metrics_sink {
	int fd;     /* -1 when not configured */
	bool fifo;
	bool torn;  /* the last line was cut short; the next one starts with \n */
	size_t last_len; /* length of the last line built, to foresee the next */
};

void metrics_sink_init(struct metrics_sink *s);
int metrics_sink_open(struct metrics_sink *s, const char *path, ember_err *e);
void metrics_sink_close(struct metrics_sink *s);
/* Writes line (len bytes, no newline) plus '\n' whole or not at all when
 * it can tell; -1 and e set if nothing or only part was written. */
int metrics_sink_write_line(struct metrics_sink *s, const char *line, size_t len, ember_err *e);

/* A flush written to the sink: 0 when written, or when no sink is open (as
 * Firecracker, which then flushes nothing and keeps the baselines). On a
 * write that fails or would block, logger.missed_metrics_count counts it;
 * on a failure to build the JSON, logger.metrics_fails. Both return -1. */
int metrics_write(struct metrics *m, struct metrics_sink *s, uint64_t utc_ms, ember_err *e);

#endif
