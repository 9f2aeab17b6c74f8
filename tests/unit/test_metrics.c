/* Metrics: deltas, stores, per-device sets, threads, Firecracker's names,
 * the file and FIFO sink, and the Metrics config object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio_block.h"
#include "devices/virtio_net.h"
#include "vmm/metrics.h"

/* As the controller does: the device kinds' sums are in every flush. */
static void init(struct metrics *m)
{
	metrics_init(m);
	assert_int_equal(metrics_devices_add_kind(&m->devices, &block_metrics_group, NULL), 0);
	assert_int_equal(metrics_devices_add_kind(&m->devices, &net_metrics_group, NULL), 0);
	/* Adding a kind again changes nothing. */
	assert_int_equal(metrics_devices_add_kind(&m->devices, &block_metrics_group, NULL), 0);
	assert_int_equal(m->devices.n, 2);
}

/* The integer at "group.field" or "group.field.sub" in a flush; fails the
 * test if it is missing. */
static json_int_t at(json_t *root, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *v = root;
	for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
		v = json_object_get(v, k);
		if (!v)
			fail_msg("no \"%s\" in the flush (at \"%s\")", path, k);
	}
	if (!json_is_integer(v))
		fail_msg("\"%s\" is not an integer", path);
	return json_integer_value(v);
}

static json_int_t flush_get(struct metrics *m, const char *path)
{
	json_t *j = metrics_flush_json(m, 1);
	assert_non_null(j);
	json_int_t v = at(j, path);
	json_decref(j);
	return v;
}

static void inc_reports_deltas(void **state)
{
	(void)state;
	struct metrics m;
	init(&m);
	metric_inc(&m.vcpu.exit_io_in);
	metric_add(&m.vcpu.exit_io_in, 2);
	metric_inc(&m.put_api_requests.actions_count);
	json_t *j = metrics_flush_json(&m, 1234);
	assert_int_equal(at(j, "utc_timestamp_ms"), 1234);
	assert_int_equal(at(j, "vcpu.exit_io_in"), 3);
	assert_int_equal(at(j, "put_api_requests.actions_count"), 1);
	assert_int_equal(at(j, "vcpu.exit_io_out"), 0);
	json_decref(j);

	metric_add(&m.vcpu.exit_io_in, 5);
	j = metrics_flush_json(&m, 1235);
	assert_int_equal(at(j, "vcpu.exit_io_in"), 5);
	assert_int_equal(at(j, "put_api_requests.actions_count"), 0);
	json_decref(j);
	assert_int_equal(flush_get(&m, "vcpu.exit_io_in"), 0);
	assert_int_equal(metric_count(&m.vcpu.exit_io_in), 8); /* the total is kept */

	/* A running total kept elsewhere (the logger's lost lines). */
	metric_inc_set_total(&m.logger.missed_log_count, 10);
	assert_int_equal(flush_get(&m, "logger.missed_log_count"), 10);
	metric_inc_set_total(&m.logger.missed_log_count, 14);
	assert_int_equal(flush_get(&m, "logger.missed_log_count"), 4);
	metrics_destroy(&m);
}

static void store_reports_value(void **state)
{
	(void)state;
	struct metrics m;
	init(&m);
	metric_set(&m.seccomp.num_faults, 7);
	metric_set(&m.api_server.process_startup_time_us, 12345);
	metric_set(&m.signals.sigsegv, 1);
	metric_inc(&m.signals.sigpipe);
	json_t *j = metrics_flush_json(&m, 1);
	assert_int_equal(at(j, "seccomp.num_faults"), 7);
	assert_int_equal(at(j, "api_server.process_startup_time_us"), 12345);
	assert_int_equal(at(j, "signals.sigsegv"), 1);
	assert_int_equal(at(j, "signals.sigpipe"), 1);
	json_decref(j);
	j = metrics_flush_json(&m, 2);
	assert_int_equal(at(j, "seccomp.num_faults"), 7); /* stores stay */
	assert_int_equal(at(j, "signals.sigsegv"), 1);
	assert_int_equal(at(j, "signals.sigpipe"), 0); /* an increment */
	json_decref(j);

	/* Latency: min/max are stores, the sum an increment. */
	metric_latency_record(&m.vcpu.exit_io_in_agg, 30);
	metric_latency_record(&m.vcpu.exit_io_in_agg, 10);
	metric_latency_record(&m.vcpu.exit_io_in_agg, 20);
	j = metrics_flush_json(&m, 3);
	assert_int_equal(at(j, "vcpu.exit_io_in_agg.min_us"), 10);
	assert_int_equal(at(j, "vcpu.exit_io_in_agg.max_us"), 30);
	assert_int_equal(at(j, "vcpu.exit_io_in_agg.sum_us"), 60);
	json_decref(j);
	j = metrics_flush_json(&m, 4);
	assert_int_equal(at(j, "vcpu.exit_io_in_agg.min_us"), 10);
	assert_int_equal(at(j, "vcpu.exit_io_in_agg.sum_us"), 0);
	json_decref(j);
	metrics_destroy(&m);
}

static void per_device_sets(void **state)
{
	(void)state;
	struct metrics m;
	ember_err e = {{0}};
	init(&m);
	struct block_metrics *root = metrics_device_register(&m.devices, &block_metrics_group, "rootfs", &e);
	struct block_metrics *data = metrics_device_register(&m.devices, &block_metrics_group, "data", &e);
	struct net_metrics *eth0 = metrics_device_register(&m.devices, &net_metrics_group, "eth0", &e);
	assert_non_null(root);
	assert_non_null(data);
	assert_non_null(eth0);
	assert_ptr_equal(metrics_device_register(&m.devices, &block_metrics_group, "rootfs", &e), root); /* same id, same set */

	metric_add(&root->read_bytes, 4096);
	metric_inc(&root->read_count);
	metric_add(&data->read_bytes, 512);
	metric_latency_record(&root->read_agg, 50);
	metric_latency_record(&data->read_agg, 70);
	metric_add(&eth0->tx_bytes_count, 1500);

	json_t *j = metrics_flush_json(&m, 1);
	assert_int_equal(at(j, "block_rootfs.read_bytes"), 4096);
	assert_int_equal(at(j, "block_rootfs.read_count"), 1);
	assert_int_equal(at(j, "block_data.read_bytes"), 512);
	assert_int_equal(at(j, "block.read_bytes"), 4608);
	assert_int_equal(at(j, "block.read_count"), 1);
	assert_int_equal(at(j, "block_rootfs.read_agg.min_us"), 50);
	assert_int_equal(at(j, "block.read_agg.sum_us"), 120);
	assert_int_equal(at(j, "block.read_agg.min_us"), 0); /* as Firecracker's aggregate */
	assert_int_equal(at(j, "net_eth0.tx_bytes_count"), 1500);
	assert_int_equal(at(j, "net.tx_bytes_count"), 1500);
	/* Devices in id order, before their aggregate, as Firecracker. */
	const char *keys[8];
	size_t n = 0;
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		if (!strncmp(key, "block", 5) && n < 8)
			keys[n++] = key;
	}
	assert_int_equal(n, 3);
	assert_string_equal(keys[0], "block_data");
	assert_string_equal(keys[1], "block_rootfs");
	assert_string_equal(keys[2], "block");
	json_decref(j);

	j = metrics_flush_json(&m, 2); /* deltas, aggregate included */
	assert_int_equal(at(j, "block_rootfs.read_bytes"), 0);
	assert_int_equal(at(j, "block.read_bytes"), 0);
	json_decref(j);

	/* Two registrations of rootfs: the first unregister keeps it. */
	metrics_device_unregister(&m.devices, &block_metrics_group, "rootfs");
	j = metrics_flush_json(&m, 3);
	assert_non_null(json_object_get(j, "block_rootfs"));
	json_decref(j);
	metrics_device_unregister(&m.devices, &block_metrics_group, "rootfs");
	metrics_device_unregister(&m.devices, &block_metrics_group, "never-there");
	metrics_device_unregister(&m.devices, &net_metrics_group, "eth0");
	j = metrics_flush_json(&m, 4);
	assert_null(json_object_get(j, "block_rootfs"));
	assert_null(json_object_get(j, "net_eth0"));
	assert_non_null(json_object_get(j, "block_data"));
	assert_non_null(json_object_get(j, "net")); /* the aggregate is always there */
	json_decref(j);

	char longid[METRICS_MAX_ID + 2];
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	assert_null(metrics_device_register(&m.devices, &block_metrics_group, "", &e));
	assert_non_null(strstr(e.msg, "empty device id"));
	assert_null(metrics_device_register(&m.devices, &net_metrics_group, longid, &e));
	assert_non_null(strstr(e.msg, "device id longer than"));
	assert_null(metrics_device_register(&m.devices, &block_metrics_group, "bad\xff", &e));
	assert_non_null(strstr(e.msg, "UTF-8"));
	longid[METRICS_MAX_ID] = 0; /* exactly the limit */
	assert_non_null(metrics_device_register(&m.devices, &block_metrics_group, longid, &e));
	assert_int_equal(flush_get(&m, "block.read_bytes"), 0);
	metrics_destroy(&m); /* frees what is still registered */
}

enum { THREADS = 4, PER_THREAD = 200000 };

struct bumper {
	struct metrics *m;
	struct block_metrics *dev;
};

static void *bump(void *arg)
{
	struct bumper *b = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		metric_inc(&b->m->vcpu.exit_mmio_write);
		metric_add(&b->dev->write_bytes, 2);
		if (i % 1000 == 0)
			metric_latency_record(&b->m->vcpu.exit_mmio_write_agg, (uint64_t)i + 1);
	}
	return NULL;
}

static void concurrent_increments(void **state)
{
	(void)state;
	struct metrics m;
	init(&m);
	struct bumper b = {&m, metrics_device_register(&m.devices, &block_metrics_group, "rootfs", NULL)};
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, bump, &b), 0);
	/* Flushing while they run: the deltas must still add up. */
	json_int_t exits = 0, bytes = 0;
	for (int i = 0; i < 20; i++) {
		json_t *j = metrics_flush_json(&m, 1);
		exits += at(j, "vcpu.exit_mmio_write");
		bytes += at(j, "block.write_bytes");
		json_decref(j);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	json_t *j = metrics_flush_json(&m, 2);
	exits += at(j, "vcpu.exit_mmio_write");
	bytes += at(j, "block_rootfs.write_bytes");
	assert_int_equal(at(j, "vcpu.exit_mmio_write_agg.min_us"), 1);
	assert_int_equal(at(j, "vcpu.exit_mmio_write_agg.max_us"), PER_THREAD - 1000 + 1);
	json_decref(j);
	assert_int_equal(exits, THREADS * PER_THREAD);
	assert_int_equal(bytes, 2 * THREADS * PER_THREAD);
	assert_int_equal(metric_count(&m.vcpu.exit_mmio_write), THREADS * PER_THREAD);
	metrics_destroy(&m);
}

/* A sample of Firecracker's group.field names (metrics.rs and the device
 * metrics files), each of which must be in a flush. */
static const char *const firecracker_names[] = {
	"api_server.process_startup_time_us", "api_server.process_startup_time_cpu_us",
	"get_api_requests.instance_info_count", "get_api_requests.machine_cfg_count",
	"get_api_requests.mmds_count", "get_api_requests.vmm_version_count",
	"put_api_requests.actions_count", "put_api_requests.actions_fails",
	"put_api_requests.boot_source_count", "put_api_requests.drive_fails",
	"put_api_requests.logger_count", "put_api_requests.machine_cfg_fails",
	"put_api_requests.cpu_cfg_count", "put_api_requests.metrics_count",
	"put_api_requests.metrics_fails", "put_api_requests.network_count",
	"put_api_requests.mmds_fails", "put_api_requests.vsock_count",
	"patch_api_requests.drive_count", "patch_api_requests.network_fails",
	"patch_api_requests.machine_cfg_count", "patch_api_requests.mmds_count",
	"deprecated_api.deprecated_http_api_calls",
	"block.activate_fails", "block.cfg_fails", "block.no_avail_buffer", "block.event_fails",
	"block.execute_fails", "block.invalid_reqs_count", "block.flush_count",
	"block.queue_event_count", "block.rate_limiter_event_count", "block.update_count",
	"block.update_fails", "block.read_bytes", "block.write_bytes", "block.read_count",
	"block.write_count", "block.rate_limiter_throttled_events",
	"block.io_engine_throttled_events", "block.remaining_reqs_count",
	"block.read_agg.min_us", "block.write_agg.sum_us",
	"i8042.error_count", "i8042.missed_read_count", "i8042.missed_write_count",
	"i8042.read_count", "i8042.reset_count", "i8042.write_count",
	"uart.error_count", "uart.flush_count", "uart.missed_read_count",
	"uart.missed_write_count", "uart.read_count", "uart.write_count",
	"latencies_us.full_create_snapshot", "latencies_us.diff_create_snapshot",
	"latencies_us.load_snapshot", "latencies_us.pause_vm", "latencies_us.resume_vm",
	"latencies_us.vmm_full_create_snapshot", "latencies_us.vmm_resume_vm",
	"logger.missed_metrics_count", "logger.metrics_fails", "logger.missed_log_count",
	"mmds.rx_accepted", "mmds.rx_accepted_err", "mmds.rx_accepted_unusual", "mmds.rx_bad_eth",
	"mmds.rx_count", "mmds.tx_bytes", "mmds.tx_count", "mmds.tx_errors", "mmds.tx_frames",
	"mmds.connections_created", "mmds.connections_destroyed",
	"net.activate_fails", "net.cfg_fails", "net.mac_address_updates",
	"net.no_rx_avail_buffer", "net.no_tx_avail_buffer", "net.event_fails",
	"net.rx_queue_event_count", "net.rx_event_rate_limiter_count",
	"net.rx_rate_limiter_throttled", "net.rx_tap_event_count", "net.rx_bytes_count",
	"net.rx_packets_count", "net.rx_fails", "net.rx_count", "net.tap_read_fails",
	"net.tap_write_fails", "net.tx_bytes_count", "net.tx_malformed_frames", "net.tx_fails",
	"net.tx_count", "net.tx_packets_count", "net.tx_partial_reads",
	"net.tx_queue_event_count", "net.tx_rate_limiter_event_count",
	"net.tx_rate_limiter_throttled", "net.tx_spoofed_mac_count",
	"net.tx_remaining_reqs_count", "net.tap_write_agg.max_us",
	"seccomp.num_faults",
	"vcpu.exit_io_in", "vcpu.exit_io_out", "vcpu.exit_mmio_read", "vcpu.exit_mmio_write",
	"vcpu.failures", "vcpu.exit_io_in_agg.min_us", "vcpu.exit_io_out_agg.max_us",
	"vcpu.exit_mmio_read_agg.sum_us", "vcpu.exit_mmio_write_agg.sum_us",
	"vmm.panic_count",
	"signals.sigbus", "signals.sigsegv", "signals.sigxfsz", "signals.sigxcpu",
	"signals.sigpipe", "signals.sighup", "signals.sigill",
	"interrupts.triggers", "interrupts.config_updates",
};

static void firecracker_names_present(void **state)
{
	(void)state;
	struct metrics m;
	init(&m);
	json_t *j = metrics_flush_json(&m, 1);
	for (size_t i = 0; i < sizeof(firecracker_names) / sizeof(firecracker_names[0]); i++)
		(void)at(j, firecracker_names[i]);
	/* utc_timestamp_ms first, then only groups (objects). */
	void *it = json_object_iter(j);
	assert_string_equal(json_object_iter_key(it), "utc_timestamp_ms");
	size_t groups = 0;
	for (it = json_object_iter_next(j, it); it; it = json_object_iter_next(j, it)) {
		assert_true(json_is_object(json_object_iter_value(it)));
		groups++;
	}
	assert_int_equal(groups, 17);
	assert_null(json_object_get(j, "id"));
	assert_null(json_object_get(j, "properties"));
	json_decref(j);
	metrics_destroy(&m);
}

static char tmpdir[64];

static int make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ember-metrics-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void sink_regular_file(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof(path), "%s/metrics.json", tmpdir);
	struct metrics m;
	struct metrics_sink s;
	ember_err e = {{0}};
	init(&m);
	metrics_sink_init(&s);
	assert_int_equal(metrics_write(&m, &s, 1, &e), 0); /* no sink: nothing, no error */
	metric_inc(&m.vcpu.failures);
	assert_int_equal(metrics_sink_open(&s, path, &e), 0); /* created */
	assert_false(s.fifo);
	assert_int_equal(metrics_write(&m, &s, 100, &e), 0);
	assert_int_equal(metrics_write(&m, &s, 200, &e), 0);
	metrics_sink_close(&s);
	assert_int_equal(metrics_sink_open(&s, path, &e), 0); /* appends */
	assert_int_equal(metrics_write(&m, &s, 300, &e), 0);
	metrics_sink_close(&s);

	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[65536];
	json_int_t want_ts[] = {100, 200, 300}, want_fail[] = {1, 0, 0};
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		assert_true(n < 3);
		assert_int_equal(line[strlen(line) - 1], '\n');
		assert_null(strchr(line, ' ')); /* compact */
		json_t *j = json_loads(line, 0, NULL);
		assert_non_null(j);
		assert_int_equal(at(j, "utc_timestamp_ms"), want_ts[n]);
		assert_int_equal(at(j, "vcpu.failures"), want_fail[n]);
		json_decref(j);
		n++;
	}
	fclose(f);
	assert_int_equal(n, 3);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	snprintf(path, sizeof(path), "%s/no/such/dir", tmpdir);
	assert_int_equal(metrics_sink_open(&s, path, &e), -1);
	assert_non_null(strstr(e.msg, "no/such/dir"));
	metrics_destroy(&m);
}

/* Reads everything the pipe holds; each line must be a whole flush. */
static int drain_lines(int rd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	while (len < cap - 1 && (n = read(rd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = 0;
	int lines = 0;
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);
		if (!j)
			fail_msg("a torn line in the pipe: %.60s...", l);
		json_decref(j);
		lines++;
	}
	return lines;
}

static void fifo_writes(const char *path, bool big_lines, bool with_reader)
{
	struct metrics m;
	struct metrics_sink s;
	ember_err e = {{0}};
	init(&m);
	metrics_sink_init(&s);
	if (big_lines) {
		/* Lines longer than PIPE_BUF, which the kernel may split. */
		char big[6000];
		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		struct metrics_config c = {.properties = json_pack("{s:s}", "pad", big)};
		metrics_apply_config(&m, &c, NULL);
		metrics_config_free(&c);
	}
	int rd = with_reader ? open(path, O_RDONLY | O_NONBLOCK) : -1;
	assert_true(!with_reader || rd >= 0);
	assert_int_equal(metrics_sink_open(&s, path, &e), 0);
	assert_true(s.fifo);

	alarm(20); /* a blocking write would hang the test */
	int ok = 0, dropped = 0;
	for (int i = 0; i < 300; i++) {
		if (metrics_write(&m, &s, (uint64_t)i, &e) == 0)
			ok++;
		else
			dropped++;
	}
	alarm(0);
	assert_true(ok > 0);
	assert_true(dropped > 0);
	assert_non_null(strstr(e.msg, "full"));
	/* Each drop counted, reported by the next flush that gets through. */
	assert_int_equal(metric_count(&m.logger.missed_metrics_count), dropped);
	if (with_reader) {
		static char buf[1 << 20];
		assert_int_equal(drain_lines(rd, buf, sizeof(buf)), ok);
		assert_int_equal(metrics_write(&m, &s, 1000, &e), 0); /* room again */
		assert_int_equal(drain_lines(rd, buf, sizeof(buf)), 1);
		close(rd);
	}
	metrics_sink_close(&s);
	metrics_destroy(&m);
}

static void sink_fifo_stalled_reader(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof(path), "%s/metrics.fifo", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	fifo_writes(path, false, true);
	fifo_writes(path, true, true);
	/* No reader at all: the open must not fail nor block (Firecracker). */
	fifo_writes(path, false, false);
	unlink(path);
}

static int parse(const char *text, struct metrics_config *c, ember_err *e)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("bad test JSON %s: %s", text, je.text);
	int rc = metrics_config_parse(j, c, e);
	json_decref(j);
	return rc;
}

static void expect_config_error(const char *text, const char *needle)
{
	struct metrics_config c = {0};
	ember_err e = {{0}};
	assert_int_equal(parse(text, &c, &e), -1);
	if (!strstr(e.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, needle);
	assert_null(c.metrics_path);
}

static void config_parser(void **state)
{
	(void)state;
	struct metrics_config c = {0};
	ember_err e = {{0}};
	assert_int_equal(parse("{\"metrics_path\": \"/run/m.fifo\"}", &c, &e), 0);
	assert_string_equal(c.metrics_path, "/run/m.fifo");
	assert_false(c.emit_id);
	assert_null(c.properties);
	assert_int_equal(parse("{\"metrics_path\": \"m.json\", \"emit_id\": true,"
			       " \"properties\": {\"customer_id\": \"1234\", \"b\": \"x\"}}", &c, &e), 0);
	assert_string_equal(c.metrics_path, "m.json");
	assert_true(c.emit_id);
	assert_string_equal(json_string_value(json_object_get(c.properties, "customer_id")), "1234");

	/* The extras appear in the flush, after the timestamp. */
	struct metrics m;
	init(&m);
	metrics_apply_config(&m, &c, "vm-42");
	json_t *j = metrics_flush_json(&m, 9);
	void *it = json_object_iter(j);
	assert_string_equal(json_object_iter_key(it), "utc_timestamp_ms");
	assert_string_equal(json_string_value(json_object_get(j, "id")), "vm-42");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "properties"), "b")),
			    "x");
	json_decref(j);
	metrics_destroy(&m);
	metrics_config_free(&c);

	expect_config_error("{}", "metrics_path");
	expect_config_error("[]", "object");
	expect_config_error("{\"metrics_path\": 3}", "metrics_path");
	expect_config_error("{\"metrics_path\": \"\"}", "empty");
	expect_config_error("{\"metrics_path\": \"a\\u0000b\"}", "NUL");
	expect_config_error("{\"metrics_path\": \"m\", \"bogus\": 1}", "bogus");
	expect_config_error("{\"metrics_path\": \"m\", \"emit_id\": \"yes\"}", "emit_id");
	expect_config_error("{\"metrics_path\": \"m\", \"properties\": []}", "properties");
	expect_config_error("{\"metrics_path\": \"m\", \"properties\": {\"a\": 1}}", "\"a\"");
	char longpath[PATH_MAX + 32];
	snprintf(longpath, sizeof(longpath), "{\"metrics_path\": \"");
	size_t n = strlen(longpath);
	memset(longpath + n, 'p', PATH_MAX);
	snprintf(longpath + n + PATH_MAX, sizeof(longpath) - n - PATH_MAX, "\"}");
	expect_config_error(longpath, "longer");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(inc_reports_deltas),
		cmocka_unit_test(store_reports_value),
		cmocka_unit_test(per_device_sets),
		cmocka_unit_test(concurrent_increments),
		cmocka_unit_test(firecracker_names_present),
		cmocka_unit_test(sink_regular_file),
		cmocka_unit_test(sink_fifo_stalled_reader),
		cmocka_unit_test(config_parser),
	};
	return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
