#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "mmds/config.h"

static int parse(const char *text, struct mmds_config *c, ember_err *e)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
	if (!j)
		fail_msg("bad test JSON: %s", text);
	int rc = mmds_config_parse(j, c, e);
	json_decref(j);
	return rc;
}

static void full_and_defaults(void **state)
{
	(void)state;
	struct mmds_config c = {0};
	ember_err e = {{0}};
	assert_int_equal(parse("{\"version\": \"V2\", \"network_interfaces\": [\"eth0\", \"eth1\"], "
			       "\"ipv4_address\": \"169.254.170.2\", \"imds_compat\": true}", &c, &e), 0);
	assert_int_equal(c.version, MMDS_V2);
	assert_int_equal(c.n_network_interfaces, 2);
	assert_string_equal(c.network_interfaces[1], "eth1");
	assert_int_equal(c.ipv4_address, 0xa9feaa02);
	assert_true(c.imds_compat);

	/* A new config replaces the old one whole: defaults come back. */
	assert_int_equal(parse("{\"network_interfaces\": [\"eth0\"]}", &c, &e), 0);
	assert_int_equal(c.version, MMDS_V1);
	assert_int_equal(c.n_network_interfaces, 1);
	assert_int_equal(c.ipv4_address, MMDS_DEFAULT_IPV4);
	assert_false(c.imds_compat);
	/* ipv4_address is an Option in Firecracker: null means the default. */
	assert_int_equal(parse("{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": null, "
			       "\"version\": \"V1\"}", &c, &e), 0);
	assert_int_equal(c.ipv4_address, MMDS_DEFAULT_IPV4);
	/* Edges of the usable link-local range. */
	assert_int_equal(parse("{\"network_interfaces\": [\"a\"], \"ipv4_address\": \"169.254.1.0\"}",
			       &c, &e), 0);
	assert_int_equal(parse("{\"network_interfaces\": [\"a\"], "
			       "\"ipv4_address\": \"169.254.254.255\"}", &c, &e), 0);
	mmds_config_free(&c);
}

static void expect_error(const char *text, const char *needle)
{
	struct mmds_config c = {0};
	ember_err e = {{0}};
	assert_int_equal(parse("{\"network_interfaces\": [\"keep\"]}", &c, NULL), 0);
	if (parse(text, &c, &e) != -1)
		fail_msg("accepted: %s", text);
	if (!strstr(e.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, needle);
	if (strncmp(e.msg, "mmds-config: ", 13))
		fail_msg("error \"%s\" does not name mmds-config", e.msg);
	/* A rejected config changes nothing. */
	assert_int_equal(c.n_network_interfaces, 1);
	assert_string_equal(c.network_interfaces[0], "keep");
	mmds_config_free(&c);
}

static void rejects_bad_input(void **state)
{
	(void)state;
	expect_error("[]", "expected an object");
	expect_error("{}", "missing field \"network_interfaces\"");
	expect_error("{\"network_interfaces\": []}", "network_interfaces is empty");
	expect_error("{\"network_interfaces\": \"eth0\"}", "network_interfaces: expected an array, got string");
	expect_error("{\"network_interfaces\": [\"eth0\", 1]}", "network_interfaces[1]: expected string");
	expect_error("{\"network_interfaces\": [\"eth0\"], \"bogus\": 1}", "unknown field \"bogus\"");
	expect_error("{\"network_interfaces\": [\"eth0\"], \"version\": \"V3\"}", "V1 or V2");
	expect_error("{\"network_interfaces\": [\"eth0\"], \"version\": 2}", "version: expected string");
	expect_error("{\"network_interfaces\": [\"eth0\"], \"imds_compat\": 1}",
		     "imds_compat: expected boolean");
	expect_error("{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": 5}",
		     "ipv4_address: expected string");
	static const char *const bad_syntax[] = {
		"", "169.254.1", "169.254.1.1.1", "169.254.01.1", "169.254.1.256", "169.254.1.-1",
		"169.254.1.1 ", "+169.254.1.1", "169.254..1", "169.254.1.1000",
	};
	for (size_t i = 0; i < sizeof(bad_syntax) / sizeof(bad_syntax[0]); i++) {
		char buf[128];
		snprintf(buf, sizeof(buf), "{\"network_interfaces\": [\"eth0\"], "
			 "\"ipv4_address\": \"%s\"}", bad_syntax[i]);
		expect_error(buf, "is not an IPv4 address");
	}
	static const char *const not_link_local[] = {
		"10.0.0.1", "169.254.0.1", "169.254.255.1", "169.253.1.1", "170.254.1.1",
	};
	for (size_t i = 0; i < sizeof(not_link_local) / sizeof(not_link_local[0]); i++) {
		char buf[128];
		snprintf(buf, sizeof(buf), "{\"network_interfaces\": [\"eth0\"], "
			 "\"ipv4_address\": \"%s\"}", not_link_local[i]);
		expect_error(buf, "is not link local");
	}
}

static void interfaces_must_exist(void **state)
{
	(void)state;
	struct mmds_config c = {0};
	ember_err e = {{0}};
	const char *const known[] = {"eth0", "eth1"};
	assert_int_equal(parse("{\"network_interfaces\": [\"eth1\", \"eth0\"]}", &c, &e), 0);
	assert_int_equal(mmds_config_check_ifaces(&c, known, 2, &e), 0);
	assert_int_equal(parse("{\"network_interfaces\": [\"eth0\", \"eth9\"]}", &c, &e), 0);
	assert_int_equal(mmds_config_check_ifaces(&c, known, 2, &e), -1);
	assert_non_null(strstr(e.msg, "\"eth9\""));
	mmds_config_free(&c);
}

static void json_view(void **state)
{
	(void)state;
	struct mmds_config c = {0};
	assert_int_equal(parse("{\"version\": \"V2\", \"network_interfaces\": [\"eth0\"], "
			       "\"imds_compat\": true}", &c, NULL), 0);
	json_t *j = mmds_config_json(&c);
	char *s = json_dumps(j, JSON_COMPACT);
	assert_string_equal(s, "{\"version\":\"V2\",\"imds_compat\":true,"
			       "\"network_interfaces\":[\"eth0\"],\"ipv4_address\":\"169.254.169.254\"}");
	free(s);
	/* The view parses back to the same config. */
	struct mmds_config back = {0};
	assert_int_equal(mmds_config_parse(j, &back, NULL), 0);
	assert_int_equal(back.version, MMDS_V2);
	assert_true(back.imds_compat);
	assert_int_equal(back.ipv4_address, MMDS_DEFAULT_IPV4);
	json_decref(j);
	mmds_config_free(&back);
	mmds_config_free(&c);
	assert_string_equal(mmds_version_name(MMDS_V1), "V1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_and_defaults),
		cmocka_unit_test(rejects_bad_input),
		cmocka_unit_test(interfaces_must_exist),
		cmocka_unit_test(json_view),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
