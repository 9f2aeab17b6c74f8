#include "api/parse.h"

#include <string.h>

#include "mmds/json.h"
#include "vmm/routes.h"

/* Parses a required JSON body. */
static json_t *body_json(const char *body, size_t len, struct vmm_response *resp)
{
	if (!len) {
		vmm_response_fault(resp, 400, "The request body is empty");
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		vmm_response_fault(resp, 400, "An error occurred when deserializing the json body of "
				   "a request: %s at line %d column %d", je.text, je.line, je.column);
	return j;
}

static int bad_body(struct vmm_response *resp, const ember_err *e)
{
	vmm_response_fault(resp, 400, "An error occurred when deserializing the json body of a "
			   "request: %s", e->msg);
	return -1;
}

static int read_body(const struct api_route *r, const char *body, size_t len,
		     struct vmm_request *req, struct vmm_response *resp)
{
	ember_err e;
	if (r->body == BODY_MMDS) {
		/* MMDS contents are any JSON value, kept the way Firecracker
		 * keeps them (see src/mmds/json.h), not jansson's way. */
		if (!len) {
			vmm_response_fault(resp, 400, "The request body is empty");
			return -1;
		}
		req->mmds_data = mmds_json_parse(body, len, &e);
		return req->mmds_data ? 0 : bad_body(resp, &e);
	}
	json_t *j = body_json(body, len, resp);
	if (!j)
		return -1;
	int rc = r->parse(j, req, &e) ? bad_body(resp, &e) : 0;
	json_decref(j);
	return rc;
}

int api_parse(const char *method, const char *path, const char *body, size_t len,
	      struct vmm_request *req, struct vmm_response *resp)
{
	memset(req, 0, sizeof(*req));
	const char *id = NULL;
	const struct api_route *r = api_route_find(api_method_parse(method), path, &id);
	if (!r) {
		vmm_response_fault(resp, 400, "Invalid request method and/or path: %s %s", method,
				   path);
		return -1;
	}
	if (r->missing) {
		vmm_response_fault(resp, 400, "%s %s: %s not supported by Ember yet", method, path,
				   r->missing);
		return -1;
	}
	if (r->has_id) {
		if (!*id || strchr(id, '/')) {
			vmm_response_fault(resp, 400, "Invalid request method and/or path: %s %s",
					   method, path);
			return -1;
		}
		if (!json_id_valid(id)) {
			vmm_response_fault(resp, 400, "Invalid ID: \"%s\": use 1 to 64 letters, "
					   "digits or '_'", id);
			return -1;
		}
	}
	req->kind = r->kind;
	req->device_ops = r->device;
	if (r->body != BODY_NONE && read_body(r, body, len, req, resp)) {
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
