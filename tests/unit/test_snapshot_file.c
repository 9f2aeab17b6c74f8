/* The VM state file: what the writer makes, the reader takes back; every
 * kind of damage (truncation, a flipped bit, another version, a forged
 * length) is refused with a message saying which. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/blob.h"
#include "vmm/snapshot_file.h"
#include "vmm/snapshot_params.h"

static uint8_t *file_bytes(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(*len);
	assert_int_equal(fread(b, 1, *len, f), *len);
	fclose(f);
	return b;
}

static char path[64];

static uint8_t *make(size_t *len)
{
	snprintf(path, sizeof(path), "/tmp/ember-snapfile-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	uint8_t blob[5] = {0, 1, 0xfe, 0xff, 7};
	json_t *st = json_pack("{s:i, s:o}", "vcpus", 2, "b", blob_json(blob, sizeof(blob)));
	ember_err e;
	assert_int_equal(snapshot_file_write(path, st, &e), 0);
	json_decref(st);
	uint8_t *b = file_bytes(path, len);
	unlink(path);
	return b;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void round_trip(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = make(&len);
	json_t *st;
	uint32_t ver;
	ember_err e;
	assert_int_equal(snapshot_file_parse(b, len, &st, &ver, &e), 0);
	assert_int_equal(ver, SNAPSHOT_FORMAT_VERSION);
	assert_int_equal(json_integer_value(json_object_get(st, "vcpus")), 2);
	uint8_t blob[5];
	assert_int_equal(blob_get(st, "b", blob, 5, &e), 0);
	assert_int_equal(blob[2], 0xfe);
	assert_int_equal(blob_get(st, "b", blob, 4, &e), -1); /* exact length only */
	json_decref(st);
	free(b);
}

static void expect_refused(const uint8_t *b, size_t len, const char *words)
{
	json_t *st = (json_t *)1;
	ember_err e = {{0}};
	assert_int_equal(snapshot_file_parse(b, len, &st, NULL, &e), -1);
	assert_null(st);
	if (!strstr(e.msg, words))
		fail_msg("expected \"%s\" in \"%s\"", words, e.msg);
}

static void damage(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = make(&len);
	/* Every truncation. */
	for (size_t n = 0; n < len; n++)
		expect_refused(b, n, n < SNAPSHOT_HEADER_SIZE ? "truncated" : "truncated");
	/* Every single bit flipped anywhere. */
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit++) {
			b[i] ^= (uint8_t)(1 << bit);
			json_t *st = NULL;
			ember_err e;
			assert_int_equal(snapshot_file_parse(b, len, &st, NULL, &e), -1);
			b[i] ^= (uint8_t)(1 << bit);
		}
	/* Another version, with a valid header checksum: named as such. */
	uint8_t *c = malloc(len + 1);
	memcpy(c, b, len);
	put32(c + 8, SNAPSHOT_FORMAT_VERSION + 1);
	put32(c + 28, crc32_ieee(0, c, 28));
	uint32_t ver;
	json_t *st;
	ember_err e;
	assert_int_equal(snapshot_file_parse(c, len, &st, &ver, &e), -1);
	assert_int_equal(ver, SNAPSHOT_FORMAT_VERSION + 1);
	assert_non_null(strstr(e.msg, "version"));
	/* A body flipped with the header intact: the payload checksum. */
	memcpy(c, b, len);
	c[len - 2] ^= 1;
	expect_refused(c, len, "checksum");
	/* Trailing bytes. */
	memcpy(c, b, len);
	c[len] = ' ';
	expect_refused(c, len + 1, "trailing");
	/* A forged huge length. */
	memcpy(c, b, len);
	c[16 + 5] = 1;
	put32(c + 28, crc32_ieee(0, c, 28));
	expect_refused(c, len, "limit");
	/* Not our file at all. */
	expect_refused((const uint8_t *)"{\"vcpus\": 1}                      ", 33, "magic");
	free(c);
	free(b);
}

static void payload_must_be_object(void **state)
{
	(void)state;
	const char *body = "[1,2]";
	uint8_t buf[64] = "EMBERVMS";
	size_t n = strlen(body);
	put32(buf + 8, SNAPSHOT_FORMAT_VERSION);
	put32(buf + 12, SNAPSHOT_HEADER_SIZE);
	memset(buf + 16, 0, 8);
	buf[16] = (uint8_t)n;
	put32(buf + 24, crc32_ieee(0, body, n));
	put32(buf + 28, crc32_ieee(0, buf, 28));
	memcpy(buf + 32, body, n);
	expect_refused(buf, 32 + n, "not an object");
}

/* PUT /snapshot/load's huge_pages (Firecracker's SnapshotLoadHugePageConfig):
 * absent or "Snapshot" keeps the snapshot's; the others override it. */
static void load_huge_pages(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		bool has;
		enum huge_pages want;
	} cases[] = {
		{NULL, false, HUGE_PAGES_NONE},	    {"Snapshot", false, HUGE_PAGES_NONE},
		{"None", true, HUGE_PAGES_NONE},    {"Transparent", true, HUGE_PAGES_TRANSPARENT},
		{"2M", true, HUGE_PAGES_2M},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = json_pack("{s:s, s:s}", "snapshot_path", "s", "mem_file_path", "m");
		if (cases[i].value)
			json_object_set_new(j, "huge_pages", json_string(cases[i].value));
		struct snapshot_load_params p;
		ember_err e = {{0}};
		assert_int_equal(snapshot_load_params_parse(j, &p, &e), 0);
		assert_int_equal(p.has_huge_pages, cases[i].has);
		if (cases[i].has)
			assert_int_equal(p.huge_pages, cases[i].want);
		snapshot_load_params_free(&p);
		json_decref(j);
	}
	json_t *j = json_pack("{s:s, s:s, s:s}", "snapshot_path", "s", "mem_file_path", "m",
			      "huge_pages", "1G");
	struct snapshot_load_params p;
	ember_err e = {{0}};
	assert_int_equal(snapshot_load_params_parse(j, &p, &e), -1);
	assert_non_null(strstr(e.msg, "huge_pages: unknown variant `1G`"));
	json_decref(j);
}

static void crc_known_value(void **state)
{
	(void)state;
	assert_int_equal(crc32_ieee(0, "123456789", 9), 0xcbf43926);
	/* In pieces, and with nothing to add, it goes on from where it was. */
	assert_int_equal(crc32_ieee(crc32_ieee(0, "1234", 4), "56789", 5), 0xcbf43926);
	assert_int_equal(crc32_ieee(0xcbf43926, NULL, 0), 0xcbf43926);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(damage),
		cmocka_unit_test(payload_must_be_object),
		cmocka_unit_test(crc_known_value),
		cmocka_unit_test(load_huge_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
