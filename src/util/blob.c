#include "util/blob.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

uint32_t crc32_ieee(uint32_t crc, const void *data, size_t len)
{
	/* zlib answers a NULL buffer with its initial value, not crc. */
	if (!len)
		return crc;
	return (uint32_t)crc32_z(crc, data, len);
}

json_t *blob_json(const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *s = malloc(len * 2 + 1);
	if (!s)
		return NULL;
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		s[2 * i] = hex[p[i] >> 4];
		s[2 * i + 1] = hex[p[i] & 15];
	}
	s[len * 2] = 0;
	json_t *j = json_stringn_nocheck(s, len * 2);
	free(s);
	return j;
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int blob_get_var(json_t *obj, const char *key, void *out, size_t max, size_t *len, ember_err *e)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v))
		return err_set(e, "%s: missing or not a string", key);
	size_t n = json_string_length(v);
	const char *s = json_string_value(v);
	if (n % 2 || n / 2 > max)
		return err_set(e, "%s: %zu hex digits, at most %zu bytes expected", key, n, max);
	uint8_t *p = out;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return err_set(e, "%s: not a hex string", key);
		p[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return 0;
}

int blob_get(json_t *obj, const char *key, void *out, size_t len, ember_err *e)
{
	size_t got;
	if (blob_get_var(obj, key, out, len, &got, e))
		return -1;
	if (got != len)
		return err_set(e, "%s: %zu bytes, expected %zu", key, got, len);
	return 0;
}

int json_get_u64(json_t *obj, const char *key, uint64_t max, uint64_t *out, ember_err *e)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return err_set(e, "%s: missing, not an integer or out of range", key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}
