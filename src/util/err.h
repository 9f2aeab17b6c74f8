/* Error reporting: a function that fails fills an ember_err with one line
 * naming the problem and returns -1; main() prints it once and exits. */
#ifndef EMBER_ERR_H
#define EMBER_ERR_H

typedef struct {
	char msg[512];
} ember_err;

/* Sets the message (printf-style) and returns -1 so callers can write
 * `return err_set(e, "...")`. A NULL e is allowed and ignored. */
int err_set(ember_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the existing message with "<prefix>: " and returns -1. */
int err_prefix(ember_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
