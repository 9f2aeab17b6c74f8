/* Ember's API in one table: for each route, its method and path, whether
 * the path carries a resource id, the request kind, how its body is read,
 * the metrics it counts into, and whether it may run before and/or after
 * InstanceStart. The API thread (api/parse.c, api/api_metrics.c) reads the
 * table to turn HTTP into a vmm_request; the VMM thread
 * (vmm/controller_api.c) reads it to refuse a request at the wrong time
 * with Firecracker's words. Nothing here touches the VM. */
#ifndef EMBER_ROUTES_H
#define EMBER_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "util/err.h"
#include "vmm/request.h"

enum api_method { API_GET, API_PUT, API_PATCH, API_OTHER };

/* When a request may run. */
#define ROUTE_BEFORE_START 1u
#define ROUTE_AFTER_START 2u
#define ROUTE_ALWAYS (ROUTE_BEFORE_START | ROUTE_AFTER_START)

#define ROUTE_NO_METRIC ((size_t)-1)

enum route_body {
	BODY_NONE, /* no body is read */
	BODY_JSON, /* a JSON object, read by parse */
	BODY_JSON_OPTIONAL, /* the same, or no body (parse gets NULL) */
	BODY_MMDS, /* any JSON value, kept the MMDS store's way (mmds/json.h) */
};

struct api_route {
	enum api_method method;
	const char *path;
	bool has_id; /* path/{id}, and the body's id must be the same */
	enum vmm_req_kind kind;
	enum route_body body;
	/* Fills req from the body (and may set req->kind); -1 and e set if it
	 * is not acceptable. */
	int (*parse)(json_t *j, struct vmm_request *req, ember_err *e);
	/* The body's id, compared with the path's (has_id routes). */
	const char *(*body_id)(const struct vmm_request *req);
	unsigned when;
	size_t count, fails; /* offsets of counters in struct metrics */
	/* Not served yet: the feature it would need, with its verb ("the
	 * balloon device is"); the route matches its path and anything below. */
	const char *missing;
	/* PUT /<key> of a device kind with its own config section, and that
	 * kind's own requests (device_req). */
	const struct device_ops *device;
	const struct device_request *device_req;
};

enum api_method api_method_parse(const char *method);
/* The route for method and path, or NULL. For has_id routes, *id points at
 * the id in path (or is empty if the path has none). */
const struct api_route *api_route_find(enum api_method method, const char *path,
				       const char **id);
/* A route for this path under some method, to tell a wrong method from an
 * unknown path; NULL if none. */
const struct api_route *api_route_any(const char *path);
/* ROUTE_BEFORE_START and/or ROUTE_AFTER_START for a request kind (a
 * REQ_DEVICE_REQUEST's is its device_req->when). */
unsigned api_request_when(enum vmm_req_kind kind);

#endif
