/* Formatting for signal handlers: no locale, no stdio, no allocation. Each
 * appends to [p, end) and returns the new p; what does not fit is cut. */
#ifndef EMBER_SIGSAFE_FMT_H
#define EMBER_SIGSAFE_FMT_H

#include <stdint.h>

static inline char *sigsafe_str(char *p, char *end, const char *s)
{
	while (*s && p < end)
		*p++ = *s++;
	return p;
}

/* v in decimal, zero-padded to width digits (at most 20). */
static inline char *sigsafe_u64(char *p, char *end, uint64_t v, int width)
{
	char tmp[20];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < 20);
	while (n < width && n < 20)
		tmp[n++] = '0';
	while (n && p < end)
		*p++ = tmp[--n];
	return p;
}

#endif
