#include "api/api_metrics.h"

#include <stddef.h>
#include <string.h>

enum method { GET, PUT, PATCH };

#define NONE ((size_t)-1)
#define G(f) offsetof(struct metrics, get_api_requests.f)
#define P(f) offsetof(struct metrics, put_api_requests.f)
#define A(f) offsetof(struct metrics, patch_api_requests.f)

static const struct {
	enum method method;
	const char *prefix; /* the path, or the path and anything below it */
	size_t count, fails;
} table[] = {
	{GET, "/", G(instance_info_count), NONE},
	{GET, "/machine-config", G(machine_cfg_count), NONE},
	{GET, "/mmds", G(mmds_count), NONE},
	{GET, "/version", G(vmm_version_count), NONE},
	{GET, "/hotplug", G(hotplug_memory_count), NONE},
	{PUT, "/actions", P(actions_count), P(actions_fails)},
	{PUT, "/boot-source", P(boot_source_count), P(boot_source_fails)},
	{PUT, "/drives", P(drive_count), P(drive_fails)},
	{PUT, "/logger", P(logger_count), P(logger_fails)},
	{PUT, "/machine-config", P(machine_cfg_count), P(machine_cfg_fails)},
	{PUT, "/cpu-config", P(cpu_cfg_count), P(cpu_cfg_fails)},
	{PUT, "/metrics", P(metrics_count), P(metrics_fails)},
	{PUT, "/network-interfaces", P(network_count), P(network_fails)},
	{PUT, "/mmds", P(mmds_count), P(mmds_fails)},
	{PUT, "/vsock", P(vsock_count), P(vsock_fails)},
	{PUT, "/pmem", P(pmem_count), P(pmem_fails)},
	{PUT, "/serial", P(serial_count), P(serial_fails)},
	{PUT, "/hotplug", P(hotplug_memory_count), P(hotplug_memory_fails)},
	{PATCH, "/drives", A(drive_count), A(drive_fails)},
	{PATCH, "/network-interfaces", A(network_count), A(network_fails)},
	{PATCH, "/machine-config", A(machine_cfg_count), A(machine_cfg_fails)},
	{PATCH, "/mmds", A(mmds_count), A(mmds_fails)},
	{PATCH, "/hotplug", A(hotplug_memory_count), A(hotplug_memory_fails)},
};

static bool matches(const char *path, const char *prefix)
{
	if (!strcmp(prefix, "/"))
		return !strcmp(path, "/") || !*path;
	size_t n = strlen(prefix);
	return !strncmp(path, prefix, n) && (path[n] == 0 || path[n] == '/');
}

void api_metrics_count(struct metrics *m, const char *method, const char *path, int status)
{
	enum method k;
	if (!strcmp(method, "GET"))
		k = GET;
	else if (!strcmp(method, "PUT"))
		k = PUT;
	else if (!strcmp(method, "PATCH"))
		k = PATCH;
	else
		return;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].method != k || !matches(path, table[i].prefix))
			continue;
		metric_inc((struct metric_inc *)((char *)m + table[i].count));
		if (status >= 400 && table[i].fails != NONE)
			metric_inc((struct metric_inc *)((char *)m + table[i].fails));
		return;
	}
}
