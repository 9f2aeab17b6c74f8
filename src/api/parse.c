#include "api/parse.h"

#include <stdio.h>
#include <string.h>

#include "mmds/json.h"
#include "vmm/routes.h"

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

static int read_body(const char *method, const struct api_route *r, const char *body,
		     size_t len, struct vmm_request *req, struct vmm_response *resp)
{
	ember_err e;
	if (r->body == BODY_MMDS) {
		/* MMDS contents are any JSON value, kept the way Firecracker
		 * keeps them (see src/mmds/json.h), not jansson's way. */
		if (!len) {
			vmm_response_fault(resp, 400, "Empty %s request.", method);
			return -1;
		}
		req->mmds_data = mmds_json_parse(body, len, &e);
		return req->mmds_data ? 0 : bad_body(resp, &e, body, len);
	}
	if (r->body == BODY_JSON_OPTIONAL && !len) {
		ember_err pe;
		return r->parse(NULL, req, &pe) ? bad_body(resp, &pe, body, len) : 0;
	}
	json_t *j = body_json(method, body, len, resp);
	if (!j)
		return -1;
	int rc = r->parse(j, req, &e) ? bad_body(resp, &e, body, len) : 0;
	json_decref(j);
	return rc;
}

/* Firecracker's words: it names the path's first segment. */
static int bad_route(const char *method, const char *path, struct vmm_response *resp)
{
	while (*path == '/')
		path++;
	vmm_response_fault(resp, 400, "Invalid request method and/or path: %s %.*s.", method,
			   (int)strcspn(path, "/"), path);
	return -1;
}

int api_parse(const char *method, const char *path, const char *body, size_t len,
	      struct vmm_request *req, struct vmm_response *resp)
{
	memset(req, 0, sizeof(*req));
	if (!strcmp(method, "GET") && len) { /* Firecracker's rule and words */
		vmm_response_fault(resp, 400, "GET request cannot have a body.");
		return -1;
	}
	const char *id = NULL;
	const struct api_route *r = api_route_find(api_method_parse(method), path, &id);
	if (!r)
		return bad_route(method, path, resp);
	if (r->missing) {
		vmm_response_fault(resp, 400, "%s %s: %s not supported by Ember yet", method, path,
				   r->missing);
		return -1;
	}
	if (r->has_id) {
		if (!*id) {
			vmm_response_fault(resp, 400, "The ID cannot be empty.");
			return -1;
		}
		if (strchr(id, '/'))
			return bad_route(method, path, resp);
		if (!json_id_valid(id)) {
			vmm_response_fault(resp, 400, "API Resource IDs can only contain alphanumeric "
					   "characters and underscores. (Ember: 1 to 64 of them, "
					   "got \"%.80s\")", id);
			return -1;
		}
	}
	req->kind = r->kind;
	req->device_ops = r->device;
	req->device_req = r->device_req;
	if (r->body != BODY_NONE && read_body(method, r, body, len, req, resp)) {
		vmm_request_free(req);
		return -1;
	}
	if (r->has_id && strcmp(r->body_id(req), id)) {
		vmm_response_fault(resp, 400, "The id from the path does not match the id from the "
				   "body!");
		vmm_request_free(req);
		return -1;
	}
	return 0;
}
