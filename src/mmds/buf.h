/* A growable byte buffer for MMDS output (JSON text, HTTP responses). A
 * failed allocation makes the buffer sticky-failed instead of returning an
 * error from every append; check ->failed once at the end. */
#ifndef EMBER_MMDS_BUF_H
#define EMBER_MMDS_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct mmds_buf {
	char *data; /* NUL-terminated when len > 0 and !failed */
	size_t len, cap;
	bool failed;
};

void mmds_buf_add(struct mmds_buf *b, const void *p, size_t n);
void mmds_buf_adds(struct mmds_buf *b, const char *s);
void mmds_buf_addc(struct mmds_buf *b, char c);
void mmds_buf_addf(struct mmds_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the contents, keeps the allocation. */
void mmds_buf_reset(struct mmds_buf *b);
void mmds_buf_free(struct mmds_buf *b);

#endif
