/* Firecracker's Drive and PartialDrive objects, the GET /vm/config view, and
 * the root= kernel argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "devices/drive_config.h"

static int parse(const char *text, struct drive_config *c, ember_err *e)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("bad test JSON: %s", je.text);
	int rc = drive_config_parse(j, c, e);
	json_decref(j);
	return rc;
}

static void expect_error(const char *text, const char *needle)
{
	struct drive_config c = {0};
	ember_err e = {{0}};
	assert_int_equal(parse(text, &c, &e), -1);
	if (!strstr(e.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, needle);
	assert_null(c.drive_id);
}

static void full_drive(void **state)
{
	(void)state;
	struct drive_config c = {0};
	ember_err e = {{0}};
	assert_int_equal(parse("{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img\","
			       " \"is_root_device\": true, \"partuuid\": \"0eaa91a0-01\","
			       " \"is_read_only\": true, \"cache_type\": \"Writeback\","
			       " \"io_engine\": \"Async\", \"rate_limiter\": {\"bandwidth\":"
			       " {\"size\": 1000, \"refill_time\": 100}}}", &c, &e), 0);
	assert_string_equal(c.drive_id, "rootfs");
	assert_string_equal(c.path_on_host, "/img");
	assert_string_equal(c.partuuid, "0eaa91a0-01");
	assert_true(c.is_root_device);
	assert_true(c.is_read_only);
	assert_int_equal(c.cache_type, DRIVE_CACHE_WRITEBACK);
	assert_int_equal(c.io_engine, DRIVE_IO_ASYNC);
	assert_true(c.rate_limiter.has_bandwidth);
	assert_int_equal(c.rate_limiter.bandwidth.size, 1000);
	assert_false(c.rate_limiter.has_ops);
	drive_config_free(&c);
}

static void defaults_and_nulls(void **state)
{
	(void)state;
	struct drive_config c = {0};
	assert_int_equal(parse("{\"drive_id\": \"d\", \"path_on_host\": \"/img\","
			       " \"is_root_device\": false}", &c, NULL), 0);
	assert_null(c.partuuid);
	assert_false(c.is_read_only);
	assert_int_equal(c.cache_type, DRIVE_CACHE_UNSAFE);
	assert_int_equal(c.io_engine, DRIVE_IO_SYNC);
	/* Firecracker's Option fields take null; a second parse replaces. */
	assert_int_equal(parse("{\"drive_id\": \"e\", \"path_on_host\": \"/i2\","
			       " \"is_root_device\": false, \"partuuid\": null,"
			       " \"is_read_only\": null, \"io_engine\": null, \"socket\": null,"
			       " \"rate_limiter\": null}", &c, NULL), 0);
	assert_string_equal(c.drive_id, "e");
	assert_null(c.partuuid);
	drive_config_free(&c);
}

static void rejects_bad_drives(void **state)
{
	(void)state;
	expect_error("[]", "expected an object");
	expect_error("{\"path_on_host\": \"/i\", \"is_root_device\": false}",
		     "missing field \"drive_id\"");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\"}",
		     "missing field \"is_root_device\"");
	expect_error("{\"drive_id\": \"d\", \"is_root_device\": false}",
		     "missing field \"path_on_host\"");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": false,"
		     " \"bogus\": 1}", "unknown field \"bogus\"");
	expect_error("{\"drive_id\": 5, \"path_on_host\": \"/i\", \"is_root_device\": false}",
		     "drive_id: expected string, got integer");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": \"yes\"}",
		     "is_root_device: expected boolean, got string");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": null}",
		     "is_root_device: expected boolean, got null");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"\", \"is_root_device\": false}",
		     "path_on_host: is empty");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/a\\u0000b\","
		     " \"is_root_device\": false}", "NUL");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": false,"
		     " \"cache_type\": \"WriteThrough\"}",
		     "cache_type: must be Unsafe or Writeback (got \"WriteThrough\")");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": false,"
		     " \"io_engine\": \"sync\"}", "io_engine: must be Sync or Async");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": false,"
		     " \"rate_limiter\": {\"ops\": {\"size\": -1, \"refill_time\": 1}}}",
		     "drive: rate_limiter: ops: size");
	expect_error("{\"drive_id\": \"d\", \"is_root_device\": false, \"socket\": \"/s\"}",
		     "vhost-user");
	/* partuuid goes into the kernel command line. */
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": true,"
		     " \"partuuid\": \"x init=/bin/sh\"}", "partuuid: must be printable");
	expect_error("{\"drive_id\": \"d\", \"path_on_host\": \"/i\", \"is_root_device\": true,"
		     " \"partuuid\": \"a\\\"b\"}", "partuuid");
}

static void json_view(void **state)
{
	(void)state;
	struct drive_config c = {0};
	assert_int_equal(parse("{\"drive_id\": \"rootfs\", \"path_on_host\": \"/img\","
			       " \"is_root_device\": true, \"is_read_only\": false}", &c, NULL), 0);
	json_t *j = drive_config_json(&c);
	char *s = json_dumps(j, JSON_COMPACT);
	assert_string_equal(s, "{\"drive_id\":\"rootfs\",\"partuuid\":null,\"is_root_device\":true,"
			       "\"cache_type\":\"Unsafe\",\"is_read_only\":false,"
			       "\"path_on_host\":\"/img\",\"rate_limiter\":null,"
			       "\"io_engine\":\"Sync\",\"socket\":null}");
	free(s);
	/* The view parses back to the same drive. */
	struct drive_config back = {0};
	assert_int_equal(drive_config_parse(j, &back, NULL), 0);
	assert_string_equal(back.drive_id, "rootfs");
	assert_true(back.is_root_device);
	json_decref(j);
	drive_config_free(&back);
	drive_config_free(&c);
}

static void patches(void **state)
{
	(void)state;
	struct drive_patch p = {0};
	ember_err e = {{0}};
	json_t *j = json_loads("{\"drive_id\": \"d\", \"path_on_host\": \"/new\","
			       " \"rate_limiter\": {\"ops\": {\"size\": 10, \"refill_time\": 1000}}}",
			       0, NULL);
	assert_int_equal(drive_patch_parse(j, &p, &e), 0);
	json_decref(j);
	assert_string_equal(p.drive_id, "d");
	assert_string_equal(p.path_on_host, "/new");
	assert_true(p.rate_limiter.has_ops);
	assert_false(p.rate_limiter.has_bandwidth);

	struct drive_config c = {0};
	assert_int_equal(parse("{\"drive_id\": \"d\", \"path_on_host\": \"/old\","
			       " \"is_root_device\": false, \"rate_limiter\": {\"bandwidth\":"
			       " {\"size\": 5, \"refill_time\": 7}}}", &c, NULL), 0);
	assert_int_equal(drive_config_apply_patch(&c, &p, &e), 0);
	assert_string_equal(c.path_on_host, "/new");
	assert_true(c.rate_limiter.has_bandwidth); /* absent bucket kept */
	assert_int_equal(c.rate_limiter.ops.size, 10);
	drive_config_free(&c);

	j = json_loads("{\"drive_id\": \"d\"}", 0, NULL);
	assert_int_equal(drive_patch_parse(j, &p, &e), 0);
	json_decref(j);
	assert_null(p.path_on_host);
	drive_patch_free(&p);

	static const char *const bad[][2] = {
		{"{\"path_on_host\": \"/x\"}", "missing field \"drive_id\""},
		{"{\"drive_id\": \"d\", \"is_read_only\": true}", "unknown field \"is_read_only\""},
		{"{\"drive_id\": \"d\", \"path_on_host\": 3}", "path_on_host: expected string"},
		{"{\"drive_id\": \"d\", \"rate_limiter\": 3}", "drive update: rate_limiter"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = json_loads(bad[i][0], 0, NULL);
		assert_int_equal(drive_patch_parse(j, &p, &e), -1);
		json_decref(j);
		if (!strstr(e.msg, bad[i][1]))
			fail_msg("error \"%s\" does not mention \"%s\"", e.msg, bad[i][1]);
	}
}

static void root_cmdline(void **state)
{
	(void)state;
	struct drive_config d[3] = {
		{.drive_id = "data", .is_root_device = false},
		{.drive_id = "rootfs", .is_root_device = true, .is_read_only = false},
		{.drive_id = "other", .is_root_device = false},
	};
	char buf[64];
	ember_err e;
	assert_int_equal(drive_root_cmdline(d, 3, buf, sizeof(buf), &e), 16);
	assert_string_equal(buf, "root=/dev/vda rw");
	d[1].is_read_only = true;
	drive_root_cmdline(d, 3, buf, sizeof(buf), &e);
	assert_string_equal(buf, "root=/dev/vda ro");
	d[1].partuuid = "0eaa91a0-01";
	drive_root_cmdline(d, 3, buf, sizeof(buf), &e);
	assert_string_equal(buf, "root=PARTUUID=0eaa91a0-01 ro");
	assert_int_equal(drive_root_cmdline(d, 1, buf, sizeof(buf), &e), 0);
	assert_string_equal(buf, "");
	assert_int_equal(drive_root_cmdline(d, 3, buf, 10, &e), -1);
	d[2].is_root_device = true;
	assert_int_equal(drive_root_cmdline(d, 3, buf, sizeof(buf), &e), -1);
	assert_non_null(strstr(e.msg, "both the root device"));
}

static struct drive_config drive(const char *id, bool root)
{
	struct drive_config d = {0};
	char text[160];
	snprintf(text, sizeof(text), "{\"drive_id\": \"%s\", \"path_on_host\": \"/%s\","
		 " \"is_root_device\": %s}", id, id, root ? "true" : "false");
	assert_int_equal(parse(text, &d, NULL), 0);
	return d;
}

static void order(struct drive_list *l, const char *want)
{
	char got[64] = "";
	for (size_t i = 0; i < l->n; i++)
		strcat(got, l->v[i].drive_id);
	assert_string_equal(got, want);
}

/* Firecracker's BlockBuilder: replace by id, one root, root first. */
static void drive_list_rules(void **state)
{
	(void)state;
	struct drive_list l = {0};
	ember_err e = {{0}};
	struct drive_config d = drive("a", false);
	assert_int_equal(drive_list_put(&l, &d, &e), 0);
	assert_null(d.drive_id);
	d = drive("b", false);
	drive_list_put(&l, &d, &e);
	d = drive("r", true);
	drive_list_put(&l, &d, &e);
	order(&l, "rab");
	/* A second root is refused, and the refused drive stays the caller's. */
	d = drive("s", true);
	assert_int_equal(drive_list_put(&l, &d, &e), -1);
	assert_non_null(strstr(e.msg, "a root block device already exists (drive r)"));
	drive_config_free(&d);
	/* Replacing the root by id is fine; replacing it with a non-root
	 * leaves it in place. */
	d = drive("r", true);
	assert_int_equal(drive_list_put(&l, &d, &e), 0);
	d = drive("r", false);
	drive_list_put(&l, &d, &e);
	order(&l, "rab");
	/* A drive that becomes the root swaps with the first. */
	d = drive("b", true);
	assert_int_equal(drive_list_put(&l, &d, &e), 0);
	order(&l, "bar");
	assert_string_equal(drive_list_find(&l, "a")->path_on_host, "/a");
	assert_null(drive_list_find(&l, "zz"));
	char buf[64];
	drive_root_cmdline(l.v, l.n, buf, sizeof(buf), &e);
	assert_string_equal(buf, "root=/dev/vda rw");
	json_t *j = drive_list_json(&l);
	assert_int_equal(json_array_size(j), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "drive_id")),
			    "b");
	json_decref(j);
	drive_list_free(&l);
	assert_int_equal(l.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_drive),	     cmocka_unit_test(defaults_and_nulls),
		cmocka_unit_test(rejects_bad_drives), cmocka_unit_test(json_view),
		cmocka_unit_test(patches),	     cmocka_unit_test(root_cmdline),
		cmocka_unit_test(drive_list_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
