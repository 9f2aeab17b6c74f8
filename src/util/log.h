/* Ember's logger, in Firecracker's line format:
 *   <RFC3339 time> [<instance id>:<thread>] [<level>] [<file:line>] message
 *
 * The logger is the one piece of process-wide state: every thread logs, and
 * threading a handle through every device call would buy nothing. It is
 * configured before any thread starts and guarded by a mutex afterwards. */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_OFF = 0, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* Parses Firecracker's level names ("Error", "Warning", "Info", "Debug",
 * "Trace", "Off"; case-insensitive, "Warn" too). Returns -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);

void log_set_level(enum log_level level);
void log_set_instance_id(const char *id);
void log_set_options(bool show_level, bool show_origin);
bool log_show_level(void);
bool log_show_origin(void);
/* Only log lines from this module pass: a source path under src/ without
 * its extension, matched as a prefix ("api", "vmm/vcpu", "devices/serial");
 * Firecracker's "a::b" spelling is read as "a/b". NULL or "" lets all pass. */
void log_set_module(const char *module);
/* Sends log lines to path (a file, appended, or a FIFO, opened non-blocking so
 * a slow reader never stalls the VMM; lines that don't fit are counted as
 * lost). Returns -1 with errno set on failure. */
int log_set_path(const char *path);
uint64_t log_lost_lines(void);
/* Lines for stderr go through a bounded queue (64 KiB; a line that does not
 * fit is lost and counted), so that a stderr nobody reads never stops the
 * thread that logs. log_flush waits until they are written, or until the
 * reader has taken nothing for a second; it also runs at exit. */
void log_flush(void);
/* Starts the thread that writes stderr's queue: on the VMM thread once its
 * seccomp filter is on (util/out_queue.h says why). Lines logged before
 * wait in the queue. */
int log_start_output(void);
/* Queues len bytes (whole lines) for stderr, after the log lines before
 * them: for messages that are not log lines, such as main's one-line error
 * at exit, which then waits no longer than log_flush for a reader. */
void log_stderr(const char *line, size_t len);
void log_thread_name(const char *name);

/* An error line for a signal handler: no lock, no stdio, no allocation, one
 * write(); written whatever the level, as Firecracker's error_unrestricted. */
void log_signal_safe(const char *msg);

void log_msg(enum log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A guest's mistake, counted in *count: the first of its kind is a warning
 * ("<who>: <message> (further ones are only counted)"), later ones are
 * debug lines, so that a guest cannot flood the log. file and line are the
 * caller's (__FILE__, __LINE__): the logger's module filter and
 * show_log_origin go by them. */
void log_guest_errorv(const char *file, int line, uint64_t *count, const char *who,
		      const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

#define LOG_E(...) log_msg(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_W(...) log_msg(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_I(...) log_msg(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define LOG_D(...) log_msg(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

#endif
