#include "api/server.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api_metrics.h"
#include "api/parse.h"
#include "vmm/log.h"
#include "vmm/thread_stack.h"

/* What one request has sent so far. */
struct pending {
	char *body;
	size_t len;
	size_t received; /* counts past max_payload too, for the error */
};

static enum MHD_Result reply(struct MHD_Connection *conn, const struct vmm_response *r)
{
	struct MHD_Response *resp;
	if (r->body) {
		resp = MHD_create_response_from_buffer(strlen(r->body), r->body,
						       MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(resp, "Content-Type", "application/json");
	} else {
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	}
	MHD_add_response_header(resp, "Server", "Ember");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct api_server *s = cls;
	struct pending *p = *con_cls;
	(void)version;

	if (!p) { /* headers are in; the body (if any) follows */
		p = calloc(1, sizeof(*p));
		if (!p)
			return MHD_NO;
		*con_cls = p;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		p->received += n;
		if (p->received <= s->max_payload) {
			char *nb = realloc(p->body, p->len + n + 1);
			if (!nb)
				return MHD_NO;
			memcpy(nb + p->len, upload_data, n);
			p->len += n;
			nb[p->len] = 0;
			p->body = nb;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	log_thread_name("fc_api");
	struct vmm_response resp = {0};
	if (p->received > s->max_payload) {
		vmm_response_fault(&resp, 400, "Request payload with size %zu is larger than the "
				   "limit of %zu allowed by server.", p->received, s->max_payload);
	} else {
		struct vmm_request req;
		if (api_parse(method, url, p->body ? p->body : "", p->len, &req, &resp) == 0) {
			vmm_channel_call(s->chan, &req, &resp);
			vmm_request_free(&req);
		}
	}
	api_metrics_count(s->metrics, method, url, resp.status);
	LOG_D("API %s %s -> %d", method, url, resp.status);
	return reply(conn, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct pending *p = *con_cls;
	(void)cls, (void)conn, (void)toe;
	if (p) {
		free(p->body);
		free(p);
	}
	*con_cls = NULL;
}

/* A socket file nobody listens on is stale and may go; a live one may not. */
static int claim_path(const char *path, ember_err *e)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : err_set(e, "--api-sock %s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return err_set(e, "--api-sock %s: exists and is not a socket", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	bool live = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	if (live)
		return err_set(e, "--api-sock %s: another process is serving this socket", path);
	if (unlink(path) < 0)
		return err_set(e, "--api-sock %s: cannot remove the stale socket: %s", path,
			       strerror(errno));
	return 0;
}

int api_server_start(struct api_server *s, const char *path, size_t max_payload,
		     struct vmm_channel *chan, struct metrics *metrics, ember_err *e)
{
	memset(s, 0, sizeof(*s));
	s->metrics = metrics;
	s->listen_fd = -1;
	s->max_payload = max_payload;
	s->chan = chan;
	size_t len = strlen(path);
	if (len >= sizeof(s->path))
		return err_set(e, "--api-sock %s: path longer than %zu bytes", path,
			       sizeof(s->path) - 1);
	memcpy(s->path, path, len + 1);
	if (claim_path(path, e))
		return -1;

	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0)
		return err_set(e, "socket: %s", strerror(errno));
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, s->path, sizeof(s->path));
	if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(s->listen_fd, 128) < 0) {
		err_set(e, "--api-sock %s: %s", path, strerror(errno));
		close(s->listen_fd);
		s->listen_fd = -1;
		return -1;
	}
	s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL,
				     NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
				     MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
				     MHD_OPTION_THREAD_STACK_SIZE, (size_t)EMBER_THREAD_STACK_SIZE,
				     MHD_OPTION_END);
	if (!s->daemon) {
		close(s->listen_fd);
		s->listen_fd = -1;
		unlink(s->path);
		return err_set(e, "--api-sock %s: cannot start the HTTP server", path);
	}
	return 0;
}

void api_server_stop(struct api_server *s)
{
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->path);
	}
	s->listen_fd = -1;
}
