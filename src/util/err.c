#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(ember_err *e, const char *fmt, ...)
{
	if (!e)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int err_prefix(ember_err *e, const char *fmt, ...)
{
	if (!e)
		return -1;
	char prefix[256], old[sizeof(e->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	int n = snprintf(e->msg, sizeof(e->msg), "%s: ", prefix);
	if (n >= 0 && (size_t)n < sizeof(e->msg)) {
		size_t room = sizeof(e->msg) - (size_t)n - 1;
		size_t len = strnlen(old, room);
		memcpy(e->msg + n, old, len);
		e->msg[n + len] = '\0';
	}
	return -1;
}
