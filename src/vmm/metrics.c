#include "vmm/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/json_strict.h"

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

/* ---- What each group holds, generated from the lists in metrics.h ---- */

enum field_kind { FIELD_inc, FIELD_store, FIELD_latency };

struct field_desc {
	const char *name;
	size_t off;
	enum field_kind kind;
};

#define FIELD_DESC(type, kind, name) {#name, offsetof(type, name), FIELD_##kind},
#define FIELD_ONE(type, kind, name) +1
#define FIELDS(list, type) \
	.fields = (const struct field_desc[]){list(FIELD_DESC, type)}, .n = 0 list(FIELD_ONE, type)

enum group_kind { GROUP_PLAIN, GROUP_BLOCK, GROUP_NET };

struct group_desc {
	const char *name;
	enum group_kind kind;
	size_t off; /* in struct metrics, for GROUP_PLAIN */
	const struct field_desc *fields;
	size_t n;
};

#define PLAIN(gname, list) \
	{.name = #gname, .kind = GROUP_PLAIN, .off = offsetof(struct metrics, gname), \
	 FIELDS(list, struct gname##_metrics)}

/* Firecracker's order: its FirecrackerMetrics struct, with the legacy
 * devices (i8042, uart) where it flattens them in. */
static const struct group_desc groups[] = {
	PLAIN(api_server, METRICS_API_SERVER),
	{.name = "block", .kind = GROUP_BLOCK, FIELDS(METRICS_BLOCK, struct block_metrics)},
	PLAIN(deprecated_api, METRICS_DEPRECATED_API),
	PLAIN(get_api_requests, METRICS_GET_API_REQUESTS),
	PLAIN(i8042, METRICS_I8042),
	PLAIN(uart, METRICS_UART),
	PLAIN(latencies_us, METRICS_LATENCIES_US),
	PLAIN(logger, METRICS_LOGGER),
	PLAIN(mmds, METRICS_MMDS),
	{.name = "net", .kind = GROUP_NET, FIELDS(METRICS_NET, struct net_metrics)},
	PLAIN(patch_api_requests, METRICS_PATCH_API_REQUESTS),
	PLAIN(put_api_requests, METRICS_PUT_API_REQUESTS),
	PLAIN(seccomp, METRICS_SECCOMP),
	PLAIN(vcpu, METRICS_VCPU),
	PLAIN(vmm, METRICS_VMM),
	PLAIN(signals, METRICS_SIGNALS),
	PLAIN(interrupts, METRICS_INTERRUPTS),
};

/* ---- Flushing ---- */

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

/* One group's object. With agg (a device set), each field's delta is also
 * added to the aggregate set, as Firecracker builds "block" and "net": the
 * increments summed, the latency min/max left at 0. */
static json_t *group_json(void *base, const struct group_desc *g, void *agg)
{
	json_t *obj = json_object();
	int rc = obj ? 0 : -1;
	for (size_t i = 0; i < g->n && !rc; i++) {
		const struct field_desc *f = &g->fields[i];
		void *p = (char *)base + f->off;
		void *a = agg ? (char *)agg + f->off : NULL;
		json_t *v;
		if (f->kind == FIELD_inc) {
			uint64_t d = inc_take(p);
			if (a)
				metric_add(a, d);
			v = json_u64(d);
		} else if (f->kind == FIELD_store) {
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

static int devices_json(json_t *out, struct metrics_dev *list, const struct group_desc *g)
{
	/* The aggregate starts from zero each flush, so its deltas are the sums. */
	union {
		struct block_metrics block;
		struct net_metrics net;
	} agg;
	memset(&agg, 0, sizeof(agg));
	for (struct metrics_dev *d = list; d; d = d->next) {
		char key[sizeof("block_") + METRICS_MAX_ID];
		snprintf(key, sizeof(key), "%s_%s", g->name, d->id);
		if (put(out, key, group_json(&d->c, g, &agg)))
			return -1;
	}
	return put(out, g->name, group_json(&agg, g, NULL));
}

json_t *metrics_flush_json(struct metrics *m, uint64_t utc_ms)
{
	json_t *out = json_object();
	if (!out)
		return NULL;
	pthread_mutex_lock(&m->lock);
	int rc = put(out, "utc_timestamp_ms", json_u64(utc_ms));
	if (!rc && m->instance_id)
		rc = put(out, "id", json_string(m->instance_id));
	if (!rc && m->properties)
		rc = put(out, "properties", json_deep_copy(m->properties));
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]) && !rc; i++) {
		const struct group_desc *g = &groups[i];
		if (g->kind == GROUP_BLOCK)
			rc = devices_json(out, m->block_devs, g);
		else if (g->kind == GROUP_NET)
			rc = devices_json(out, m->net_devs, g);
		else
			rc = put(out, g->name, group_json((char *)m + g->off, g, NULL));
	}
	pthread_mutex_unlock(&m->lock);
	if (rc) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* ---- Lifetime and per-device sets ---- */

void metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
}

static void devs_free(struct metrics_dev *d)
{
	while (d) {
		struct metrics_dev *next = d->next;
		free(d->id);
		free(d);
		d = next;
	}
}

void metrics_destroy(struct metrics *m)
{
	devs_free(m->block_devs);
	devs_free(m->net_devs);
	free(m->instance_id);
	json_decref(m->properties);
	pthread_mutex_destroy(&m->lock);
	memset(m, 0, sizeof(*m));
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

static struct metrics_dev *dev_register(struct metrics *m, struct metrics_dev **list,
					const char *what, const char *id, ember_err *e)
{
	if (id_check(what, id, e))
		return NULL;
	pthread_mutex_lock(&m->lock);
	struct metrics_dev **pos = list;
	int cmp = 1;
	while (*pos && (cmp = strcmp((*pos)->id, id)) < 0)
		pos = &(*pos)->next;
	struct metrics_dev *d = NULL;
	if (*pos && cmp == 0) {
		d = *pos;
		d->refs++;
	} else if ((d = calloc(1, sizeof(*d))) && (d->id = strdup(id))) {
		d->refs = 1;
		d->next = *pos;
		*pos = d;
	} else {
		free(d);
		d = NULL;
		err_set(e, "metrics: out of memory");
	}
	pthread_mutex_unlock(&m->lock);
	return d;
}

static void dev_unregister(struct metrics *m, struct metrics_dev **list, const char *id)
{
	pthread_mutex_lock(&m->lock);
	for (struct metrics_dev **pos = list; *pos; pos = &(*pos)->next) {
		struct metrics_dev *d = *pos;
		if (strcmp(d->id, id))
			continue;
		if (--d->refs == 0) {
			*pos = d->next;
			free(d->id);
			free(d);
		}
		break;
	}
	pthread_mutex_unlock(&m->lock);
}

struct block_metrics *metrics_block_register(struct metrics *m, const char *drive_id,
					     ember_err *e)
{
	struct metrics_dev *d = dev_register(m, &m->block_devs, "drive_id", drive_id, e);
	return d ? &d->c.block : NULL;
}

void metrics_block_unregister(struct metrics *m, const char *drive_id)
{
	dev_unregister(m, &m->block_devs, drive_id);
}

struct net_metrics *metrics_net_register(struct metrics *m, const char *iface_id, ember_err *e)
{
	struct metrics_dev *d = dev_register(m, &m->net_devs, "iface_id", iface_id, e);
	return d ? &d->c.net : NULL;
}

void metrics_net_unregister(struct metrics *m, const char *iface_id)
{
	dev_unregister(m, &m->net_devs, iface_id);
}

/* ---- Configuration: Firecracker's Metrics object ---- */

void metrics_config_free(struct metrics_config *c)
{
	free(c->metrics_path);
	json_decref(c->properties);
	memset(c, 0, sizeof(*c));
}

static int properties_check(json_t *props, ember_err *e)
{
	if (!json_is_object(props))
		return err_set(e, "metrics: properties: expected an object of strings");
	const char *key;
	json_t *v;
	json_object_foreach(props, key, v) {
		if (!json_is_string(v))
			return err_set(e, "metrics: properties: \"%s\": expected a string", key);
	}
	return 0;
}

int metrics_config_parse(json_t *j, struct metrics_config *out, ember_err *e)
{
	struct {
		const char *metrics_path;
		int emit_id;
		json_t *properties;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), metrics_path, JF_STRING, true),
		JFIELD(__typeof__(v), emit_id, JF_BOOL, false),
		JFIELD(__typeof__(v), properties, JF_OBJECT, false),
	};
	if (json_strict_parse("metrics", j, f, 3, &v, e) ||
	    (v.properties && properties_check(v.properties, e)))
		return -1;
	const char *path = v.metrics_path;
	size_t path_len = strlen(path);
	int emit_id = v.emit_id == 1;
	json_t *props = v.properties;
	if (path_len == 0)
		return err_set(e, "metrics: metrics_path is empty");
	if (path_len >= PATH_MAX)
		return err_set(e, "metrics: metrics_path is longer than %d bytes", PATH_MAX - 1);
	struct metrics_config c = {.metrics_path = strdup(path), .emit_id = emit_id};
	if (!c.metrics_path)
		return err_set(e, "metrics: out of memory");
	if (props)
		c.properties = json_incref(props);
	metrics_config_free(out);
	*out = c;
	return 0;
}

void metrics_apply_config(struct metrics *m, const struct metrics_config *c,
			  const char *instance_id)
{
	pthread_mutex_lock(&m->lock);
	free(m->instance_id);
	m->instance_id = c->emit_id && instance_id ? strdup(instance_id) : NULL;
	json_decref(m->properties);
	m->properties = c->properties ? json_deep_copy(c->properties) : NULL;
	pthread_mutex_unlock(&m->lock);
}

/* ---- The sink ---- */

void metrics_sink_init(struct metrics_sink *s)
{
	*s = (struct metrics_sink){.fd = -1};
}

void metrics_sink_close(struct metrics_sink *s)
{
	if (s->fd >= 0)
		close(s->fd);
	metrics_sink_init(s);
}

/*
 * Firecracker opens metrics_path with O_RDWR | O_NONBLOCK | O_CREAT. The
 * O_RDWR is for named pipes: a non-blocking write-only open of a FIFO with
 * no reader fails with ENXIO, while a read-write open succeeds at once; the
 * writes then fill the pipe (64 KiB by default) and, with no reader
 * draining it, the following flushes are lost and counted. Ember does the
 * same for FIFOs, and opens everything else write-only, appending.
 *
 * Holding the pipe open for reading as well also means a reader that goes
 * away causes no EPIPE: lines wait in the pipe for the next reader.
 */
int metrics_sink_open(struct metrics_sink *s, const char *path, ember_err *e)
{
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_APPEND | O_CLOEXEC | O_CREAT | O_NOCTTY,
		      0600);
	if (fd < 0 && errno == ENXIO)
		fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return err_set(e, "metrics: cannot open %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st)) {
		err_set(e, "metrics: cannot stat %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	bool fifo = S_ISFIFO(st.st_mode);
	if (fifo && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY) {
		/* A reader was there; reopen read-write so it may leave. */
		int rw = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (rw >= 0) {
			close(fd);
			fd = rw;
		}
	}
	metrics_sink_close(s);
	*s = (struct metrics_sink){.fd = fd, .fifo = fifo};
	return 0;
}

/*
 * Whether len more bytes surely fit in the pipe, so that a write of a line
 * longer than PIPE_BUF (which the kernel may split) is not cut short. The
 * pipe has F_GETPIPE_SZ / page slots of one page each; the unread bytes
 * fill at most unread / page + 2 of them (a partly read head, a partly
 * written tail) and len bytes need at most len / page + 1 new ones.
 */
static bool pipe_has_room(int fd, size_t len)
{
	int size = fcntl(fd, F_GETPIPE_SZ);
	int unread = 0;
	long page = sysconf(_SC_PAGESIZE);
	if (size <= 0 || page <= 0 || ioctl(fd, FIONREAD, &unread) || unread < 0)
		return true; /* can't tell: let the write decide */
	size_t slots = (size_t)size / (size_t)page;
	size_t used = unread ? (size_t)unread / (size_t)page + 2 : 0;
	size_t need = len / (size_t)page + 1;
	return used + need <= slots;
}

int metrics_sink_write_line(struct metrics_sink *s, const char *line, size_t len, ember_err *e)
{
	if (s->fd < 0)
		return err_set(e, "metrics: no metrics file configured");
	/* After a torn line, a newline first so the reader can resync. */
	struct iovec iov[3] = {
		{.iov_base = "\n", .iov_len = 1},
		{.iov_base = (void *)line, .iov_len = len},
		{.iov_base = "\n", .iov_len = 1},
	};
	struct iovec *v = s->torn ? iov : iov + 1;
	int cnt = s->torn ? 3 : 2;
	size_t lead = s->torn ? 1 : 0, total = lead + len + 1;
	if (s->fifo && !pipe_has_room(s->fd, total))
		return err_set(e, "metrics: the pipe is full, metrics dropped");
	ssize_t n;
	do
		n = writev(s->fd, v, cnt);
	while (n < 0 && errno == EINTR);
	if (n >= 0 && (size_t)n == total) {
		s->torn = false;
		return 0;
	}
	if (n < 0)
		return err_set(e, "metrics: %s, metrics dropped",
			       errno == EAGAIN ? "the pipe is full" : strerror(errno));
	/* Part of it went out: the line on the other end is cut. */
	if ((size_t)n >= lead) /* else even the resync newline did not go */
		s->torn = (size_t)n > lead;
	return err_set(e, "metrics: short write (%zd of %zu bytes), metrics dropped", n, total);
}

int metrics_write(struct metrics *m, struct metrics_sink *s, uint64_t utc_ms, ember_err *e)
{
	if (s->fd < 0)
		return 0;
	/* A line that will not fit is dropped before it is built, so the
	 * baselines stay put and its increments (and this loss) show up in
	 * the next line that does get through. Lines grow by a few bytes at
	 * most from one flush to the next; 1 KiB covers that. */
	size_t expect = (s->last_len ? s->last_len : 8192) + 1024;
	if (s->fifo && !pipe_has_room(s->fd, expect)) {
		metric_inc(&m->logger.missed_metrics_count);
		return err_set(e, "metrics: the pipe is full, metrics dropped");
	}
	json_t *j = metrics_flush_json(m, utc_ms);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text) {
		metric_inc(&m->logger.metrics_fails);
		return err_set(e, "metrics: cannot serialize the metrics");
	}
	s->last_len = strlen(text);
	int rc = metrics_sink_write_line(s, text, s->last_len, e);
	free(text);
	if (rc)
		metric_inc(&m->logger.missed_metrics_count);
	return rc;
}
