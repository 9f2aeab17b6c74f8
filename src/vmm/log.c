#include "vmm/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct {
	pthread_mutex_t lock;
	enum log_level level;
	bool show_level, show_origin;
	int fd;
	char id[64];
	uint64_t lost;
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

int log_set_path(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	pthread_mutex_lock(&logger.lock);
	if (logger.fd != STDERR_FILENO)
		close(logger.fd);
	logger.fd = fd;
	pthread_mutex_unlock(&logger.lock);
	return 0;
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

void log_msg(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	char buf[1024];
	struct timespec ts;
	struct tm tm;
	int n;

	pthread_mutex_lock(&logger.lock);
	if (level == LOG_OFF || level > logger.level) {
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
	/* One write per line keeps lines whole; a full FIFO loses the line. */
	if (write(logger.fd, buf, n) != n)
		logger.lost++;
	pthread_mutex_unlock(&logger.lock);
}
