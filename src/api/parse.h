/* Turns an HTTP request (method, path, body) into a vmm_request, in the API
 * thread, with Firecracker's routes and errors. Never touches the VM. */
#ifndef EMBER_API_PARSE_H
#define EMBER_API_PARSE_H

#include <stddef.h>

#include "vmm/request.h"

/* 0: req is ready for the VMM thread. -1: resp holds the error answer. */
int api_parse(const char *method, const char *path, const char *body, size_t len,
	      struct vmm_request *req, struct vmm_response *resp);

#endif
