/* The API thread's request parsing: routes, bodies and Firecracker's errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "api/parse.h"
#include "vmm/routes.h"

static int parse(const char *method, const char *path, const char *body,
		 struct vmm_request *req, struct vmm_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	return api_parse(method, path, body, body ? strlen(body) : 0, req, resp);
}

static void expect_fault(const char *method, const char *path, const char *body,
			 const char *needle)
{
	struct vmm_request req;
	struct vmm_response resp;
	assert_int_equal(parse(method, path, body, &req, &resp), -1);
	assert_int_equal(resp.status, 400);
	assert_non_null(resp.body);
	json_t *j = json_loads(resp.body, 0, NULL);
	assert_non_null(j);
	const char *msg = json_string_value(json_object_get(j, "fault_message"));
	assert_non_null(msg);
	if (!strstr(msg, needle))
		fail_msg("fault_message \"%s\" does not mention \"%s\"", msg, needle);
	json_decref(j);
	free(resp.body);
}

/* The table's pre/post-boot rules, which the VMM thread applies. */
static void when_rules(void **state)
{
	(void)state;
	assert_int_equal(api_request_when(REQ_INSTANCE_START), ROUTE_BEFORE_START);
	assert_int_equal(api_request_when(REQ_SEND_CTRL_ALT_DEL), ROUTE_AFTER_START);
	assert_int_equal(api_request_when(REQ_PAUSE), ROUTE_AFTER_START);
	assert_int_equal(api_request_when(REQ_PUT_DRIVE), ROUTE_BEFORE_START);
	assert_int_equal(api_request_when(REQ_PATCH_DRIVE), ROUTE_AFTER_START);
	assert_int_equal(api_request_when(REQ_PATCH_NET), ROUTE_AFTER_START);
	assert_int_equal(api_request_when(REQ_PUT_MMDS), ROUTE_ALWAYS);
	assert_int_equal(api_request_when(REQ_GET_VM_CONFIG), ROUTE_ALWAYS);
	/* Every route a method and path reach is the one the table lists. */
	const char *id = NULL;
	const struct api_route *r = api_route_find(API_PATCH, "/drives/rootfs", &id);
	assert_non_null(r);
	assert_int_equal(r->kind, REQ_PATCH_DRIVE);
	assert_string_equal(id, "rootfs");
	assert_null(api_route_find(API_GET, "/drives/rootfs", &id));
	/* A device kind with its own config has PUT /<key>, before boot. */
	r = api_route_find(API_PUT, "/entropy", NULL);
	assert_non_null(r);
	assert_int_equal(r->kind, REQ_PUT_DEVICE);
	assert_ptr_equal(r->device, &entropy_device_ops);
	assert_int_equal(api_request_when(REQ_PUT_DEVICE), ROUTE_BEFORE_START);
	struct vmm_request req;
	struct vmm_response resp = {0};
	assert_int_equal(api_parse("PUT", "/entropy", "{}", 2, &req, &resp), 0);
	assert_int_equal(req.kind, REQ_PUT_DEVICE);
	assert_non_null(req.device_cfg);
	vmm_request_free(&req);
	/* A kind's own requests: GET /balloon/statistics after start only,
	 * GET /balloon always, PATCH /balloon/hinting/start with or without a
	 * body. */
	r = api_route_find(API_GET, "/balloon/statistics", NULL);
	assert_non_null(r);
	assert_null(r->missing);
	assert_int_equal(r->kind, REQ_DEVICE_REQUEST);
	assert_ptr_equal(r->device, &balloon_device_ops);
	assert_int_equal(r->device_req->when, ROUTE_AFTER_START);
	r = api_route_find(API_GET, "/balloon", NULL);
	assert_non_null(r);
	assert_int_equal(r->device_req->when, ROUTE_ALWAYS);
	assert_null(api_route_find(API_GET, "/balloon/nope", NULL));
	assert_int_equal(api_parse("PATCH", "/balloon/hinting/start", "", 0, &req, &resp), 0);
	assert_int_equal(req.kind, REQ_DEVICE_REQUEST);
	assert_true(*(bool *)req.device_arg);
	vmm_request_free(&req);
	assert_int_equal(api_parse("PATCH", "/balloon/hinting/start",
				   "{\"acknowledge_on_stop\": false}", 30, &req, &resp), 0);
	assert_false(*(bool *)req.device_arg);
	vmm_request_free(&req);
	assert_int_equal(api_parse("PATCH", "/balloon", "{\"amount_mib\": 64}", 18, &req, &resp),
			 0);
	assert_int_equal(*(uint32_t *)req.device_arg, 64);
	vmm_request_free(&req);
	assert_int_equal(api_parse("PUT", "/serial", "{\"serial_out_path\": \"/tmp/c\"}", 29,
				   &req, &resp), 0);
	assert_int_equal(req.kind, REQ_PUT_SERIAL);
	assert_string_equal(req.serial_out_path, "/tmp/c");
	assert_int_equal(api_request_when(REQ_PUT_SERIAL), ROUTE_BEFORE_START);
	vmm_request_free(&req);
}

static void routes(void **state)
{
	(void)state;
	struct vmm_request req;
	struct vmm_response resp;
	assert_int_equal(parse("GET", "/", NULL, &req, &resp), 0);
	assert_int_equal(req.kind, REQ_GET_INFO);
	assert_int_equal(parse("GET", "/version", NULL, &req, &resp), 0);
	assert_int_equal(req.kind, REQ_GET_VERSION);
	assert_int_equal(parse("GET", "/vm/config", NULL, &req, &resp), 0);
	assert_int_equal(req.kind, REQ_GET_VM_CONFIG);
	assert_int_equal(parse("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", &req,
			       &resp), 0);
	assert_int_equal(req.kind, REQ_INSTANCE_START);
	assert_int_equal(parse("PATCH", "/vm", "{\"state\": \"Paused\"}", &req, &resp), 0);
	assert_int_equal(req.kind, REQ_PAUSE);
	assert_int_equal(parse("PATCH", "/vm", "{\"state\": \"Resumed\"}", &req, &resp), 0);
	assert_int_equal(req.kind, REQ_RESUME);
	assert_int_equal(parse("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", &req,
			       &resp), 0);
	assert_int_equal(req.kind, REQ_FLUSH_METRICS);
	assert_int_equal(parse("GET", "/mmds", NULL, &req, &resp), 0);
	assert_int_equal(req.kind, REQ_GET_MMDS);
}

static void bodies(void **state)
{
	(void)state;
	struct vmm_request req;
	struct vmm_response resp;
	assert_int_equal(parse("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 256}",
			       &req, &resp), 0);
	assert_int_equal(req.kind, REQ_PUT_MACHINE_CONFIG);
	assert_int_equal(req.patch.v.vcpu_count, 2);
	assert_int_equal(req.patch.v.mem_size_mib, 256);

	assert_int_equal(parse("PATCH", "/machine-config", "{\"mem_size_mib\": 64}", &req, &resp),
			 0);
	assert_true(req.patch.has_mem_size_mib);
	assert_false(req.patch.has_vcpu_count);

	assert_int_equal(parse("PUT", "/boot-source", "{\"kernel_image_path\": \"/k\"}", &req,
			       &resp), 0);
	assert_string_equal(req.boot_source.kernel_image_path, "/k");
	vmm_request_free(&req);

	assert_int_equal(parse("PUT", "/mmds", "[1, \"two\"]", &req, &resp), 0);
	assert_int_equal(req.kind, REQ_PUT_MMDS);
	assert_true(json_is_array(req.mmds_data));
	vmm_request_free(&req);

	assert_int_equal(parse("PUT", "/network-interfaces/eth0",
			       "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", "
			       "\"guest_mac\": \"06:00:AC:10:00:02\", \"rx_rate_limiter\": null}",
			       &req, &resp), 0);
	assert_int_equal(req.kind, REQ_PUT_NET);
	assert_true(req.net.has_guest_mac);
	assert_int_equal(req.net.guest_mac[2], 0xac);
	vmm_request_free(&req);

	assert_int_equal(parse("PUT", "/logger", "{\"level\": \"debug\", \"show_level\": true}",
			       &req, &resp), 0);
	assert_int_equal(req.kind, REQ_PUT_LOGGER);
	assert_true(req.logger.has_level);
	assert_int_equal(req.logger.level, LOG_DEBUG);
	assert_false(req.logger.has_show_log_origin);
	vmm_request_free(&req);
}

static void faults(void **state)
{
	(void)state;
	/* Firecracker's words: the path's first segment, a full stop. */
	expect_fault("GET", "/nope", NULL, "Invalid request method and/or path: GET nope.");
	expect_fault("GET", "/vm/nope", NULL, "Invalid request method and/or path: GET vm.");
	expect_fault("DELETE", "/machine-config", NULL, "Invalid request method and/or path");
	expect_fault("POST", "/actions", "{}", "Invalid request method and/or path");
	expect_fault("PUT", "/drives/root", "{}", "drive_id");
	expect_fault("PUT", "/drives/root", "{\"drive_id\": \"vda\", \"path_on_host\": \"/x\", \"is_root_device\": true}", "does not match");
	expect_fault("PUT", "/balloon", "{}", "missing field `amount_mib`");
	expect_fault("PUT", "/serial", "{\"serial_out_path\": \"\"}", "serial_out_path is empty");
	expect_fault("PUT", "/serial", "{\"rate_limiter\": {}}", "rate_limiter is not supported");
	expect_fault("PUT", "/serial", "{\"path\": \"x\"}", "unknown field `path`");
	expect_fault("PATCH", "/balloon", "{\"amount_mib\": -1}", "amount_mib");
	expect_fault("PATCH", "/balloon/statistics", "{}", "stats_polling_interval_s");
	expect_fault("PATCH", "/balloon/hinting/start", "{\"ack\": 1}", "ack");
	expect_fault("GET", "/balloon/hinting", NULL, "Invalid request method and/or path");
	expect_fault("PUT", "/network-interfaces/eth0", "{}", "missing field `iface_id`");
	expect_fault("PUT", "/network-interfaces/eth0",
		     "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}",
		     "does not match the id from the body");
	expect_fault("PUT", "/network-interfaces/eth-0", "{}", "API Resource IDs can only contain "
		     "alphanumeric characters and underscores.");
	expect_fault("PUT", "/network-interfaces/", "{}", "The ID cannot be empty.");
	expect_fault("PUT", "/network-interfaces/a/b", "{}", "Invalid request method");
	/* serde's position of a missing field: the object's closing brace. */
	expect_fault("PUT", "/machine-config", "{\"mem_size_mib\": 128}",
		     "missing field `vcpu_count` at line 1 column 21.");
	expect_fault("PUT", "/machine-config", "{\n  \"vcpu_count\": 2\n}\n",
		     "missing field `mem_size_mib` at line 3 column 1.");
	expect_fault("PUT", "/machine-config", NULL, "Empty PUT request.");
	expect_fault("GET", "/machine-config", "{}", "GET request cannot have a body.");
	expect_fault("PATCH", "/mmds", NULL, "Empty PATCH request.");
	expect_fault("PUT", "/network-interfaces/eth0",
		     "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": \"zz\"}",
		     "guest_mac");
	expect_fault("PUT", "/network-interfaces/eth0",
		     "{\"iface_id\": \"eth0\", \"host_dev_name\": \"a-name-too-long-for-linux\"}",
		     "host_dev_name");
	expect_fault("PUT", "/mmds", NULL, "Empty PUT request.");
	expect_fault("PUT", "/mmds", "{\"a\": ", "deserializing");
	expect_fault("PUT", "/mmds/config", "{}", "network_interfaces");
	expect_fault("PUT", "/logger", "{\"level\": \"Loud\"}", "level");
	expect_fault("PUT", "/logger", "{\"colour\": true}", "unknown field `colour`");
	expect_fault("PUT", "/metrics", "{}", "metrics_path");
	expect_fault("PUT", "/machine-config", NULL, "Empty");
	expect_fault("PUT", "/machine-config", "{", "deserializing");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\": 2}", "mem_size_mib");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\": \"2\", \"mem_size_mib\": 1}",
		     "vcpu_count");
	expect_fault("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 1, \"x\": 0}",
		     "unknown field `x`");
	expect_fault("PATCH", "/machine-config", "{\"vcpu_count\": 0}", "vcpu_count");
	expect_fault("PUT", "/boot-source", "{\"boot_args\": \"a\"}", "kernel_image_path");
	expect_fault("PUT", "/actions", "{\"action_type\": \"Explode\"}", "Explode");
	expect_fault("PUT", "/actions", "{\"action\": \"InstanceStart\"}", "actions");
	expect_fault("PATCH", "/vm", "{\"state\": \"Sleeping\"}",
		     "unknown variant `Sleeping`, expected one of `Paused`, `Resumed`");
	expect_fault("PUT", "/machine-config", "[1, 2]", "object");
	expect_fault("PATCH", "/machine-config", "{}", "no field");
	expect_fault("PUT", "/actions", "{\"action_type\": 1}", "action_type: expected string");
	expect_fault("PATCH", "/vm", "{\"state\": true}", "state: expected string");
	expect_fault("PUT", "/machine-config",
		     "{\"vcpu_count\": 1, \"vcpu_count\": 2, \"mem_size_mib\": 1}", "duplicate");
}

/* Found by fuzz/api_parse_fuzz: a fault quoting bytes that are not UTF-8
 * (a method, path or id, or a message cut inside a character) had no body,
 * since JSON strings must be UTF-8. The bytes read '?' instead. */
static void faults_not_utf8(void **state)
{
	(void)state;
	expect_fault("4\x99", "/", NULL, "Invalid request method and/or path: 4? .");
	expect_fault("PUT", "/drives/\xff", "{}", "got \"?\")");
	char path[1300] = "/ab";
	for (int i = 0; i < 600; i++)
		strcat(path, "\xc3\xa9"); /* e-acute: the 1023-byte message ends inside one */
	expect_fault("GET", path, NULL, "Invalid request method and/or path: GET ab");
}

/* Firecracker's deprecations: set by the route's parser, whatever the
 * value ("None" too), not by an explicit null. */
static void deprecations(void **state)
{
	(void)state;
	struct vmm_request req;
	struct vmm_response resp;
	assert_int_equal(parse("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 64, "
			       "\"cpu_template\": \"None\"}", &req, &resp), 0);
	assert_string_equal(req.deprecation, "PUT /machine-config: cpu_template field is deprecated.");
	assert_true(req.patch.has_cpu_template);
	assert_int_equal(parse("PATCH", "/machine-config", "{\"cpu_template\": \"T2\"}", &req, &resp),
			 0);
	assert_string_equal(req.deprecation,
			    "PATCH /machine-config: cpu_template field is deprecated.");
	assert_int_equal(parse("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 64, "
			       "\"cpu_template\": null}", &req, &resp), 0);
	assert_null(req.deprecation);
	assert_false(req.patch.has_cpu_template);
	assert_int_equal(parse("PUT", "/mmds/config", "{\"network_interfaces\": [\"eth0\"]}", &req,
			       &resp), 0);
	assert_non_null(req.deprecation);
	vmm_request_free(&req);
	assert_int_equal(parse("PUT", "/mmds/config", "{\"network_interfaces\": [\"eth0\"], "
			       "\"version\": \"V2\"}", &req, &resp), 0);
	assert_null(req.deprecation);
	vmm_request_free(&req);

	assert_int_equal(parse("PUT", "/cpu-config", "{\"kvm_capabilities\": [\"!7\"]}", &req,
			       &resp), 0);
	assert_int_equal(req.kind, REQ_PUT_CPU_CONFIG);
	assert_int_equal(req.cpu_template->n_caps, 1);
	vmm_request_free(&req);
	expect_fault("PUT", "/cpu-config", "{\"msr_modifiers\": [{\"addr\": \"0x10a\"}]}",
		     "bitmap");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(when_rules),
		cmocka_unit_test(routes),
		cmocka_unit_test(bodies),
		cmocka_unit_test(faults),
		cmocka_unit_test(faults_not_utf8),
		cmocka_unit_test(deprecations),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
