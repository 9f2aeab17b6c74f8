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

#include "util/err.h"

/* Firecracker flushes every 60 s once the microVM has started, once right
 * at InstanceStart, on the FlushMetrics action, and when the VMM stops. */
#define METRICS_FLUSH_PERIOD_S 60
/* Longest drive_id / iface_id accepted for a per-device set. */
#define METRICS_MAX_ID 256

struct metric_inc {
	_Atomic uint64_t count;
	uint64_t flushed; /* count at the previous flush; flush-side only */
};

struct metric_store {
	_Atomic uint64_t value;
};

/* Firecracker's LatencyAggregateMetrics: min and max are stores (kept across
 * flushes, 0 = nothing recorded yet), the sum an increment. */
struct metric_latency {
	struct metric_store min_us;
	struct metric_store max_us;
	struct metric_inc sum_us;
};

static inline void metric_add(struct metric_inc *m, uint64_t n)
{
	atomic_fetch_add_explicit(&m->count, n, memory_order_relaxed);
}

#define metric_inc(m) metric_add((m), 1)

/* For a counter kept elsewhere as a running total (the logger's lost
 * lines): makes the metric's total that value. */
static inline void metric_inc_set_total(struct metric_inc *m, uint64_t total)
{
	atomic_store_explicit(&m->count, total, memory_order_relaxed);
}

static inline uint64_t metric_count(struct metric_inc *m)
{
	return atomic_load_explicit(&m->count, memory_order_relaxed);
}

static inline void metric_set(struct metric_store *m, uint64_t v)
{
	atomic_store_explicit(&m->value, v, memory_order_relaxed);
}

static inline uint64_t metric_get(struct metric_store *m)
{
	return atomic_load_explicit(&m->value, memory_order_relaxed);
}

/* Adds one sample of `us` microseconds: sum, and min/max if it is one. */
void metric_latency_record(struct metric_latency *l, uint64_t us);
/* CLOCK_MONOTONIC in microseconds, to time what metric_latency_record takes. */
uint64_t metrics_mono_us(void);
/* CLOCK_REALTIME in milliseconds: utc_timestamp_ms. */
uint64_t metrics_utc_ms(void);

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

#define METRICS_MMDS(X, a) \
	X(a, inc, rx_accepted) \
	X(a, inc, rx_accepted_err) \
	X(a, inc, rx_accepted_unusual) \
	X(a, inc, rx_bad_eth) \
	X(a, inc, rx_invalid_token) \
	X(a, inc, rx_no_token) \
	X(a, inc, rx_count) \
	X(a, inc, tx_bytes) \
	X(a, inc, tx_count) \
	X(a, inc, tx_errors) \
	X(a, inc, tx_frames) \
	X(a, inc, connections_created) \
	X(a, inc, connections_destroyed)

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

#define METRICS_I8042(X, a) \
	X(a, inc, error_count) \
	X(a, inc, missed_read_count) \
	X(a, inc, missed_write_count) \
	X(a, inc, read_count) \
	X(a, inc, reset_count) \
	X(a, inc, write_count)

/* Firecracker's "uart": the serial port. */
#define METRICS_UART(X, a) \
	X(a, inc, error_count) \
	X(a, inc, flush_count) \
	X(a, inc, missed_read_count) \
	X(a, inc, missed_write_count) \
	X(a, inc, read_count) \
	X(a, inc, write_count)

#define METRICS_BLOCK(X, a) \
	X(a, inc, activate_fails) \
	X(a, inc, cfg_fails) \
	X(a, inc, no_avail_buffer) \
	X(a, inc, event_fails) \
	X(a, inc, execute_fails) \
	X(a, inc, invalid_reqs_count) \
	X(a, inc, flush_count) \
	X(a, inc, queue_event_count) \
	X(a, inc, rate_limiter_event_count) \
	X(a, inc, update_count) \
	X(a, inc, update_fails) \
	X(a, inc, read_bytes) \
	X(a, inc, write_bytes) \
	X(a, inc, read_count) \
	X(a, inc, write_count) \
	X(a, latency, read_agg) \
	X(a, latency, write_agg) \
	X(a, inc, rate_limiter_throttled_events) \
	X(a, inc, io_engine_throttled_events) \
	X(a, inc, remaining_reqs_count)

#define METRICS_NET(X, a) \
	X(a, inc, activate_fails) \
	X(a, inc, cfg_fails) \
	X(a, inc, mac_address_updates) \
	X(a, inc, no_rx_avail_buffer) \
	X(a, inc, no_tx_avail_buffer) \
	X(a, inc, event_fails) \
	X(a, inc, rx_queue_event_count) \
	X(a, inc, rx_event_rate_limiter_count) \
	X(a, inc, rx_rate_limiter_throttled) \
	X(a, inc, rx_tap_event_count) \
	X(a, inc, rx_bytes_count) \
	X(a, inc, rx_packets_count) \
	X(a, inc, rx_fails) \
	X(a, inc, rx_count) \
	X(a, inc, tap_read_fails) \
	X(a, inc, tap_write_fails) \
	X(a, latency, tap_write_agg) \
	X(a, inc, tx_bytes_count) \
	X(a, inc, tx_malformed_frames) \
	X(a, inc, tx_fails) \
	X(a, inc, tx_count) \
	X(a, inc, tx_packets_count) \
	X(a, inc, tx_partial_reads) \
	X(a, inc, tx_queue_event_count) \
	X(a, inc, tx_rate_limiter_event_count) \
	X(a, inc, tx_rate_limiter_throttled) \
	X(a, inc, tx_spoofed_mac_count) \
	X(a, inc, tx_remaining_reqs_count)

#define METRICS_MEMBER(a, kind, name) struct metric_##kind name;

struct api_server_metrics { METRICS_API_SERVER(METRICS_MEMBER, _) };
struct get_api_requests_metrics { METRICS_GET_API_REQUESTS(METRICS_MEMBER, _) };
struct put_api_requests_metrics { METRICS_PUT_API_REQUESTS(METRICS_MEMBER, _) };
struct patch_api_requests_metrics { METRICS_PATCH_API_REQUESTS(METRICS_MEMBER, _) };
struct deprecated_api_metrics { METRICS_DEPRECATED_API(METRICS_MEMBER, _) };
struct logger_metrics { METRICS_LOGGER(METRICS_MEMBER, _) };
struct mmds_metrics { METRICS_MMDS(METRICS_MEMBER, _) };
struct latencies_us_metrics { METRICS_LATENCIES_US(METRICS_MEMBER, _) };
struct seccomp_metrics { METRICS_SECCOMP(METRICS_MEMBER, _) };
struct signals_metrics { METRICS_SIGNALS(METRICS_MEMBER, _) };
struct vcpu_metrics { METRICS_VCPU(METRICS_MEMBER, _) };
struct interrupts_metrics { METRICS_INTERRUPTS(METRICS_MEMBER, _) };
struct vmm_metrics { METRICS_VMM(METRICS_MEMBER, _) };
struct i8042_metrics { METRICS_I8042(METRICS_MEMBER, _) };
struct uart_metrics { METRICS_UART(METRICS_MEMBER, _) };
struct block_metrics { METRICS_BLOCK(METRICS_MEMBER, _) };
struct net_metrics { METRICS_NET(METRICS_MEMBER, _) };

/* One device's counters, reported as "<prefix>_<id>" and summed into the
 * aggregate group. */
struct metrics_dev {
	struct metrics_dev *next; /* sorted by id, as Firecracker's BTreeMap */
	unsigned refs;
	char *id;
	union {
		struct block_metrics block;
		struct net_metrics net;
	} c;
};

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
	struct metrics_dev *block_devs;
	struct metrics_dev *net_devs;
	char *instance_id;    /* emitted as "id" if set (emit_id) */
	json_t *properties;   /* emitted as "properties" if set */
};

void metrics_init(struct metrics *m);
void metrics_destroy(struct metrics *m);

/* The counter set of drive `drive_id` ("block_<drive_id>") or interface
 * `iface_id` ("net_<iface_id>"). Registering an id again returns the same
 * set (Firecracker keeps a device's counters by id) and takes a reference;
 * unregister drops one and frees the set with the last, after which the
 * device must not touch it. NULL and e set if the id is empty, too long or
 * not UTF-8. */
struct block_metrics *metrics_block_register(struct metrics *m, const char *drive_id,
					     ember_err *e);
void metrics_block_unregister(struct metrics *m, const char *drive_id);
struct net_metrics *metrics_net_register(struct metrics *m, const char *iface_id, ember_err *e);
void metrics_net_unregister(struct metrics *m, const char *iface_id);

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
