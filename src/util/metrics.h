/* Counters in Firecracker's metrics format, for every module: the counter
 * kinds, the description of a group of counters (generated from an X-list
 * so each member is named as its JSON field), a group's JSON at a flush,
 * and per-device counter sets ("block_<id>", summed into "block"). The
 * VMM-wide groups, the flush and the sink are vmm/metrics.h's.
 *
 * Two kinds of counters, as in Firecracker:
 *  - struct metric_inc (SharedIncMetric): bumped from any thread; a flush
 *    reports the increase since the previous flush.
 *  - struct metric_store (SharedStoreMetric): set to a value; a flush reports
 *    the value itself.
 * Bumping is a relaxed atomic add, so vCPU and device threads need no lock. */
#ifndef EMBER_UTIL_METRICS_H
#define EMBER_UTIL_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"

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
/* The CPU time of the whole process (CLOCK_PROCESS_CPUTIME_ID) in
 * microseconds: the boot timer's cpu_us. */
uint64_t metrics_process_cpu_us(void);

/* ---- Groups ---- */

/* The member for X-list entry X(a, kind, name). */
#define METRICS_MEMBER(a, kind, name) struct metric_##kind name;

enum metrics_field_kind { METRICS_FIELD_inc, METRICS_FIELD_store, METRICS_FIELD_latency };

struct metrics_field {
	const char *name;
	size_t off;
	enum metrics_field_kind kind;
};

/* A group of counters: a struct made of METRICS_MEMBERs, reported as one
 * JSON object named `name`. */
struct metrics_group {
	const char *name;
	size_t size;
	const struct metrics_field *fields;
	size_t n;
	/* Per-device sets of a kind with one device per VM: only "<name>" is
	 * reported (Firecracker's "entropy", "vsock", "balloon"). */
	bool single;
};

#define METRICS_FIELD_DESC(type, kind, name) {#name, offsetof(type, name), METRICS_FIELD_##kind},
#define METRICS_FIELD_ONE(type, kind, name) +1
/* The struct metrics_group of counter struct `type` built from `list`. */
#define METRICS_GROUP_FIELDS(gname, list, type)                                            \
	.name = gname, .size = sizeof(type),                                               \
	.fields = (const struct metrics_field[]){list(METRICS_FIELD_DESC, type)},          \
	.n = 0 list(METRICS_FIELD_ONE, type)
#define METRICS_GROUP(gname, list, type) {METRICS_GROUP_FIELDS(gname, list, type)}
#define METRICS_SINGLE_GROUP(gname, list, type)                                            \
	{METRICS_GROUP_FIELDS(gname, list, type), .single = true}

/* One group's object at a flush: every increment as its delta since the
 * previous flush (whose baseline this advances). With agg, each delta is
 * also added to the set at agg (the sum over a kind's devices). NULL if out
 * of memory. */
json_t *metrics_group_json(void *base, const struct metrics_group *g, void *agg);

/* ---- Per-device counter sets ---- */

/* Longest device id accepted for a per-device set. */
#define METRICS_MAX_ID 256
/* Device kinds with per-device sets. */
#define METRICS_MAX_DEVICE_KINDS 16

struct metrics_dev;

struct metrics_devices {
	pthread_mutex_t lock;
	struct {
		const struct metrics_group *g;
		struct metrics_dev *list; /* sorted by id, as Firecracker's BTreeMap */
	} kind[METRICS_MAX_DEVICE_KINDS];
	size_t n;
};

void metrics_devices_init(struct metrics_devices *d);
void metrics_devices_destroy(struct metrics_devices *d);
/* Makes the kind's sum ("<name>") part of every flush, devices or not, as
 * Firecracker reports "block" and "net" with no drive or interface. */
int metrics_devices_add_kind(struct metrics_devices *d, const struct metrics_group *g,
			     ember_err *e);
/* The counter set (g->size bytes, zeroed at first) of device `id` of kind
 * g, reported as "<name>_<id>". Registering an id again returns the same
 * set (Firecracker keeps a device's counters by id) and takes a reference;
 * unregister drops one and frees the set with the last, after which the
 * device must not touch it. NULL and e set if the id is empty, too long or
 * not UTF-8. */
void *metrics_device_register(struct metrics_devices *d, const struct metrics_group *g,
			      const char *id, ember_err *e);
void metrics_device_unregister(struct metrics_devices *d, const struct metrics_group *g,
			       const char *id);
/* Adds every kind's per-device objects and sums to out; -1 if out of memory. */
int metrics_devices_json(struct metrics_devices *d, json_t *out);

#endif
