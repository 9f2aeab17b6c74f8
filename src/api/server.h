/* Firecracker's API over HTTP/1.1 on a Unix socket. Ember binds the socket,
 * libmicrohttpd serves it from its own thread (the API thread), and each
 * complete request is parsed there and handed to the VMM thread. */
#ifndef EMBER_API_SERVER_H
#define EMBER_API_SERVER_H

#include <stddef.h>

#include "util/err.h"
#include "vmm/metrics.h"
#include "vmm/request.h"

#define API_DEFAULT_MAX_PAYLOAD 51200

struct MHD_Daemon;

struct api_server {
	struct MHD_Daemon *daemon;
	int listen_fd;
	char path[108]; /* sun_path */
	size_t max_payload;
	struct vmm_channel *chan;
	struct metrics *metrics;
};

/* Binds path (removing a stale socket file, refusing one in use) and starts
 * serving. */
int api_server_start(struct api_server *s, const char *path, size_t max_payload,
		     struct vmm_channel *chan, struct metrics *metrics, ember_err *e);
void api_server_stop(struct api_server *s);

#endif
