#include "api/parse.h"

#include <stdio.h>
#include <string.h>

#include "mmds/json.h"

/* Firecracker resources that Ember does not serve yet: answered with a 400
 * naming the feature, never a 2xx for something that will not happen. */
static const struct {
	const char *prefix;
	const char *feature; /* with its verb, "is" or "are" */
} not_yet[] = {
	{"/balloon", "the balloon device is"},
	{"/cpu-config", "CPU templates are"},
	{"/pmem", "pmem devices are"},
	{"/entropy", "the entropy device is"},
	{"/serial", "serial configuration over the API is"},
	{"/hotplug", "memory hotplug is"},
	{"/snapshot", "snapshots are"},
	{"/vsock", "the vsock device is"},
};

static bool path_is(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	return !strncmp(path, prefix, n) && (path[n] == 0 || path[n] == '/');
}

static int bad_route(const char *method, const char *path, struct vmm_response *resp)
{
	for (size_t i = 0; i < sizeof(not_yet) / sizeof(not_yet[0]); i++)
		if (path_is(path, not_yet[i].prefix)) {
			vmm_response_fault(resp, 400, "%s %s: %s not supported by Ember yet",
					   method, path, not_yet[i].feature);
			return -1;
		}
	/* Firecracker's words: it names the path's first segment. */
	while (*path == '/')
		path++;
	vmm_response_fault(resp, 400, "Invalid request method and/or path: %s %.*s.", method,
			   (int)strcspn(path, "/"), path);
	return -1;
}

/* Parses a required JSON body. */
static json_t *body_json(const char *method, const char *body, size_t len,
			 struct vmm_response *resp)
{
	if (!len) {
		vmm_response_fault(resp, 400, "Empty %s request.", method);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		vmm_response_fault(resp, 400, "An error occurred when deserializing the json body of "
				   "a request: %s at line %d column %d.", je.text, je.line, je.column);
	return j;
}

/* serde's place for a missing field of the body's object: its closing
 * brace, the last non-blank byte (line and column from 1). */
static void body_end(const char *body, size_t len, int *line, int *col)
{
	size_t end = len;
	while (end > 0 && strchr(" \t\r\n", body[end - 1]))
		end--;
	*line = 1;
	size_t line_start = 0;
	for (size_t i = 0; i + 1 < end; i++)
		if (body[i] == '\n') {
			(*line)++;
			line_start = i + 1;
		}
	*col = (int)(end - line_start);
}

/* Firecracker's words for a body its parser refuses; a missing field of the
 * top-level object ("what: missing field `x`") gets serde's position, which
 * Firecracker's clients and tests match. */
static int bad_body(struct vmm_response *resp, const ember_err *e, const char *body, size_t len)
{
	const char *colon = strstr(e->msg, ": ");
	if (colon && !strncmp(colon + 2, "missing field `", 15) && !strchr(colon + 17, ':') &&
	    len) {
		int line, col;
		body_end(body, len, &line, &col);
		vmm_response_fault(resp, 400, "An error occurred when deserializing the json body "
				   "of a request: %s at line %d column %d.", e->msg, line, col);
		return -1;
	}
	vmm_response_fault(resp, 400, "An error occurred when deserializing the json body of a "
			   "request: %s.", e->msg);
	return -1;
}

/* A body that is one string field naming what to do: {"action_type": ...}
 * for /actions, {"state": ...} for /vm. A NULL feature means the choice is
 * served; otherwise it names what Ember lacks for it, with its verb. */
struct choice {
	const char *value;
	enum vmm_req_kind kind;
	const char *missing_feature;
};

static int parse_choice(json_t *j, const char *what, const char *key, const struct choice *c,
			size_t n, struct vmm_request *req, struct vmm_response *resp,
			const char *body, size_t len)
{
	const char *value;
	json_error_t je;
	ember_err e;
	if (json_unpack_ex(j, &je, JSON_STRICT, "{s:s}", key, &value)) {
		const struct field_spec spec = {key, JSON_STRING, true};
		config_unpack_error(what, j, &spec, 1, &je, &e);
		return bad_body(resp, &e, body, len);
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(value, c[i].value))
			continue;
		if (c[i].missing_feature) {
			vmm_response_fault(resp, 400, "%s: %s not supported by Ember yet", value,
					   c[i].missing_feature);
			return -1;
		}
		req->kind = c[i].kind;
		return 0;
	}
	/* serde's words for an enum value it does not know. */
	char expected[128] = "";
	for (size_t i = 0; i < n; i++)
		snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected),
			 "%s`%s`", i ? ", " : "", c[i].value);
	err_set(&e, "%s: %s: unknown variant `%s`, expected one of %s", what, key, value,
		expected);
	return bad_body(resp, &e, body, len);
}

static const struct choice actions[] = {
	{"InstanceStart", REQ_INSTANCE_START, NULL},
	{"SendCtrlAltDel", REQ_SEND_CTRL_ALT_DEL, NULL},
	{"FlushMetrics", REQ_FLUSH_METRICS, NULL},
};

static const struct choice vm_states[] = {
	{"Paused", REQ_PAUSE, NULL},
	{"Resumed", REQ_RESUME, NULL},
};

int api_parse(const char *method, const char *path, const char *body, size_t len,
	      struct vmm_request *req, struct vmm_response *resp)
{
	memset(req, 0, sizeof(*req));
	bool get = !strcmp(method, "GET"), put = !strcmp(method, "PUT"),
	     patch = !strcmp(method, "PATCH");

	if (get && len) { /* Firecracker's rule and words */
		vmm_response_fault(resp, 400, "GET request cannot have a body.");
		return -1;
	}
	if (get && (!strcmp(path, "/") || !strcmp(path, ""))) {
		req->kind = REQ_GET_INFO;
		return 0;
	}
	if (get && !strcmp(path, "/version")) {
		req->kind = REQ_GET_VERSION;
		return 0;
	}
	if (get && !strcmp(path, "/vm/config")) {
		req->kind = REQ_GET_VM_CONFIG;
		return 0;
	}
	if (get && !strcmp(path, "/machine-config")) {
		req->kind = REQ_GET_MACHINE_CONFIG;
		return 0;
	}

	if (get && !strcmp(path, "/mmds")) {
		req->kind = REQ_GET_MMDS;
		return 0;
	}

	enum {
		NONE, MACHINE_PUT, MACHINE_PATCH, BOOT, ACTIONS, VM, LOGGER, METRICS, MMDS_PUT,
		MMDS_PATCH, MMDS_CONFIG, NET_PUT, NET_PATCH, DRIVE_PUT, DRIVE_PATCH,
	} what = NONE;
	const char *id = NULL; /* the {id} of /network-interfaces/{id} or /drives/{id} */
	bool drives = path_is(path, "/drives");
	if ((path_is(path, "/network-interfaces") || drives) && (put || patch)) {
		id = path + strlen(drives ? "/drives" : "/network-interfaces");
		id += *id == '/';
		if (!*id) {
			vmm_response_fault(resp, 400, "The ID cannot be empty.");
			return -1;
		}
		if (strchr(id, '/'))
			return bad_route(method, path, resp);
		if (!config_id_valid(id)) {
			vmm_response_fault(resp, 400, "API Resource IDs can only contain alphanumeric "
					   "characters and underscores. (Ember: 1 to 64 of them, "
					   "got \"%.80s\")", id);
			return -1;
		}
		what = drives ? (put ? DRIVE_PUT : DRIVE_PATCH) : (put ? NET_PUT : NET_PATCH);
	} else if (put && !strcmp(path, "/machine-config"))
		what = MACHINE_PUT;
	else if (patch && !strcmp(path, "/machine-config"))
		what = MACHINE_PATCH;
	else if (put && !strcmp(path, "/boot-source"))
		what = BOOT;
	else if (put && !strcmp(path, "/actions"))
		what = ACTIONS;
	else if (patch && !strcmp(path, "/vm"))
		what = VM;
	else if (put && !strcmp(path, "/logger"))
		what = LOGGER;
	else if (put && !strcmp(path, "/metrics"))
		what = METRICS;
	else if (put && !strcmp(path, "/mmds"))
		what = MMDS_PUT;
	else if (patch && !strcmp(path, "/mmds"))
		what = MMDS_PATCH;
	else if (put && !strcmp(path, "/mmds/config"))
		what = MMDS_CONFIG;
	if (what == NONE)
		return bad_route(method, path, resp);

	ember_err e;
	if (what == MMDS_PUT || what == MMDS_PATCH) {
		/* MMDS contents are any JSON value, kept the way Firecracker
		 * keeps them (see src/mmds/json.h), not jansson's way. */
		if (!len) {
			vmm_response_fault(resp, 400, "Empty %s request.", method);
			return -1;
		}
		req->kind = what == MMDS_PUT ? REQ_PUT_MMDS : REQ_PATCH_MMDS;
		req->mmds_data = mmds_json_parse(body, len, &e);
		return req->mmds_data ? 0 : bad_body(resp, &e, body, len);
	}
	json_t *j = body_json(method, body, len, resp);
	if (!j)
		return -1;
	int rc = 0;
	switch (what) {
	case MACHINE_PUT:
		req->kind = REQ_PUT_MACHINE_CONFIG;
		if (config_parse_machine(j, &req->machine, &e))
			rc = bad_body(resp, &e, body, len);
		break;
	case MACHINE_PATCH:
		req->kind = REQ_PATCH_MACHINE_CONFIG;
		if (json_is_object(j) && json_object_size(j) == 0) {
			/* As Firecracker: a PATCH must change something. */
			err_set(&e, "machine-config: the PATCH body sets no field");
			rc = bad_body(resp, &e, body, len);
		} else if (config_parse_machine_patch(j, &req->patch, &e)) {
			rc = bad_body(resp, &e, body, len);
		}
		break;
	case BOOT:
		req->kind = REQ_PUT_BOOT_SOURCE;
		if (config_parse_boot_source(j, &req->boot_source, &e))
			rc = bad_body(resp, &e, body, len);
		break;
	case ACTIONS:
		rc = parse_choice(j, "actions", "action_type", actions, 3, req, resp, body, len);
		break;
	case VM:
		rc = parse_choice(j, "vm", "state", vm_states, 2, req, resp, body, len);
		break;
	case LOGGER:
		req->kind = REQ_PUT_LOGGER;
		if (config_parse_logger(j, &req->logger, &e))
			rc = bad_body(resp, &e, body, len);
		break;
	case METRICS:
		req->kind = REQ_PUT_METRICS;
		if (metrics_config_parse(j, &req->metrics, &e))
			rc = bad_body(resp, &e, body, len);
		break;
	case MMDS_CONFIG:
		req->kind = REQ_PUT_MMDS_CONFIG;
		if (mmds_config_parse(j, &req->mmds_config, &e))
			rc = bad_body(resp, &e, body, len);
		break;
	case DRIVE_PUT:
	case DRIVE_PATCH: {
		req->kind = what == DRIVE_PUT ? REQ_PUT_DRIVE : REQ_PATCH_DRIVE;
		if (what == DRIVE_PUT ? drive_config_parse(j, &req->drive, &e)
				      : drive_patch_parse(j, &req->drive_patch, &e)) {
			rc = bad_body(resp, &e, body, len);
			break;
		}
		const char *body_id = what == DRIVE_PUT ? req->drive.drive_id
							: req->drive_patch.drive_id;
		if (strcmp(body_id, id)) {
			vmm_response_fault(resp, 400, "The id from the path does not match the id "
					   "from the body!");
			rc = -1;
		}
		break;
	}
	case NET_PUT:
	case NET_PATCH: {
		req->kind = what == NET_PUT ? REQ_PUT_NET : REQ_PATCH_NET;
		const char *body_id;
		if (what == NET_PUT ? net_config_parse(j, &req->net, &e)
				    : net_patch_parse(j, &req->net_patch, &e)) {
			rc = bad_body(resp, &e, body, len);
			break;
		}
		body_id = what == NET_PUT ? req->net.iface_id : req->net_patch.iface_id;
		if (strcmp(body_id, id)) {
			vmm_response_fault(resp, 400, "The id from the path does not match the id "
					   "from the body!");
			rc = -1;
		}
		break;
	}
	default:
		break;
	}
	json_decref(j);
	if (rc)
		vmm_request_free(req);
	return rc;
}
