#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/out_queue.h"
#include "util/sigsafe_fmt.h"

/* Lines for stderr wait in a queue that a thread of its own writes out
 * (util/out_queue.h): a stderr nobody reads must not stop the thread that
 * logs, which may be a vCPU or the VMM thread holding a device's lock. */
#define STDERR_QUEUE (64u << 10)
#define STDERR_FLUSH_IDLE_MS 1000

static struct {
	pthread_mutex_t lock;
	enum log_level level;
	bool show_level, show_origin;
	int fd;
	char id[64];
	char module[64];
	uint64_t lost;
	struct out_queue *errq;
} logger = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.level = LOG_WARN,
	.fd = STDERR_FILENO,
	.id = "anonymous-instance",
};

static __thread char thread_name[16] = "main";

static const struct {
	const char *name;
	enum log_level level;
} level_names[] = {
	{"Off", LOG_OFF},     {"Error", LOG_ERROR}, {"Warning", LOG_WARN}, {"Warn", LOG_WARN},
	{"Info", LOG_INFO},   {"Debug", LOG_DEBUG}, {"Trace", LOG_TRACE},
};

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcasecmp(s, level_names[i].name)) {
			*out = level_names[i].level;
			return 0;
		}
	}
	return -1;
}

static const char *level_label(enum log_level l)
{
	static const char *labels[] = {"OFF", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
	return labels[l];
}

void log_set_level(enum log_level level)
{
	pthread_mutex_lock(&logger.lock);
	logger.level = level;
	pthread_mutex_unlock(&logger.lock);
}

void log_set_instance_id(const char *id)
{
	pthread_mutex_lock(&logger.lock);
	snprintf(logger.id, sizeof(logger.id), "%s", id);
	pthread_mutex_unlock(&logger.lock);
}

void log_set_options(bool show_level, bool show_origin)
{
	pthread_mutex_lock(&logger.lock);
	logger.show_level = show_level;
	logger.show_origin = show_origin;
	pthread_mutex_unlock(&logger.lock);
}

bool log_show_level(void)
{
	pthread_mutex_lock(&logger.lock);
	bool v = logger.show_level;
	pthread_mutex_unlock(&logger.lock);
	return v;
}

bool log_show_origin(void)
{
	pthread_mutex_lock(&logger.lock);
	bool v = logger.show_origin;
	pthread_mutex_unlock(&logger.lock);
	return v;
}

void log_set_module(const char *module)
{
	char m[sizeof(logger.module)] = "";
	size_t n = 0;
	for (const char *p = module ? module : ""; *p && n + 1 < sizeof(m); p++) {
		if (p[0] == ':' && p[1] == ':') {
			m[n++] = '/';
			p++;
		} else {
			m[n++] = *p;
		}
	}
	m[n] = 0;
	pthread_mutex_lock(&logger.lock);
	memcpy(logger.module, m, sizeof(m));
	pthread_mutex_unlock(&logger.lock);
}

/* The module of a source file: its path after "src/", e.g. "api/server.c". */
static bool module_passes(const char *file)
{
	if (!logger.module[0])
		return true;
	const char *p = strstr(file, "src/");
	p = p ? p + 4 : file;
	return !strncmp(p, logger.module, strlen(logger.module));
}

int log_set_path(const char *path)
{
	/* A FIFO is opened read-write, as Firecracker does: opening it
	 * write-only without a reader would fail (ENXIO), and holding a read
	 * end means a reader that goes away costs lines, never EPIPE. */
	struct stat st;
	int flags = O_APPEND | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
	flags |= !stat(path, &st) && S_ISFIFO(st.st_mode) ? O_RDWR : O_WRONLY;
	int fd = open(path, flags, 0600);
	if (fd < 0)
		return -1;
	pthread_mutex_lock(&logger.lock);
	if (logger.fd != STDERR_FILENO)
		close(logger.fd);
	logger.fd = fd;
	pthread_mutex_unlock(&logger.lock);
	return 0;
}

static void flush_at_exit(void)
{
	log_flush();
}

void log_flush(void)
{
	pthread_mutex_lock(&logger.lock);
	struct out_queue *q = logger.errq;
	pthread_mutex_unlock(&logger.lock);
	if (q)
		out_queue_flush(q, STDERR_FLUSH_IDLE_MS);
}

/* With the lock held. */
static bool make_errq(void)
{
	if (!logger.errq) {
		logger.errq = out_queue_create(STDERR_FILENO, STDERR_QUEUE);
		if (!logger.errq)
			return false;
		atexit(flush_at_exit);
	}
	return true;
}

int log_start_output(void)
{
	pthread_mutex_lock(&logger.lock);
	int rc = make_errq() ? out_queue_start(logger.errq) : -1;
	pthread_mutex_unlock(&logger.lock);
	return rc;
}

/* With the lock held: one line to stderr, whole or not at all. */
static bool put_stderr(const char *buf, size_t n)
{
	return make_errq() && out_queue_put(logger.errq, buf, n, true) == n;
}

void log_stderr(const char *line, size_t len)
{
	pthread_mutex_lock(&logger.lock);
	if (!put_stderr(line, len))
		logger.lost++;
	pthread_mutex_unlock(&logger.lock);
}

uint64_t log_lost_lines(void)
{
	pthread_mutex_lock(&logger.lock);
	uint64_t n = logger.lost;
	pthread_mutex_unlock(&logger.lock);
	return n;
}

void log_thread_name(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name);
}

void log_guest_errorv(const char *file, int line, uint64_t *count, const char *who,
		      const char *fmt, va_list ap)
{
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if ((*count)++ == 0)
		log_msg(LOG_WARN, file, line, "%s: %s (further ones are only counted)", who, msg);
	else
		log_msg(LOG_DEBUG, file, line, "%s: %s", who, msg);
}

/* gmtime_r takes glibc's time zone lock: not for a signal handler. This is
 * the proleptic Gregorian calendar from days since 1970-01-01. */
static char *put_utc(char *p, char *end, const struct timespec *ts)
{
	int64_t days = ts->tv_sec / 86400, secs = ts->tv_sec % 86400;
	int64_t z = days + 719468, era = z / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9, y = yoe + era * 400 + (m <= 2);
	p = sigsafe_u64(p, end, (uint64_t)y, 4);
	p = sigsafe_str(p, end, "-");
	p = sigsafe_u64(p, end, (uint64_t)m, 2);
	p = sigsafe_str(p, end, "-");
	p = sigsafe_u64(p, end, (uint64_t)d, 2);
	p = sigsafe_str(p, end, "T");
	p = sigsafe_u64(p, end, (uint64_t)(secs / 3600), 2);
	p = sigsafe_str(p, end, ":");
	p = sigsafe_u64(p, end, (uint64_t)(secs / 60 % 60), 2);
	p = sigsafe_str(p, end, ":");
	p = sigsafe_u64(p, end, (uint64_t)(secs % 60), 2);
	p = sigsafe_str(p, end, ".");
	return sigsafe_u64(p, end, (uint64_t)ts->tv_nsec, 9);
}

void log_signal_safe(const char *msg)
{
	char buf[512], *p = buf, *end = buf + sizeof(buf) - 1;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	p = put_utc(p, end, &ts);
	p = sigsafe_str(p, end, " [");
	p = sigsafe_str(p, end, logger.id);
	p = sigsafe_str(p, end, ":");
	p = sigsafe_str(p, end, thread_name);
	p = sigsafe_str(p, end, "]");
	if (logger.show_level)
		p = sigsafe_str(p, end, " [ERROR]");
	p = sigsafe_str(p, end, " ");
	p = sigsafe_str(p, end, msg);
	*p++ = '\n';
	ssize_t rc = write(logger.fd, buf, (size_t)(p - buf));
	(void)rc;
}

void log_msg(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	char buf[1024];
	struct timespec ts;
	struct tm tm;
	int n;

	pthread_mutex_lock(&logger.lock);
	if (level == LOG_OFF || level > logger.level || !module_passes(file)) {
		pthread_mutex_unlock(&logger.lock);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:%s]",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec, logger.id, thread_name);
	if (logger.show_level)
		n += snprintf(buf + n, sizeof(buf) - n, " [%s]", level_label(level));
	if (logger.show_origin) {
		const char *base = strrchr(file, '/');
		n += snprintf(buf + n, sizeof(buf) - n, " [%s:%d]", base ? base + 1 : file, line);
	}
	buf[n++] = ' ';
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	n = m < 0 ? n : (size_t)(n + m) >= sizeof(buf) - 1 ? (int)sizeof(buf) - 2 : n + m;
	buf[n++] = '\n';
	/* One write per line keeps lines whole; a full FIFO or a full stderr
	 * queue loses the line. */
	if (logger.fd == STDERR_FILENO ? !put_stderr(buf, (size_t)n) : write(logger.fd, buf, n) != n)
		logger.lost++;
	pthread_mutex_unlock(&logger.lock);
}
