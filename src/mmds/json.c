#include "mmds/json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether v nests arrays and objects deeper than max. */
static bool too_deep(const json_t *v, int max)
{
	if (!json_is_object(v) && !json_is_array(v))
		return false;
	if (max == 0)
		return true;
	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++)
			if (too_deep(json_array_get(v, i), max - 1))
				return true;
		return false;
	}
	const char *k;
	json_t *m;
	json_object_foreach((json_t *)v, k, m)
		if (too_deep(m, max - 1))
			return true;
	return false;
}

json_t *mmds_json_parse(const char *text, size_t len, ember_err *e)
{
	json_error_t je;
	/* JSON_ALLOW_NUL: serde_json takes "\u0000" in strings too. */
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j) {
		err_set(e, "%s at line %d column %d", je.text, je.line, je.column);
		return NULL;
	}
	if (too_deep(j, MMDS_JSON_MAX_DEPTH)) {
		json_decref(j);
		err_set(e, "recursion limit exceeded");
		return NULL;
	}
	return j;
}

static void dump_string(const char *s, size_t len, struct mmds_buf *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0; /* start of the bytes not yet copied */
	mmds_buf_addc(out, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7] = "\\";
		if (c == '"' || c == '\\')
			esc[1] = (char)c;
		else if (c == '\b')
			esc[1] = 'b';
		else if (c == '\t')
			esc[1] = 't';
		else if (c == '\n')
			esc[1] = 'n';
		else if (c == '\f')
			esc[1] = 'f';
		else if (c == '\r')
			esc[1] = 'r';
		else if (c < 0x20)
			memcpy(esc + 1, (char[]){'u', '0', '0', hex[c >> 4], hex[c & 15]}, 5);
		else
			continue;
		mmds_buf_add(out, s + run, i - run);
		mmds_buf_adds(out, esc);
		run = i + 1;
	}
	mmds_buf_add(out, s + run, len - run);
	mmds_buf_addc(out, '"');
}

/* Rust's f64 Display as serde_json uses it (the ryu crate): the shortest
 * digits that read back as the same double, laid out as ryu lays them out. */
static void dump_real(double d, struct mmds_buf *out)
{
	if (!isfinite(d)) { /* jansson never holds these; serde would write null */
		mmds_buf_adds(out, "null");
		return;
	}
	if (d == 0) {
		mmds_buf_adds(out, signbit(d) ? "-0.0" : "0.0");
		return;
	}
	char sci[40];
	for (int prec = 0; prec <= 16; prec++) {
		snprintf(sci, sizeof(sci), "%.*e", prec, d);
		if (strtod(sci, NULL) == d)
			break;
	}
	/* sci is [-]D[.DDD]e[+-]XX: value = 0.DDDD x 10^kk */
	char dig[24];
	int n = 0;
	const char *p = sci;
	if (*p == '-') {
		mmds_buf_addc(out, '-');
		p++;
	}
	for (; *p && *p != 'e'; p++)
		if (*p >= '0' && *p <= '9' && n < (int)sizeof(dig))
			dig[n++] = *p;
	int kk = (*p ? atoi(p + 1) : 0) + 1;
	while (n > 1 && dig[n - 1] == '0')
		n--;
	int k = kk - n;
	if (k >= 0 && kk <= 16) { /* 1234e7 -> 12340000000.0 */
		mmds_buf_add(out, dig, (size_t)n);
		for (int i = 0; i < k; i++)
			mmds_buf_addc(out, '0');
		mmds_buf_adds(out, ".0");
	} else if (kk > 0 && kk <= 16) { /* 1234e-2 -> 12.34 */
		mmds_buf_add(out, dig, (size_t)kk);
		mmds_buf_addc(out, '.');
		mmds_buf_add(out, dig + kk, (size_t)(n - kk));
	} else if (kk > -5 && kk <= 0) { /* 1234e-6 -> 0.001234 */
		mmds_buf_adds(out, "0.");
		for (int i = 0; i < -kk; i++)
			mmds_buf_addc(out, '0');
		mmds_buf_add(out, dig, (size_t)n);
	} else { /* 1e30, 1234e30 -> 1.234e33 */
		mmds_buf_addc(out, dig[0]);
		if (n > 1) {
			mmds_buf_addc(out, '.');
			mmds_buf_add(out, dig + 1, (size_t)(n - 1));
		}
		mmds_buf_addf(out, "e%d", kk - 1);
	}
}

static int member_cmp(const void *a, const void *b)
{
	const struct mmds_json_member *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);
	if (c)
		return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* A stable merge sort of m[0..n) by member_cmp, through tmp (n entries).
 * Not qsort: glibc's asks sysinfo() for the machine's memory once the
 * array passes 1 KiB (about 43 members), a syscall no thread's seccomp
 * filter allows, which killed Ember (exit 148). */
static void sort_members(struct mmds_json_member *m, struct mmds_json_member *tmp, size_t n)
{
	for (size_t width = 1; width < n; width *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * width) {
			size_t mid = lo + width < n ? lo + width : n;
			size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
			size_t a = lo, b = mid, k = lo;
			while (a < mid && b < hi)
				tmp[k++] = member_cmp(&m[b], &m[a]) < 0 ? m[b++] : m[a++];
			while (a < mid)
				tmp[k++] = m[a++];
			while (b < hi)
				tmp[k++] = m[b++];
		}
		memcpy(m, tmp, n * sizeof(*m));
	}
}

int mmds_json_members(const json_t *obj, struct mmds_json_member **out, size_t *n)
{
	size_t cap = json_object_size(obj), i = 0;
	*out = NULL;
	*n = 0;
	if (!cap)
		return 0;
	/* The members, then as many again for the sort. */
	struct mmds_json_member *m = calloc(2 * cap, sizeof(*m));
	if (!m)
		return -1;
	const char *k;
	size_t klen;
	json_t *v;
	json_object_keylen_foreach((json_t *)obj, k, klen, v) {
		if (i < cap)
			m[i++] = (struct mmds_json_member){k, klen, v};
	}
	sort_members(m, m + cap, i);
	*out = m;
	*n = i;
	return 0;
}

static void dump_object(const json_t *v, struct mmds_buf *out)
{
	struct mmds_json_member *m;
	size_t n;
	if (mmds_json_members(v, &m, &n)) {
		out->failed = true;
		return;
	}
	mmds_buf_addc(out, '{');
	for (size_t i = 0; i < n && !out->failed; i++) {
		if (i)
			mmds_buf_addc(out, ',');
		dump_string(m[i].key, m[i].key_len, out);
		mmds_buf_addc(out, ':');
		mmds_json_dump(m[i].value, out);
	}
	mmds_buf_addc(out, '}');
	free(m);
}

void mmds_json_dump(const json_t *v, struct mmds_buf *out)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		dump_object(v, out);
		break;
	case JSON_ARRAY:
		mmds_buf_addc(out, '[');
		for (size_t i = 0; i < json_array_size(v) && !out->failed; i++) {
			if (i)
				mmds_buf_addc(out, ',');
			mmds_json_dump(json_array_get(v, i), out);
		}
		mmds_buf_addc(out, ']');
		break;
	case JSON_STRING:
		dump_string(json_string_value(v), json_string_length(v), out);
		break;
	case JSON_INTEGER:
		mmds_buf_addf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		dump_real(json_real_value(v), out);
		break;
	case JSON_TRUE:
		mmds_buf_adds(out, "true");
		break;
	case JSON_FALSE:
		mmds_buf_adds(out, "false");
		break;
	case JSON_NULL:
		mmds_buf_adds(out, "null");
		break;
	}
}

json_t *mmds_json_merge(json_t *target, const json_t *patch)
{
	if (!json_is_object(patch)) {
		json_decref(target);
		return json_deep_copy(patch);
	}
	if (!json_is_object(target)) {
		json_decref(target);
		target = json_object();
		if (!target)
			return NULL;
	}
	const char *k;
	size_t klen;
	json_t *pv;
	json_object_keylen_foreach((json_t *)patch, k, klen, pv) {
		if (json_is_null(pv)) {
			json_object_deln(target, k, klen);
			continue;
		}
		/* Merged in place: the member's new value may be the old one. */
		json_t *cur = json_incref(json_object_getn(target, k, klen));
		json_t *merged = mmds_json_merge(cur, pv);
		if (!merged || json_object_setn_new_nocheck(target, k, klen, merged)) {
			json_decref(target);
			return NULL;
		}
	}
	return target;
}

/* serde_json's parse_index: usize digits, no sign, no leading zero. */
static bool parse_index(const char *s, size_t len, size_t *out)
{
	if (!len || (s[0] == '0' && len != 1))
		return false;
	size_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (SIZE_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* Replaces every "~<from>" in s[0..*len) by to, in place, left to right,
 * as Rust's str::replace does. */
static void unescape(char *s, size_t *len, char from, char to)
{
	size_t r = 0, w = 0;
	while (r < *len) {
		if (s[r] == '~' && r + 1 < *len && s[r + 1] == from) {
			s[w++] = to;
			r += 2;
		} else {
			s[w++] = s[r++];
		}
	}
	*len = w;
}

json_t *mmds_json_pointer(const json_t *root, const char *ptr, size_t len)
{
	if (!len)
		return (json_t *)root;
	if (ptr[0] != '/')
		return NULL;
	char *tok = malloc(len);
	if (!tok)
		return NULL;
	json_t *cur = (json_t *)root;
	size_t pos = 1;
	for (;;) {
		const char *slash = memchr(ptr + pos, '/', len - pos);
		size_t end = slash ? (size_t)(slash - ptr) : len, tlen = end - pos, idx;
		memcpy(tok, ptr + pos, tlen);
		unescape(tok, &tlen, '1', '/');
		unescape(tok, &tlen, '0', '~');
		if (json_is_object(cur))
			cur = json_object_getn(cur, tok, tlen);
		else if (json_is_array(cur) && parse_index(tok, tlen, &idx))
			cur = json_array_get(cur, idx);
		else
			cur = NULL;
		if (!cur || !slash)
			break;
		pos = end + 1;
	}
	free(tok);
	return cur;
}
