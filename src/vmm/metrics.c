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

/* ---- The VMM-wide groups, in struct metrics ---- */

#define PLAIN(gname, list)                                                              \
	{offsetof(struct metrics, gname),                                                \
	 (const struct metrics_group)METRICS_GROUP(#gname, list, struct gname##_metrics)}

static const struct {
	size_t off;
	struct metrics_group g;
} groups[] = {
	PLAIN(api_server, METRICS_API_SERVER),
	PLAIN(deprecated_api, METRICS_DEPRECATED_API),
	PLAIN(get_api_requests, METRICS_GET_API_REQUESTS),
	PLAIN(latencies_us, METRICS_LATENCIES_US),
	PLAIN(logger, METRICS_LOGGER),
	PLAIN(patch_api_requests, METRICS_PATCH_API_REQUESTS),
	PLAIN(put_api_requests, METRICS_PUT_API_REQUESTS),
	PLAIN(seccomp, METRICS_SECCOMP),
	PLAIN(vcpu, METRICS_VCPU),
	PLAIN(vmm, METRICS_VMM),
	PLAIN(signals, METRICS_SIGNALS),
	PLAIN(interrupts, METRICS_INTERRUPTS),
};

/* The legacy devices and MMDS, whose groups their own headers declare. */
static const struct {
	size_t off;
	const struct metrics_group *g;
} device_groups[] = {
	{offsetof(struct metrics, i8042), &i8042_metrics_group},
	{offsetof(struct metrics, uart), &uart_metrics_group},
	{offsetof(struct metrics, mmds), &mmds_metrics_group},
};

/* ---- Flushing ---- */

static int put(json_t *obj, const char *key, json_t *v)
{
	return v ? json_object_set_new(obj, key, v) : -1;
}

static json_t *json_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
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
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]) && !rc; i++)
		rc = put(out, groups[i].g.name,
			 metrics_group_json((char *)m + groups[i].off, &groups[i].g, NULL));
	for (size_t i = 0; i < sizeof(device_groups) / sizeof(device_groups[0]) && !rc; i++)
		rc = put(out, device_groups[i].g->name,
			 metrics_group_json((char *)m + device_groups[i].off, device_groups[i].g,
					    NULL));
	if (!rc)
		rc = metrics_devices_json(&m->devices, out);
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
	metrics_devices_init(&m->devices);
}

void metrics_destroy(struct metrics *m)
{
	metrics_devices_destroy(&m->devices);
	free(m->instance_id);
	json_decref(m->properties);
	pthread_mutex_destroy(&m->lock);
	memset(m, 0, sizeof(*m));
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
 * pipe has F_GETPIPE_SZ / page slots of one page each, and bytes do not
 * pack into them: a write fills new slots whole and merges at most its
 * last page's worth into the previous slot if that has room, so a line of
 * 4375 bytes takes one slot or two (measured: counting unread / page slots
 * let a write come up short). The unread bytes are lines of about
 * line_len bytes each: count them, give each the slots such a line may
 * take, plus one for a partly read head.
 */
static bool pipe_has_room(int fd, size_t len, size_t line_len)
{
	int size = fcntl(fd, F_GETPIPE_SZ);
	int unread = 0;
	long page = sysconf(_SC_PAGESIZE);
	if (size <= 0 || page <= 0 || ioctl(fd, FIONREAD, &unread) || unread < 0 || !len ||
	    !line_len)
		return true; /* can't tell: let the write decide */
	size_t slots = (size_t)size / (size_t)page;
	size_t per_line = (line_len + (size_t)page - 1) / (size_t)page;
	size_t lines = ((size_t)unread + line_len - 1) / line_len;
	size_t used = unread ? lines * per_line + 1 : 0;
	return used + (len + (size_t)page - 1) / (size_t)page <= slots;
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
	if (s->fifo && !pipe_has_room(s->fd, total, s->last_len ? s->last_len + 1 : total))
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
	if (s->fifo && !pipe_has_room(s->fd, expect, s->last_len ? s->last_len + 1 : expect)) {
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
