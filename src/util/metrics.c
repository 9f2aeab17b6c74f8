#include "util/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void metric_latency_record(struct metric_latency *l, uint64_t us)
{
	metric_add(&l->sum_us, us);
	/* 0 means "nothing recorded yet", as in Firecracker. */
	uint64_t cur = metric_get(&l->min_us);
	while ((cur == 0 || us < cur) &&
	       !atomic_compare_exchange_weak_explicit(&l->min_us.value, &cur, us,
						      memory_order_relaxed, memory_order_relaxed))
		;
	cur = metric_get(&l->max_us);
	while (us > cur &&
	       !atomic_compare_exchange_weak_explicit(&l->max_us.value, &cur, us,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

static uint64_t clock_us(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t metrics_mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

uint64_t metrics_utc_ms(void)
{
	return clock_us(CLOCK_REALTIME) / 1000;
}

uint64_t metrics_process_cpu_us(void)
{
	return clock_us(CLOCK_PROCESS_CPUTIME_ID);
}

/* ---- Flushing a group ---- */

/* JSON integers are signed 64-bit; no counter gets near that. */
static json_t *json_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* Returns the increase since the last flush and makes it the baseline. */
static uint64_t inc_take(struct metric_inc *m)
{
	uint64_t now = metric_count(m);
	uint64_t delta = now - m->flushed;
	m->flushed = now;
	return delta;
}

static int put(json_t *obj, const char *key, json_t *v)
{
	return v ? json_object_set_new(obj, key, v) : -1;
}

static json_t *latency_json(struct metric_latency *l, struct metric_latency *agg)
{
	uint64_t sum = inc_take(&l->sum_us);
	if (agg)
		metric_add(&agg->sum_us, sum);
	return json_pack("{s:o, s:o, s:o}", "min_us", json_u64(metric_get(&l->min_us)),
			 "max_us", json_u64(metric_get(&l->max_us)), "sum_us", json_u64(sum));
}

/* As Firecracker builds "block" and "net" from the devices' sets: the
 * increments summed, the latency min/max left at 0. */
json_t *metrics_group_json(void *base, const struct metrics_group *g, void *agg)
{
	json_t *obj = json_object();
	int rc = obj ? 0 : -1;
	for (size_t i = 0; i < g->n && !rc; i++) {
		const struct metrics_field *f = &g->fields[i];
		void *p = (char *)base + f->off;
		void *a = agg ? (char *)agg + f->off : NULL;
		json_t *v;
		if (f->kind == METRICS_FIELD_inc) {
			uint64_t d = inc_take(p);
			if (a)
				metric_add(a, d);
			v = json_u64(d);
		} else if (f->kind == METRICS_FIELD_store) {
			v = json_u64(metric_get(p));
		} else {
			v = latency_json(p, a);
		}
		rc = put(obj, f->name, v);
	}
	if (rc) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

/* ---- Per-device sets ---- */

struct metrics_dev {
	struct metrics_dev *next;
	unsigned refs;
	char *id;
	_Alignas(max_align_t) unsigned char c[]; /* the group's counter struct */
};

void metrics_devices_init(struct metrics_devices *d)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
}

void metrics_devices_destroy(struct metrics_devices *d)
{
	for (size_t k = 0; k < d->n; k++) {
		struct metrics_dev *v = d->kind[k].list;
		while (v) {
			struct metrics_dev *next = v->next;
			free(v->id);
			free(v);
			v = next;
		}
	}
	pthread_mutex_destroy(&d->lock);
	memset(d, 0, sizeof(*d));
}

/* The kind's index, added if new; -1 if the table is full. Under the lock. */
static int kind_index(struct metrics_devices *d, const struct metrics_group *g)
{
	for (size_t k = 0; k < d->n; k++)
		if (d->kind[k].g == g)
			return (int)k;
	if (d->n == METRICS_MAX_DEVICE_KINDS)
		return -1;
	d->kind[d->n].g = g;
	d->kind[d->n].list = NULL;
	return (int)d->n++;
}

int metrics_devices_add_kind(struct metrics_devices *d, const struct metrics_group *g,
			     ember_err *e)
{
	pthread_mutex_lock(&d->lock);
	int k = kind_index(d, g);
	pthread_mutex_unlock(&d->lock);
	return k < 0 ? err_set(e, "metrics: more than %d device kinds", METRICS_MAX_DEVICE_KINDS)
		     : 0;
}

static int id_check(const char *what, const char *id, ember_err *e)
{
	size_t len = strnlen(id, METRICS_MAX_ID + 1);
	if (len == 0)
		return err_set(e, "metrics: empty %s", what);
	if (len > METRICS_MAX_ID)
		return err_set(e, "metrics: %s longer than %d bytes", what, METRICS_MAX_ID);
	/* It becomes a JSON key, which jansson only takes as UTF-8. */
	json_t *probe = json_string(id);
	if (!probe)
		return err_set(e, "metrics: %s is not UTF-8", what);
	json_decref(probe);
	return 0;
}

void *metrics_device_register(struct metrics_devices *d, const struct metrics_group *g,
			      const char *id, ember_err *e)
{
	if (id_check("device id", id, e))
		return NULL;
	pthread_mutex_lock(&d->lock);
	struct metrics_dev *v = NULL;
	int k = kind_index(d, g);
	if (k < 0) {
		err_set(e, "metrics: more than %d device kinds", METRICS_MAX_DEVICE_KINDS);
		goto out;
	}
	struct metrics_dev **pos = &d->kind[k].list;
	int cmp = 1;
	while (*pos && (cmp = strcmp((*pos)->id, id)) < 0)
		pos = &(*pos)->next;
	if (*pos && cmp == 0) {
		v = *pos;
		v->refs++;
	} else if ((v = calloc(1, sizeof(*v) + g->size)) && (v->id = strdup(id))) {
		v->refs = 1;
		v->next = *pos;
		*pos = v;
	} else {
		free(v);
		v = NULL;
		err_set(e, "metrics: out of memory");
	}
out:
	pthread_mutex_unlock(&d->lock);
	return v ? v->c : NULL;
}

void metrics_device_unregister(struct metrics_devices *d, const struct metrics_group *g,
			       const char *id)
{
	pthread_mutex_lock(&d->lock);
	for (size_t k = 0; k < d->n; k++) {
		if (d->kind[k].g != g)
			continue;
		for (struct metrics_dev **pos = &d->kind[k].list; *pos; pos = &(*pos)->next) {
			struct metrics_dev *v = *pos;
			if (strcmp(v->id, id))
				continue;
			if (--v->refs == 0) {
				*pos = v->next;
				free(v->id);
				free(v);
			}
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
}

int metrics_devices_json(struct metrics_devices *d, json_t *out)
{
	int rc = 0;
	pthread_mutex_lock(&d->lock);
	for (size_t k = 0; k < d->n && !rc; k++) {
		const struct metrics_group *g = d->kind[k].g;
		/* The sum starts from zero each flush, so its deltas are the sums. */
		void *agg = calloc(1, g->size);
		if (!agg) {
			rc = -1;
			break;
		}
		for (struct metrics_dev *v = d->kind[k].list; v && !rc; v = v->next) {
			char key[64 + METRICS_MAX_ID];
			snprintf(key, sizeof(key), "%s_%s", g->name, v->id);
			json_t *one = metrics_group_json(v->c, g, agg);
			if (g->single)
				json_decref(one); /* its deltas are in the sum */
			else
				rc = put(out, key, one);
		}
		if (!rc)
			rc = put(out, g->name, metrics_group_json(agg, g, NULL));
		free(agg);
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}
