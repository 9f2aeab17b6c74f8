#include "vmm/routes.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/metrics.h"

#define NONE ROUTE_NO_METRIC
#define G(f) offsetof(struct metrics, get_api_requests.f)
#define P(f) offsetof(struct metrics, put_api_requests.f)
#define A(f) offsetof(struct metrics, patch_api_requests.f)

/* ---- Body readers ---- */

/* A body that is one string field naming what to do: {"action_type": ...}
 * for /actions, {"state": ...} for /vm. */
struct choice {
	const char *value;
	enum vmm_req_kind kind;
	unsigned when;
};

static const struct choice actions[] = {
	{"InstanceStart", REQ_INSTANCE_START, ROUTE_BEFORE_START},
	{"SendCtrlAltDel", REQ_SEND_CTRL_ALT_DEL, ROUTE_AFTER_START},
	{"FlushMetrics", REQ_FLUSH_METRICS, ROUTE_AFTER_START}, /* as Firecracker */
};

static const struct choice vm_states[] = {
	{"Paused", REQ_PAUSE, ROUTE_AFTER_START},
	{"Resumed", REQ_RESUME, ROUTE_AFTER_START},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int parse_choice(json_t *j, const char *what, const char *key, const struct choice *c,
			size_t n, struct vmm_request *req, ember_err *e)
{
	const char *value = NULL;
	const struct jfield f = {key, JF_STRING, true, 0};
	if (json_strict_parse(what, j, &f, 1, &value, e))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(value, c[i].value)) {
			req->kind = c[i].kind;
			return 0;
		}
	/* serde's words for an enum value it does not know. */
	char expected[128] = "";
	for (size_t i = 0; i < n; i++)
		snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected),
			 "%s`%s`", i ? ", " : "", c[i].value);
	return err_set(e, "%s: %s: unknown variant `%s`, expected one of %s", what, key, value,
		       expected);
}

static int parse_action(json_t *j, struct vmm_request *r, ember_err *e)
{
	return parse_choice(j, "actions", "action_type", actions, N(actions), r, e);
}

static int parse_vm_state(json_t *j, struct vmm_request *r, ember_err *e)
{
	return parse_choice(j, "vm", "state", vm_states, N(vm_states), r, e);
}

/* Firecracker deprecates machine-config's cpu_template (for custom
 * templates, PUT /cpu-config), whatever its value, "None" too. */
static bool has_cpu_template(json_t *j)
{
	json_t *t = json_object_get(j, "cpu_template");
	return t && !json_is_null(t);
}

static int parse_machine(json_t *j, struct vmm_request *r, ember_err *e)
{
	if (config_parse_machine(j, &r->patch, e))
		return -1;
	if (has_cpu_template(j))
		r->deprecation = "PUT /machine-config: cpu_template field is deprecated.";
	return 0;
}

static int parse_machine_patch(json_t *j, struct vmm_request *r, ember_err *e)
{
	/* As Firecracker: a PATCH must change something. */
	if (json_is_object(j) && json_object_size(j) == 0)
		return err_set(e, "machine-config: the PATCH body sets no field");
	if (config_parse_machine_patch(j, &r->patch, e))
		return -1;
	if (has_cpu_template(j))
		r->deprecation = "PATCH /machine-config: cpu_template field is deprecated.";
	return 0;
}

static int parse_cpu_config(json_t *j, struct vmm_request *r, ember_err *e)
{
	r->cpu_template = malloc(sizeof(*r->cpu_template));
	if (!r->cpu_template)
		return err_set(e, "out of memory");
	return cpu_template_parse(j, r->cpu_template, e);
}

static int parse_boot_source(json_t *j, struct vmm_request *r, ember_err *e)
{
	return config_parse_boot_source(j, &r->boot_source, e);
}

static int parse_logger(json_t *j, struct vmm_request *r, ember_err *e)
{
	return config_parse_logger(j, &r->logger, e);
}

static int parse_serial(json_t *j, struct vmm_request *r, ember_err *e)
{
	return config_parse_serial(j, &r->serial_out_path, e);
}

static int parse_metrics(json_t *j, struct vmm_request *r, ember_err *e)
{
	return metrics_config_parse(j, &r->metrics, e);
}

static int parse_mmds_config(json_t *j, struct vmm_request *r, ember_err *e)
{
	if (mmds_config_parse(j, &r->mmds_config, e))
		return -1;
	/* V1 is still the default, and deprecated, as in Firecracker. */
	if (r->mmds_config.version == MMDS_V1)
		r->deprecation = "PUT /mmds/config: V1 is deprecated. Use V2 instead.";
	return 0;
}

static int parse_drive(json_t *j, struct vmm_request *r, ember_err *e)
{
	return drive_config_parse(j, &r->drive, e);
}

static int parse_drive_patch(json_t *j, struct vmm_request *r, ember_err *e)
{
	return drive_patch_parse(j, &r->drive_patch, e);
}

static int parse_net(json_t *j, struct vmm_request *r, ember_err *e)
{
	return net_config_parse(j, &r->net, e);
}

static int parse_net_patch(json_t *j, struct vmm_request *r, ember_err *e)
{
	return net_patch_parse(j, &r->net_patch, e);
}

static int parse_snapshot_create(json_t *j, struct vmm_request *r, ember_err *e)
{
	return snapshot_create_params_parse(j, &r->snapshot_create, e);
}

static int parse_snapshot_load(json_t *j, struct vmm_request *r, ember_err *e)
{
	return snapshot_load_params_parse(j, &r->snapshot_load, e);
}

static const char *drive_id(const struct vmm_request *r)
{
	return r->drive.drive_id;
}

static const char *drive_patch_id(const struct vmm_request *r)
{
	return r->drive_patch.drive_id;
}

static const char *net_id(const struct vmm_request *r)
{
	return r->net.iface_id;
}

static const char *net_patch_id(const struct vmm_request *r)
{
	return r->net_patch.iface_id;
}

/* ---- The table ---- */

#define BEFORE ROUTE_BEFORE_START
#define AFTER ROUTE_AFTER_START
#define ALWAYS ROUTE_ALWAYS

static const struct api_route routes[] = {
	/* method, path, id, kind, body, parse, body id, when, count, fails,
	 * missing feature, device kind, its request */
	{API_GET, "/", false, REQ_GET_INFO, BODY_NONE, NULL, NULL, ALWAYS,
	 G(instance_info_count), NONE, NULL, NULL, NULL},
	{API_GET, "/version", false, REQ_GET_VERSION, BODY_NONE, NULL, NULL, ALWAYS,
	 G(vmm_version_count), NONE, NULL, NULL, NULL},
	{API_GET, "/vm/config", false, REQ_GET_VM_CONFIG, BODY_NONE, NULL, NULL, ALWAYS, NONE, NONE,
	 NULL, NULL, NULL},
	{API_GET, "/machine-config", false, REQ_GET_MACHINE_CONFIG, BODY_NONE, NULL, NULL, ALWAYS,
	 G(machine_cfg_count), NONE, NULL, NULL, NULL},
	{API_PUT, "/machine-config", false, REQ_PUT_MACHINE_CONFIG, BODY_JSON, parse_machine, NULL,
	 BEFORE, P(machine_cfg_count), P(machine_cfg_fails), NULL, NULL, NULL},
	{API_PATCH, "/machine-config", false, REQ_PATCH_MACHINE_CONFIG, BODY_JSON,
	 parse_machine_patch, NULL, BEFORE, A(machine_cfg_count), A(machine_cfg_fails), NULL, NULL, NULL},
	{API_PUT, "/cpu-config", false, REQ_PUT_CPU_CONFIG, BODY_JSON, parse_cpu_config, NULL,
	 BEFORE, P(cpu_cfg_count), P(cpu_cfg_fails), NULL, NULL, NULL},
	{API_PUT, "/boot-source", false, REQ_PUT_BOOT_SOURCE, BODY_JSON, parse_boot_source, NULL,
	 BEFORE, P(boot_source_count), P(boot_source_fails), NULL, NULL, NULL},
	/* The kind, and when it may run, depend on the action (actions[]). */
	{API_PUT, "/actions", false, REQ_INSTANCE_START, BODY_JSON, parse_action, NULL, ALWAYS,
	 P(actions_count), P(actions_fails), NULL, NULL, NULL},
	{API_PATCH, "/vm", false, REQ_PAUSE, BODY_JSON, parse_vm_state, NULL, ALWAYS, NONE, NONE,
	 NULL, NULL, NULL},
	{API_PUT, "/logger", false, REQ_PUT_LOGGER, BODY_JSON, parse_logger, NULL, BEFORE,
	 P(logger_count), P(logger_fails), NULL, NULL, NULL},
	{API_PUT, "/metrics", false, REQ_PUT_METRICS, BODY_JSON, parse_metrics, NULL, BEFORE,
	 P(metrics_count), P(metrics_fails), NULL, NULL, NULL},
	{API_PUT, "/serial", false, REQ_PUT_SERIAL, BODY_JSON, parse_serial, NULL, BEFORE,
	 P(serial_count), P(serial_fails), NULL, NULL, NULL},
	{API_GET, "/mmds", false, REQ_GET_MMDS, BODY_NONE, NULL, NULL, ALWAYS, G(mmds_count), NONE,
	 NULL, NULL, NULL},
	{API_PUT, "/mmds", false, REQ_PUT_MMDS, BODY_MMDS, NULL, NULL, ALWAYS, P(mmds_count),
	 P(mmds_fails), NULL, NULL, NULL},
	{API_PATCH, "/mmds", false, REQ_PATCH_MMDS, BODY_MMDS, NULL, NULL, ALWAYS, A(mmds_count),
	 A(mmds_fails), NULL, NULL, NULL},
	{API_PUT, "/mmds/config", false, REQ_PUT_MMDS_CONFIG, BODY_JSON, parse_mmds_config, NULL,
	 BEFORE, P(mmds_count), P(mmds_fails), NULL, NULL, NULL},
	{API_PUT, "/drives", true, REQ_PUT_DRIVE, BODY_JSON, parse_drive, drive_id, BEFORE,
	 P(drive_count), P(drive_fails), NULL, NULL, NULL},
	{API_PATCH, "/drives", true, REQ_PATCH_DRIVE, BODY_JSON, parse_drive_patch, drive_patch_id,
	 AFTER, A(drive_count), A(drive_fails), NULL, NULL, NULL},
	{API_PUT, "/network-interfaces", true, REQ_PUT_NET, BODY_JSON, parse_net, net_id, BEFORE,
	 P(network_count), P(network_fails), NULL, NULL, NULL},
	{API_PATCH, "/network-interfaces", true, REQ_PATCH_NET, BODY_JSON, parse_net_patch,
	 net_patch_id, AFTER, A(network_count), A(network_fails), NULL, NULL, NULL},

	/* Firecracker's resources Ember does not serve yet: answered with a
	 * 400 naming the feature, never a 2xx for something that will not
	 * happen. Counted where Firecracker counts them. */
	{API_PUT, "/pmem", false, 0, BODY_NONE, NULL, NULL, 0, P(pmem_count), P(pmem_fails),
	 "pmem devices are", NULL, NULL},
	{API_GET, "/hotplug", false, 0, BODY_NONE, NULL, NULL, 0, G(hotplug_memory_count), NONE,
	 "memory hotplug is", NULL, NULL},
	{API_PUT, "/hotplug", false, 0, BODY_NONE, NULL, NULL, 0, P(hotplug_memory_count),
	 P(hotplug_memory_fails), "memory hotplug is", NULL, NULL},
	{API_PATCH, "/hotplug", false, 0, BODY_NONE, NULL, NULL, 0, A(hotplug_memory_count),
	 A(hotplug_memory_fails), "memory hotplug is", NULL, NULL},
	{API_OTHER, "/pmem", false, 0, BODY_NONE, NULL, NULL, 0, NONE, NONE, "pmem devices are", NULL, NULL},
	{API_OTHER, "/hotplug", false, 0, BODY_NONE, NULL, NULL, 0, NONE, NONE,
	 "memory hotplug is", NULL, NULL},
	{API_PUT, "/snapshot/create", false, REQ_SNAPSHOT_CREATE, BODY_JSON, parse_snapshot_create,
	 NULL, AFTER, NONE, NONE, NULL, NULL, NULL},
	{API_PUT, "/snapshot/load", false, REQ_SNAPSHOT_LOAD, BODY_JSON, parse_snapshot_load, NULL,
	 BEFORE, NONE, NONE, NULL, NULL, NULL},
};

/* ---- Routes of device kinds with their own config (device_ops.config) ---- */

/* PUT /<key>: the kind's parser makes the config (api_parse has set
 * req->device_ops from the route). */
static int parse_device(json_t *j, struct vmm_request *r, ember_err *e)
{
	if (r->device_ops->config->parse(j, &r->device_cfg, e))
		return -1;
	return 0;
}

/* The counter named "<key>_<suffix>" in put_api_requests, if Firecracker
 * has one for this resource. */
static const struct metrics_group put_group = METRICS_GROUP("put_api_requests",
	METRICS_PUT_API_REQUESTS, struct put_api_requests_metrics);

static size_t put_counter(const char *key, const char *suffix)
{
	const struct metrics_group *g = &put_group;
	char name[64];
	snprintf(name, sizeof(name), "%s_%s", key, suffix);
	for (size_t i = 0; i < g->n; i++)
		if (!strcmp(g->fields[i].name, name))
			return offsetof(struct metrics, put_api_requests) + g->fields[i].off;
	return NONE;
}

/* A kind's own request: its parser makes the argument (api_parse has set
 * req->device_req from the route). */
static int parse_device_request(json_t *j, struct vmm_request *r, ember_err *e)
{
	return r->device_req->parse ? r->device_req->parse(j, &r->device_arg, e) : 0;
}

_Static_assert(DEVICE_BEFORE_START == ROUTE_BEFORE_START &&
		       DEVICE_AFTER_START == ROUTE_AFTER_START,
	       "device requests say when they run with the routes' bits");

#define MAX_DEVICE_ROUTES 64
static struct api_route device_routes[MAX_DEVICE_ROUTES];
static char device_paths[MAX_DEVICE_ROUTES][64];
static pthread_once_t device_routes_once = PTHREAD_ONCE_INIT;

static void make_device_routes(void)
{
	size_t n = 0;
	for (size_t i = 0; device_kinds[i]; i++) {
		const struct device_config_ops *c = device_kinds[i]->config;
		if (!c || n == MAX_DEVICE_ROUTES)
			continue;
		snprintf(device_paths[n], sizeof(device_paths[n]), "/%s", c->key);
		device_routes[n] = (struct api_route){
			.method = API_PUT, .path = device_paths[n], .kind = REQ_PUT_DEVICE,
			.body = BODY_JSON, .parse = parse_device, .when = BEFORE,
			.count = put_counter(c->key, "count"), .fails = put_counter(c->key, "fails"),
			.device = device_kinds[i]};
		n++;
		for (const struct device_request *q = c->requests; q && q->method; q++) {
			if (n == MAX_DEVICE_ROUTES)
				break;
			snprintf(device_paths[n], sizeof(device_paths[n]), "/%s%s", c->key, q->path);
			device_routes[n] = (struct api_route){
				.method = api_method_parse(q->method), .path = device_paths[n],
				.kind = REQ_DEVICE_REQUEST,
				.body = q->body == DEVICE_BODY_JSON	    ? BODY_JSON
					: q->body == DEVICE_BODY_OPTIONAL ? BODY_JSON_OPTIONAL
									  : BODY_NONE,
				.parse = parse_device_request, .when = q->when, .count = NONE,
				.fails = NONE, .device = device_kinds[i], .device_req = q};
			n++;
		}
	}
}

enum api_method api_method_parse(const char *method)
{
	return !strcmp(method, "GET")	  ? API_GET
	       : !strcmp(method, "PUT")	  ? API_PUT
	       : !strcmp(method, "PATCH") ? API_PATCH
					  : API_OTHER;
}

/* path is the route's path, its path plus "/{id}" (has_id), or anything
 * below it (missing). */
static bool path_matches(const struct api_route *r, const char *path, const char **id)
{
	if (!strcmp(r->path, "/"))
		return !strcmp(path, "/") || !*path;
	size_t n = strlen(r->path);
	if (strncmp(path, r->path, n))
		return false;
	if (r->missing)
		return path[n] == 0 || path[n] == '/';
	if (!r->has_id)
		return path[n] == 0;
	if (path[n] != 0 && path[n] != '/')
		return false;
	if (id)
		*id = path + n + (path[n] == '/');
	return true;
}

const struct api_route *api_route_find(enum api_method method, const char *path,
				       const char **id)
{
	pthread_once(&device_routes_once, make_device_routes);
	for (size_t i = 0; i < N(device_routes) && device_routes[i].path; i++)
		if (device_routes[i].method == method && path_matches(&device_routes[i], path, id))
			return &device_routes[i];
	for (size_t i = 0; i < N(routes); i++) {
		const struct api_route *r = &routes[i];
		if ((r->method == method || (r->missing && r->method == API_OTHER)) &&
		    path_matches(r, path, id))
			return r;
	}
	return NULL;
}

const struct api_route *api_route_any(const char *path)
{
	pthread_once(&device_routes_once, make_device_routes);
	for (size_t i = 0; i < N(device_routes) && device_routes[i].path; i++)
		if (path_matches(&device_routes[i], path, NULL))
			return &device_routes[i];
	for (size_t i = 0; i < N(routes); i++)
		if (path_matches(&routes[i], path, NULL))
			return &routes[i];
	return NULL;
}

unsigned api_request_when(enum vmm_req_kind kind)
{
	for (size_t i = 0; i < N(actions); i++)
		if (actions[i].kind == kind)
			return actions[i].when;
	for (size_t i = 0; i < N(vm_states); i++)
		if (vm_states[i].kind == kind)
			return vm_states[i].when;
	if (kind == REQ_PUT_DEVICE)
		return ROUTE_BEFORE_START;
	for (size_t i = 0; i < N(routes); i++)
		if (!routes[i].missing && routes[i].kind == kind)
			return routes[i].when;
	return ROUTE_ALWAYS;
}
