/* Firecracker's API over HTTP/1.1 on a Unix socket, served by Ember's own
 * small server: one API thread, an epoll loop over non-blocking
 * connections, keep-alive and pipelining, bodies framed by Content-Length.
 * Each complete request is parsed on the API thread and handed to the VMM
 * thread (vmm_channel_call), one at a time, as Firecracker. */
#ifndef EMBER_API_SERVER_H
#define EMBER_API_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "vmm/metrics.h"
#include "vmm/request.h"

#define API_DEFAULT_MAX_PAYLOAD 51200

/* What one client may hold (issue 16). */
struct api_limits {
	/* Open connections. At the limit a new one takes the slot of the
	 * longest-idle connection; if none is idle, it gets a 503 and is closed. */
	unsigned max_connections;
	/* From a request's first byte (or a new connection's accept) until it is
	 * complete, and for its response to be taken by the client: past it the
	 * connection is dropped (a 408 if a request was incomplete). */
	unsigned request_timeout_ms;
	/* A keep-alive connection with nothing under way is closed after it. */
	unsigned idle_timeout_ms;
};

#define API_DEFAULT_LIMITS {.max_connections = 64, .request_timeout_ms = 5000, \
			    .idle_timeout_ms = 120000}

struct api_server_opts {
	struct api_limits limits;
	/* Called first thing on the API thread, before it touches a connection:
	 * the place to install the API thread's own seccomp filter. May be NULL. */
	void (*on_thread_start)(void *arg);
	void *arg;
};

struct api_conn;

struct api_server {
	int listen_fd, epoll_fd, stop_fd;
	char path[108]; /* sun_path */
	size_t max_payload;
	struct api_limits limits;
	void (*on_thread_start)(void *arg);
	void *arg;
	struct vmm_channel *chan;
	struct metrics *metrics;
	struct api_conn **conns; /* limits.max_connections slots */
	unsigned n_conns;
	pthread_t thread;
	bool running;
};

/* Binds path (removing a stale socket file, refusing one in use) and starts
 * the API thread. The socket accepts connections when this returns. */
int api_server_start(struct api_server *s, const char *path, size_t max_payload,
		     struct vmm_channel *chan, struct metrics *metrics, ember_err *e);
/* The same with limits and a thread-start hook; opts NULL: the defaults. */
int api_server_start_opts(struct api_server *s, const char *path, size_t max_payload,
			  struct vmm_channel *chan, struct metrics *metrics,
			  const struct api_server_opts *opts, ember_err *e);
/* Stops the thread, closes every connection, removes the socket file. The
 * VMM thread must have closed the channel (or be answering it). */
void api_server_stop(struct api_server *s);

#endif
