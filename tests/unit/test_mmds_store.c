#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "mmds/json.h"
#include "mmds/store.h"

static json_t *parse(const char *text)
{
	json_t *j = mmds_json_parse(text, strlen(text), NULL);
	if (!j)
		fail_msg("bad test JSON: %s", text);
	return j;
}

/* text, dumped as serde_json would, must be want. */
static void expect_dump(const char *text, const char *want)
{
	json_t *j = parse(text);
	struct mmds_buf b = {0};
	mmds_json_dump(j, &b);
	assert_false(b.failed);
	assert_string_equal(b.data, want);
	mmds_buf_free(&b);
	json_decref(j);
}

/* Many members (past the 1 KiB where glibc's qsort would call sysinfo,
 * which seccomp refuses): keys come out sorted, "k000" to "k199", from any
 * order in. */
static void many_members_sorted(void)
{
	char in[8192] = "{", want[8192] = "{";
	for (int i = 0; i < 200; i++) {
		int k = (i * 37) % 200; /* a permutation */
		snprintf(in + strlen(in), sizeof(in) - strlen(in), "%s\"k%03d\":%d", i ? "," : "", k, k);
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s\"k%03d\":%d", i ? "," : "",
			 i, i);
	}
	strcat(in, "}");
	strcat(want, "}");
	expect_dump(in, want);
}

static void serializes_like_serde_json(void **state)
{
	(void)state;
	many_members_sorted();
	/* BTreeMap order: bytewise, shorter first. */
	expect_dump("{\"b\": 1, \"a\": {\"y\": [], \"x\": {}}, \"B\": 2, \"ab\": 3, \"\": 0}",
		    "{\"\":0,\"B\":2,\"a\":{\"x\":{},\"y\":[]},\"ab\":3,\"b\":1}");
	expect_dump("[true, false, null, -24, 9223372036854775807]",
		    "[true,false,null,-24,9223372036854775807]");
	/* Rust's float Display (ryu). */
	expect_dump("[12.12, 1.0, 1e2, 1e15, 1e16, 1e100, 1e-7, 0.001234, 0.1, -0.0, 0.0]",
		    "[12.12,1.0,100.0,1000000000000000.0,1e16,1e100,1e-7,0.001234,0.1,-0.0,0.0]");
	expect_dump("[1.5e300, 123456789012345678901234.0, 2.5e-5, 1.7976931348623157e308]",
		    "[1.5e300,1.2345678901234569e23,0.000025,1.7976931348623157e308]");
	expect_dump("[0.00001, 5e-324]", "[0.00001,5e-324]");
	/* Only ", \ and control characters are escaped; \u00XX in lowercase. */
	expect_dump("\"a/b \\\" \\\\ \\n\\t\\r\\b\\f \\u001f \\u0000 \\u00e9 \\u2028\"",
		    "\"a/b \\\" \\\\ \\n\\t\\r\\b\\f \\u001f \\u0000 \xc3\xa9 \xe2\x80\xa8\"");
	expect_dump("{\"k\\u0001\": \"v\"}", "{\"k\\u0001\":\"v\"}");
	/* Any JSON value, not only objects; last duplicate wins, as serde. */
	expect_dump("\"just a string\"", "\"just a string\"");
	expect_dump("42", "42");
	expect_dump("{\"a\": 1, \"a\": 2}", "{\"a\":2}");
	assert_null(mmds_json_parse("{", 1, NULL));
	ember_err e = {{0}};
	assert_null(mmds_json_parse("[1,]", 4, &e));
	assert_non_null(strstr(e.msg, "line 1"));
	/* serde_json's recursion limit: 127 levels pass, 128 do not. */
	char deep[300];
	memset(deep, '[', 128);
	memset(deep + 128, ']', 128);
	assert_null(mmds_json_parse(deep, 256, &e));
	assert_string_equal(e.msg, "recursion limit exceeded");
	json_t *ok = mmds_json_parse(deep + 1, 254, NULL);
	assert_non_null(ok);
	json_decref(ok);
}

/* RFC 7396 appendix A, every example. */
static void merge_patch_rfc7396(void **state)
{
	(void)state;
	static const char *const cases[][3] = {
		{"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
		{"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
		{"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
		{"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
		{"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
		{"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
		{"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
		{"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
		{"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
		{"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
		{"{\"a\":\"foo\"}", "null", "null"},
		{"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
		{"{\"e\":null}", "{\"a\":1}", "{\"a\":1,\"e\":null}"},
		{"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
		{"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *target = parse(cases[i][0]), *patch = parse(cases[i][1]);
		json_t *want = parse(cases[i][2]);
		json_t *got = mmds_json_merge(target, patch);
		if (!json_equal(got, want))
			fail_msg("case %zu: %s + %s", i, cases[i][0], cases[i][1]);
		/* The result shares nothing with the patch. */
		json_decref(patch);
		assert_true(json_equal(got, want));
		json_decref(got);
		json_decref(want);
	}
}

static char *dump(const struct mmds_store *s)
{
	char *d = mmds_store_dump(s);
	assert_non_null(d);
	return d;
}

static void expect_contents(const struct mmds_store *s, const char *want)
{
	char *d = dump(s);
	assert_string_equal(d, want);
	free(d);
}

static int put_text(struct mmds_store *s, const char *text, ember_err *e)
{
	json_t *j = parse(text);
	int rc = mmds_store_put(s, j, e);
	json_decref(j);
	return rc;
}

static int patch_text(struct mmds_store *s, const char *text, ember_err *e)
{
	json_t *j = parse(text);
	int rc = mmds_store_patch(s, j, e);
	json_decref(j);
	return rc;
}

static void put_patch_get(void **state)
{
	(void)state;
	struct mmds_store s;
	ember_err e = {{0}};
	mmds_store_init(&s, MMDS_DEFAULT_SIZE_LIMIT);
	expect_contents(&s, "{}");
	assert_int_equal(patch_text(&s, "{\"a\": 1}", &e), MMDS_STORE_INVALID);
	assert_string_equal(e.msg, "MMDS error: The MMDS data store is not initialized.");
	assert_int_equal(mmds_store_http_status(MMDS_STORE_INVALID), 400);
	expect_contents(&s, "{}");

	assert_int_equal(put_text(&s, "{\"meta-data\":{\"iam\":\"dummy\"},\"user-data\":\"1522850095\"}",
				  &e), 0);
	expect_contents(&s, "{\"meta-data\":{\"iam\":\"dummy\"},\"user-data\":\"1522850095\"}");
	assert_int_equal(patch_text(&s, "{\"user-data\":\"10\"}", &e), 0);
	expect_contents(&s, "{\"meta-data\":{\"iam\":\"dummy\"},\"user-data\":\"10\"}");
	/* PUT replaces everything; the store keeps its own copy. */
	json_t *j = parse("[1, 2]");
	assert_int_equal(mmds_store_put(&s, j, &e), 0);
	json_array_append_new(j, json_integer(3));
	json_decref(j);
	expect_contents(&s, "[1,2]");
	/* PUT null: initialized, shown as {} like Firecracker's GET /mmds. */
	assert_int_equal(put_text(&s, "null", &e), 0);
	expect_contents(&s, "{}");
	assert_int_equal(patch_text(&s, "{\"x\": {\"y\": null, \"z\": 1}}", &e), 0);
	expect_contents(&s, "{\"x\":{\"z\":1}}");
	mmds_store_free(&s);
}

/* Firecracker's own size-limit sequence, byte counts included. */
static void size_limit(void **state)
{
	(void)state;
	struct mmds_store s;
	ember_err e = {{0}};
	mmds_store_init(&s, 51200);

	char *big = malloc(60000);
	snprintf(big, 60000, "{\"key\": \"%0*d\"}", 51300, 0);
	assert_int_equal(put_text(&s, big, &e), MMDS_STORE_TOO_LARGE);
	assert_string_equal(e.msg, "MMDS limit exceeded error: The MMDS patch request doesn't fit.");
	assert_int_equal(mmds_store_http_status(MMDS_STORE_TOO_LARGE), 413);
	expect_contents(&s, "{}");
	assert_null(s.data); /* still not initialized */

	assert_int_equal(put_text(&s, "{\"name\":{\"first\":\"John\",\"second\":\"Doe\"},\"age\":43}",
				  &e), 0);
	assert_int_equal(patch_text(&s, "{\"name\":{\"first\":\"John\",\"second\":null},\"age\":\"43\"}",
				    &e), 0);
	/* 51151 bytes of filling bring the store to exactly 51200 bytes. */
	snprintf(big, 60000, "{\"new_key\": \"%0*d\"}", 51151, 0);
	assert_int_equal(patch_text(&s, big, &e), 0);
	char *d = dump(&s);
	assert_int_equal(strlen(d), 51200);
	free(d);
	assert_int_equal(patch_text(&s, "{\"new_key2\" : \"smth\"}", &e), MMDS_STORE_TOO_LARGE);
	d = dump(&s);
	assert_null(strstr(d, "smth"));
	assert_int_equal(strlen(d), 51200);
	free(d);
	assert_int_equal(patch_text(&s, "{\"new_key\" : \"smth\"}", &e), 0);
	d = dump(&s);
	assert_int_equal(strlen(d), 53);
	free(d);
	assert_int_equal(patch_text(&s, "{\"new_key2\" : \"smth2\"}", &e), 0);
	d = dump(&s);
	assert_int_equal(strlen(d), 72);
	free(d);

	/* The limit counts serde_json's bytes: 12.12 is 5 of them. */
	mmds_store_free(&s);
	mmds_store_init(&s, 7);
	assert_int_equal(put_text(&s, "[12.12]", &e), 0);
	assert_int_equal(put_text(&s, "[12.120]", &e), 0);
	assert_int_equal(put_text(&s, "[12.125]", &e), MMDS_STORE_TOO_LARGE);
	expect_contents(&s, "[12.12]");
	free(big);
	mmds_store_free(&s);
}

static void sanitize(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{"/a/b/c/d", "/a/b/c/d"}, {"/a////b/c//d", "/a/b/c/d"},
		{"///////a//b///c//d", "/a/b/c/d"}, {"a", "a"}, {"a/", "a/"}, {"aa//", "aa/"},
		{"/", "/"}, {"", ""}, {"////", "/"}, {"aa//bb///cc//d", "aa/bb/cc/d"},
		{"//aa//bb///cc//d", "/aa/bb/cc/d"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];
		size_t n = strlen(cases[i][0]);
		memcpy(buf, cases[i][0], n);
		n = mmds_path_sanitize(buf, n);
		buf[n] = '\0';
		assert_string_equal(buf, cases[i][1]);
	}
}

static void expect_get(const struct mmds_store *s, const char *path, enum mmds_format f,
		       enum mmds_lookup want, const char *body)
{
	struct mmds_buf b = {0};
	enum mmds_lookup got = mmds_store_get(s, path, strlen(path), f, &b);
	if (got != want)
		fail_msg("%s: got %d, want %d", path, got, want);
	if (body)
		assert_string_equal(b.len ? b.data : "", body);
	mmds_buf_free(&b);
}

/* Firecracker's test_get_value, both formats. */
static void guest_lookup(void **state)
{
	(void)state;
	struct mmds_store s;
	ember_err e = {{0}};
	mmds_store_init(&s, MMDS_DEFAULT_SIZE_LIMIT);
	/* Before any PUT: the root is null, everything else is missing. */
	expect_get(&s, "/", MMDS_FORMAT_JSON, MMDS_FOUND, "null");
	expect_get(&s, "/", MMDS_FORMAT_IMDS, MMDS_UNSUPPORTED, NULL);
	expect_get(&s, "/latest/meta-data", MMDS_FORMAT_IMDS, MMDS_NOT_FOUND, NULL);

	assert_int_equal(put_text(&s, "{\"name\": {\"first\": \"John\", \"second\": \"Doe\"}, "
				  "\"age\": 43, \"phones\": [\"+401234567\", \"+441234567\"], "
				  "\"member\": false, \"shares_percentage\": 12.12, \"balance\": -24, "
				  "\"json_string\": \"{\\n  \\\"hello\\\": \\\"world\\\"\\n}\", "
				  "\"a/b\": {\"~c\": \"slashed\"}, \"e\": \"\"}", &e), 0);
	expect_get(&s, "/invalid_path", MMDS_FORMAT_JSON, MMDS_NOT_FOUND, NULL);
	expect_get(&s, "/invalid_path", MMDS_FORMAT_IMDS, MMDS_NOT_FOUND, NULL);
	expect_get(&s, "/name", MMDS_FORMAT_JSON, MMDS_FOUND, "{\"first\":\"John\",\"second\":\"Doe\"}");
	expect_get(&s, "/name", MMDS_FORMAT_IMDS, MMDS_FOUND, "first\nsecond");
	expect_get(&s, "/age", MMDS_FORMAT_JSON, MMDS_FOUND, "43");
	expect_get(&s, "/age", MMDS_FORMAT_IMDS, MMDS_UNSUPPORTED, NULL);
	expect_get(&s, "/phones/", MMDS_FORMAT_JSON, MMDS_FOUND, "[\"+401234567\",\"+441234567\"]");
	expect_get(&s, "/phones", MMDS_FORMAT_IMDS, MMDS_UNSUPPORTED, NULL);
	expect_get(&s, "/phones/0/", MMDS_FORMAT_JSON, MMDS_FOUND, "\"+401234567\"");
	expect_get(&s, "/phones/0/", MMDS_FORMAT_IMDS, MMDS_FOUND, "+401234567");
	expect_get(&s, "/phones/01", MMDS_FORMAT_JSON, MMDS_NOT_FOUND, NULL);
	expect_get(&s, "/phones/+1", MMDS_FORMAT_JSON, MMDS_NOT_FOUND, NULL);
	expect_get(&s, "/phones/2", MMDS_FORMAT_JSON, MMDS_NOT_FOUND, NULL);
	expect_get(&s, "/member", MMDS_FORMAT_JSON, MMDS_FOUND, "false");
	expect_get(&s, "/member", MMDS_FORMAT_IMDS, MMDS_UNSUPPORTED, NULL);
	expect_get(&s, "/shares_percentage", MMDS_FORMAT_JSON, MMDS_FOUND, "12.12");
	expect_get(&s, "/balance", MMDS_FORMAT_JSON, MMDS_FOUND, "-24");
	expect_get(&s, "/json_string", MMDS_FORMAT_IMDS, MMDS_FOUND,
		   "{\n  \"hello\": \"world\"\n}");
	expect_get(&s, "/json_string", MMDS_FORMAT_JSON, MMDS_FOUND,
		   "\"{\\n  \\\"hello\\\": \\\"world\\\"\\n}\"");
	expect_get(&s, "/e", MMDS_FORMAT_IMDS, MMDS_FOUND, "");
	/* RFC 6901 escapes; duplicate slashes collapse. */
	expect_get(&s, "/a~1b/~0c", MMDS_FORMAT_IMDS, MMDS_FOUND, "slashed");
	expect_get(&s, "//a~1b///~0c/", MMDS_FORMAT_IMDS, MMDS_FOUND, "slashed");
	expect_get(&s, "/", MMDS_FORMAT_IMDS, MMDS_FOUND,
		   "a/b/\nage\nbalance\ne\njson_string\nmember\nname/\nphones\nshares_percentage");
	expect_get(&s, "", MMDS_FORMAT_IMDS, MMDS_FOUND, NULL);
	expect_get(&s, "name", MMDS_FORMAT_IMDS, MMDS_NOT_FOUND, NULL);
	mmds_store_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(serializes_like_serde_json),
		cmocka_unit_test(merge_patch_rfc7396),
		cmocka_unit_test(put_patch_get),
		cmocka_unit_test(size_limit),
		cmocka_unit_test(sanitize),
		cmocka_unit_test(guest_lookup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
