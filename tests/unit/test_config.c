#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/config.h"

static int parse(const char *text, struct vmm_config *c, ember_err *e)
{
	config_init(c);
	return config_parse_text(text, strlen(text), c, e);
}

static void full_config(void **state)
{
	(void)state;
	struct vmm_config c;
	ember_err e = {{0}};
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\", "
			       "\"boot_args\": \"console=ttyS0\", \"initrd_path\": \"/i\"},"
			       " \"machine-config\": {\"vcpu_count\": 4, \"mem_size_mib\": 512,"
			       " \"smt\": false, \"track_dirty_pages\": true},"
			       " \"drives\": [], \"network-interfaces\": []}", &c, &e), 0);
	assert_string_equal(c.boot_source.kernel_image_path, "/k");
	assert_string_equal(c.boot_source.boot_args, "console=ttyS0");
	assert_string_equal(c.boot_source.initrd_path, "/i");
	assert_int_equal(c.machine.vcpu_count, 4);
	assert_int_equal(c.machine.mem_size_mib, 512);
	assert_true(c.machine.track_dirty_pages);
	config_free(&c);
}

/* Firecracker's own example configs and its GET /vm/config carry explicit
 * nulls for every unset optional field and section: null means absent. */
static void nulls_mean_absent(void **state)
{
	(void)state;
	struct vmm_config c;
	ember_err e = {{0}};
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\","
			       "  \"initrd_path\": null, \"boot_args\": null},"
			       " \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256,"
			       "  \"smt\": null, \"cpu_template\": null, \"track_dirty_pages\": null,"
			       "  \"huge_pages\": null},"
			       " \"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"/r\","
			       "   \"is_root_device\": true, \"partuuid\": null, \"cache_type\": null,"
			       "   \"is_read_only\": null, \"rate_limiter\": null, \"io_engine\": null,"
			       "   \"socket\": null}],"
			       " \"network-interfaces\": [{\"iface_id\": \"eth0\","
			       "   \"host_dev_name\": \"tap0\", \"guest_mac\": null, \"mtu\": null,"
			       "   \"rx_rate_limiter\": {\"bandwidth\": null, \"ops\": {\"size\": 10,"
			       "     \"one_time_burst\": null, \"refill_time\": 100}},"
			       "   \"tx_rate_limiter\": null}],"
			       " \"logger\": {\"log_path\": null, \"level\": null, \"show_level\": null,"
			       "   \"show_log_origin\": null, \"module\": null},"
			       " \"metrics\": null, \"balloon\": null, \"vsock\": null,"
			       " \"mmds-config\": {\"network_interfaces\": [\"eth0\"], \"version\": null,"
			       "   \"ipv4_address\": null, \"imds_compat\": null},"
			       " \"entropy\": null, \"cpu-config\": null}", &c, &e), 0);
	assert_null(c.boot_source.initrd_path);
	assert_null(c.boot_source.boot_args);
	assert_int_equal(c.machine.vcpu_count, 2);
	assert_int_equal(c.drives.n, 1);
	assert_int_equal(c.drives.v[0].cache_type, DRIVE_CACHE_UNSAFE);
	assert_false(c.net[0].has_guest_mac);
	assert_false(c.net[0].rx.has_bandwidth);
	assert_true(c.net[0].rx.has_ops);
	assert_false(c.has_metrics);
	assert_true(c.has_logger && !c.logger.has_level && !c.logger.log_path);
	assert_true(c.has_mmds);
	config_free(&c);
	/* A required field is still required: null is not a value for it. */
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": null}}", &c, &e), -1);
	assert_non_null(strstr(e.msg, "kernel_image_path: expected string, got null"));
	config_free(&c);
}

/* A device kind with its own section (entropy) is parsed by its own
 * parser, and a second section of the same kind is refused as JSON's
 * duplicate key is. */
static void device_kind_sections(void **state)
{
	(void)state;
	struct vmm_config c;
	ember_err e = {{0}};
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
			       " \"entropy\": {\"rate_limiter\": {\"ops\": {\"size\": 5,"
			       " \"refill_time\": 10}}}}", &c, &e), 0);
	assert_int_equal(c.nr_devices, 1);
	assert_ptr_equal(c.devices[0].ops, &entropy_device_ops);
	assert_non_null(config_find_device(&c, &entropy_device_ops));
	json_t *j = entropy_device_ops.config->to_json(c.devices[0].cfg);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(
				 j, "rate_limiter"), "ops"), "size")), 5);
	json_decref(j);
	config_free(&c);
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
			       " \"entropy\": {\"bogus\": 1}}", &c, &e), -1);
	assert_non_null(strstr(e.msg, "entropy: unknown field `bogus`"));
	config_free(&c);
}

/* The config file checks ids as the API's paths do. */
static void drive_ids_checked(void **state)
{
	(void)state;
	struct vmm_config c;
	ember_err e = {{0}};
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
			       " \"drives\": [{\"drive_id\": \"my drive!\", \"path_on_host\": \"/r\","
			       "   \"is_root_device\": true}]}", &c, &e), -1);
	assert_non_null(strstr(e.msg, "drive_id \"my drive!\" is invalid"));
	config_free(&c);
	char id[80];
	memset(id, 'a', 65);
	id[65] = 0;
	char text[300];
	snprintf(text, sizeof(text), "{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
		 " \"drives\": [{\"drive_id\": \"%s\", \"path_on_host\": \"/r\","
		 "   \"is_root_device\": true}]}", id);
	assert_int_equal(parse(text, &c, &e), -1);
	assert_non_null(strstr(e.msg, "is invalid"));
	config_free(&c);
}

/* 16 virtio devices at most (one GSI each): refused when parsed. */
static void device_limit(void **state)
{
	(void)state;
	struct vmm_config c;
	ember_err e = {{0}};
	char text[4096];
	for (int drives = 4; drives <= 5; drives++) {
		int n = snprintf(text, sizeof(text), "{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
				 " \"drives\": [");
		for (int i = 0; i < drives; i++)
			n += snprintf(text + n, sizeof(text) - (size_t)n, "%s{\"drive_id\": \"d%d\","
				      " \"path_on_host\": \"/d\", \"is_root_device\": false}",
				      i ? "," : "", i);
		n += snprintf(text + n, sizeof(text) - (size_t)n, "], \"network-interfaces\": [");
		for (int i = 0; i < 12; i++)
			n += snprintf(text + n, sizeof(text) - (size_t)n, "%s{\"iface_id\": \"eth%d\","
				      " \"host_dev_name\": \"tap%d\"}", i ? "," : "", i, i);
		snprintf(text + n, sizeof(text) - (size_t)n, "]}");
		int rc = parse(text, &c, &e);
		config_free(&c);
		if (drives == 4) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, -1);
			assert_non_null(strstr(e.msg, "at most 16 virtio devices"));
		}
	}
}

static void device_and_service_sections(void **state)
{
	(void)state;
	struct vmm_config c;
	ember_err e = {{0}};
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"},"
			       " \"drives\": [{\"drive_id\": \"data\", \"path_on_host\": \"/d\","
			       "   \"is_root_device\": false},"
			       "  {\"drive_id\": \"root\", \"path_on_host\": \"/r\","
			       "   \"is_root_device\": true, \"io_engine\": \"Async\"}],"
			       " \"network-interfaces\": [{\"iface_id\": \"eth0\","
			       "   \"host_dev_name\": \"tap0\", \"guest_mac\": \"02:00:00:00:00:01\"}],"
			       " \"mmds-config\": {\"network_interfaces\": [\"eth0\"], \"version\": \"V2\"},"
			       " \"logger\": {\"level\": \"debug\", \"show_level\": true},"
			       " \"metrics\": {\"metrics_path\": \"/m\"}}", &c, &e), 0);
	assert_int_equal(c.drives.n, 2);
	/* The root drive goes first, so that it is /dev/vda. */
	assert_string_equal(c.drives.v[0].drive_id, "root");
	assert_int_equal(c.drives.v[0].io_engine, DRIVE_IO_ASYNC);
	assert_int_equal(c.nr_net, 1);
	assert_int_equal(c.net[0].guest_mac[5], 1);
	assert_true(c.has_mmds);
	assert_int_equal(c.mmds.version, MMDS_V2);
	assert_true(c.has_logger && c.logger.has_level);
	assert_int_equal(c.logger.level, LOG_DEBUG);
	assert_true(c.has_metrics);
	assert_string_equal(c.metrics.metrics_path, "/m");
	config_free(&c);
}

static void defaults(void **state)
{
	(void)state;
	struct vmm_config c;
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}}", &c, NULL), 0);
	assert_null(c.boot_source.boot_args);
	assert_null(c.boot_source.initrd_path);
	assert_int_equal(c.machine.vcpu_count, 1);
	assert_int_equal(c.machine.mem_size_mib, 128);
	config_free(&c);
}

static void huge_pages(void **state)
{
	(void)state;
	struct vmm_config c;
	assert_int_equal(parse("{\"boot-source\": {\"kernel_image_path\": \"/k\"}, "
			       "\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64, "
			       "\"huge_pages\": \"2M\"}}", &c, NULL), 0);
	assert_int_equal(c.machine.huge_pages, HUGE_PAGES_2M);
	assert_string_equal(huge_pages_name(c.machine.huge_pages), "2M");
	/* A PATCH is checked merged: odd sizes are fine with 4 KiB pages only. */
	struct machine_config m = c.machine;
	ember_err e = {{0}};
	m.mem_size_mib = 65;
	assert_int_equal(config_check_machine(&m, &e), -1);
	assert_non_null(strstr(e.msg, "page size"));
	m.huge_pages = HUGE_PAGES_TRANSPARENT;
	assert_int_equal(config_check_machine(&m, NULL), -1);
	m.huge_pages = HUGE_PAGES_NONE;
	assert_int_equal(config_check_machine(&m, NULL), 0);
	config_free(&c);
}

static void expect_error(const char *text, const char *needle)
{
	struct vmm_config c;
	ember_err e = {{0}};
	assert_int_equal(parse(text, &c, &e), -1);
	if (!strstr(e.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, needle);
	config_free(&c);
}

static void rejects_bad_input(void **state)
{
	(void)state;
	const char *k = "\"boot-source\": {\"kernel_image_path\": \"/k\"}";
	char buf[512];
	expect_error("{", "JSON");
	expect_error("[]", "object");
	expect_error("{}", "boot-source");
	expect_error("{\"boot-source\": {\"kernel_image_path\": \"/k\", \"bogus\": 1}}", "bogus");
	expect_error("{\"boot-source\": {}}", "kernel_image_path");
	expect_error("{\"boot-source\": {\"kernel_image_path\": \"\"}}", "kernel_image_path");
	expect_error("{\"boot-source\": {\"kernel_image_path\": 7}}", "boot-source");
	snprintf(buf, sizeof(buf), "{%s, \"surprise\": 1}", k);
	expect_error(buf, "surprise");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 0, \"mem_size_mib\": 128}}", k);
	expect_error(buf, "vcpu_count");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 33, \"mem_size_mib\": 128}}", k);
	expect_error(buf, "vcpu_count");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": -1, \"mem_size_mib\": 128}}", k);
	expect_error(buf, "vcpu_count");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 0}}", k);
	expect_error(buf, "mem_size_mib");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 1}}", k);
	expect_error(buf, "mem_size_mib");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"x\": 1}}", k);
	expect_error(buf, "x");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": \"2\", \"mem_size_mib\": 128}}", k);
	expect_error(buf, "vcpu_count: expected integer, got string");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 1.5}}", k);
	expect_error(buf, "mem_size_mib: expected integer");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 8, \"smt\": 1}}", k);
	expect_error(buf, "smt: expected boolean");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 65, \"huge_pages\": \"2M\"}}", k);
	expect_error(buf, "not a multiple of the configured page size");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64, \"huge_pages\": \"1G\"}}", k);
	expect_error(buf, "huge_pages");
	snprintf(buf, sizeof(buf), "{%s, \"machine-config\": []}", k);
	expect_error(buf, "expected an object");
	snprintf(buf, sizeof(buf), "{%s, \"mmds-config\": {\"network_interfaces\": [\"eth9\"]}}", k);
	expect_error(buf, "eth9");
	snprintf(buf, sizeof(buf), "{%s, \"network-interfaces\": [{\"iface_id\": \"a\", "
		 "\"host_dev_name\": \"t\"}, {\"iface_id\": \"a\", \"host_dev_name\": \"u\"}]}", k);
	expect_error(buf, "twice");
	snprintf(buf, sizeof(buf), "{%s, \"logger\": {\"level\": \"loud\"}}", k);
	expect_error(buf, "level");
	snprintf(buf, sizeof(buf), "{%s, \"drives\": [{}]}", k);
	expect_error(buf, "drive_id");
	snprintf(buf, sizeof(buf), "{%s, %s}", k, k);
	expect_error(buf, "duplicate");
}

#define BOOT "\"boot-source\": {\"kernel_image_path\": \"/k\"}"

/* smt, static templates and custom ones, as Firecracker combines them. */
static void cpu_model(void **state)
{
	(void)state;
	struct vmm_config c;
	ember_err e = {{0}};
	assert_int_equal(parse("{" BOOT ", \"machine-config\": {\"vcpu_count\": 2, "
			       "\"mem_size_mib\": 64, \"smt\": true, \"cpu_template\": \"T2A\"}}",
			       &c, &e), 0);
	assert_true(c.machine.smt);
	assert_int_equal(c.machine.cpu_template, CPU_TEMPLATE_T2A);
	assert_null(c.cpu_custom);

	/* An odd count with smt, whichever update makes it so; nothing changes. */
	struct machine_patch p = {.has_vcpu_count = true, .v.vcpu_count = 3};
	assert_int_equal(config_update_machine(&c, &p, &e), -1);
	assert_non_null(strstr(e.msg, "even number if SMT is enabled"));
	assert_int_equal(c.machine.vcpu_count, 2);
	p = (struct machine_patch){.has_vcpu_count = true, .v.vcpu_count = 1};
	assert_int_equal(config_update_machine(&c, &p, &e), 0);

	/* A custom template replaces the static one... */
	struct cpu_template *t = calloc(1, sizeof(*t));
	config_set_cpu_custom(&c, t);
	assert_int_equal(c.machine.cpu_template, CPU_TEMPLATE_NONE);
	/* ...an update without cpu_template keeps it, with one ("None" too)
	 * drops it. */
	p = (struct machine_patch){.has_smt = true};
	assert_int_equal(config_update_machine(&c, &p, &e), 0);
	assert_ptr_equal(c.cpu_custom, t);
	p = (struct machine_patch){.has_cpu_template = true, .v.cpu_template = CPU_TEMPLATE_NONE};
	assert_int_equal(config_update_machine(&c, &p, &e), 0);
	assert_null(c.cpu_custom);
	config_free(&c);

	/* The config file's cpu-config, an object, wins over machine-config's
	 * template whatever the order. */
	assert_int_equal(parse("{\"cpu-config\": {\"msr_modifiers\": [{\"addr\": \"0x10a\", "
			       "\"bitmap\": \"0b1\"}]}, " BOOT ", \"machine-config\": "
			       "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"cpu_template\": \"C3\"}}",
			       &c, &e), 0);
	assert_non_null(c.cpu_custom);
	assert_int_equal(c.cpu_custom->n_msr, 1);
	assert_int_equal(c.machine.cpu_template, CPU_TEMPLATE_NONE);
	config_free(&c);

	/* Or a file's path. */
	char path[] = "/tmp/ember-test-cpu-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char tmpl[] = "{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", "
			    "\"flags\": 0, \"modifiers\": [{\"register\": \"ecx\", "
			    "\"bitmap\": \"0bxxxx0\"}]}]}";
	assert_int_equal(write(fd, tmpl, sizeof(tmpl) - 1), (ssize_t)sizeof(tmpl) - 1);
	close(fd);
	char text[512];
	snprintf(text, sizeof(text), "{" BOOT ", \"cpu-config\": \"%s\"}", path);
	assert_int_equal(parse(text, &c, &e), 0);
	assert_int_equal(c.cpu_custom->n_cpuid, 1);
	config_free(&c);
	unlink(path);
	assert_int_equal(parse(text, &c, &e), -1);
	assert_non_null(strstr(e.msg, path));
	config_free(&c);
	snprintf(text, sizeof(text), "{" BOOT ", \"cpu-config\": {\"cpuid_modifiers\": 5}}");
	assert_int_equal(parse(text, &c, &e), -1);
	assert_non_null(strstr(e.msg, "cpuid_modifiers"));
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(full_config),
		cmocka_unit_test(defaults),
		cmocka_unit_test(huge_pages),
		cmocka_unit_test(device_and_service_sections),
		cmocka_unit_test(nulls_mean_absent),
		cmocka_unit_test(device_limit),
		cmocka_unit_test(drive_ids_checked),
		cmocka_unit_test(device_kind_sections),
		cmocka_unit_test(rejects_bad_input),
		cmocka_unit_test(cpu_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
