#include "api/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/api_metrics.h"
#include "api/http_conn.h"
#include "api/parse.h"
#include "util/log.h"
#include "util/thread_stack.h"

/* epoll data of the two fds that are not connections. */
#define TAG_LISTEN ((void *)1)
#define TAG_STOP ((void *)2)

static void dispatch(void *ctx, const struct api_http_head *h, const char *body, size_t len,
		     struct vmm_response *resp)
{
	struct api_server *s = ctx;
	if (body) {
		struct vmm_request req;
		if (api_parse(h->method, h->path, body, len, &req, resp) == 0) {
			vmm_channel_call(s->chan, &req, resp);
			if (req.deprecation) { /* as Firecracker: whatever the outcome */
				resp->deprecated = true;
				metric_inc(&s->metrics->deprecated_api.deprecated_http_api_calls);
				LOG_W("%s", req.deprecation);
			}
			vmm_request_free(&req);
		}
	}
	api_metrics_count(s->metrics, h->method, h->path, resp->status);
	LOG_D("API %s %s -> %d", h->method, h->path, resp->status);
}

static void drop(struct api_server *s, unsigned i)
{
	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->conns[i]->fd, NULL);
	api_conn_free(s->conns[i]);
	s->conns[i] = s->conns[--s->n_conns];
	s->conns[s->n_conns] = NULL;
}

static unsigned index_of(struct api_server *s, struct api_conn *c)
{
	for (unsigned i = 0; i < s->n_conns; i++)
		if (s->conns[i] == c)
			return i;
	return s->n_conns;
}

/* Best effort, on a socket that is then closed. */
static void refuse_connection(int fd, int status, const char *msg)
{
	struct api_conn c = {.fd = fd};
	api_conn_fault(&c, status, msg);
	api_conn_flush(&c);
	free(c.out);
	close(fd);
}

/* The longest-idle connection with nothing under way, or n_conns. */
static unsigned idlest(struct api_server *s)
{
	unsigned best = s->n_conns;
	for (unsigned i = 0; i < s->n_conns; i++)
		if (!api_conn_busy(s->conns[i]) && !s->conns[i]->closing &&
		    (best == s->n_conns || s->conns[i]->last_active < s->conns[best]->last_active))
			best = i;
	return best;
}

static void accept_all(struct api_server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				LOG_W("API socket: accept: %s", strerror(errno));
			return;
		}
		if (s->n_conns == s->limits.max_connections) {
			unsigned victim = idlest(s);
			if (victim == s->n_conns) {
				refuse_connection(fd, 503, "Too many open connections.");
				continue;
			}
			LOG_D("API: connection limit reached; closing the longest-idle one");
			drop(s, victim);
		}
		struct api_conn *c = calloc(1, sizeof(*c));
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (!c || epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		/* Its first request is due within the request timeout. */
		c->last_active = c->busy_since = api_now_ms();
		s->conns[s->n_conns++] = c;
	}
}

/* Reads or writes as epoll says, answers what is complete, and waits for
 * what the connection needs next. */
static void serve(struct api_server *s, struct api_conn *c, uint32_t events)
{
	unsigned i = index_of(s, c);
	if (i == s->n_conns)
		return;
	int rc = 0;
	if (events & EPOLLOUT)
		rc = api_conn_flush(c);
	if (rc == 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->out_off == c->out_len)
		rc = api_conn_read(c, s->max_payload);
	if (rc < 0) {
		drop(s, i);
		return;
	}
	c->last_active = api_now_ms();
	api_conn_process(c, s->max_payload, dispatch, s);
	if (api_conn_flush(c) < 0 || api_conn_done(c)) {
		drop(s, i);
		return;
	}
	/* Unsent output first: no more is read until the client takes it. */
	struct epoll_event ev = {.events = c->out_off < c->out_len ? EPOLLOUT : EPOLLIN,
				 .data.ptr = c};
	epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

static uint64_t deadline(const struct api_server *s, const struct api_conn *c)
{
	if (c->busy_since)
		return c->busy_since + s->limits.request_timeout_ms;
	return c->last_active + s->limits.idle_timeout_ms;
}

/* Drops the connections past their deadline; the ms until the next one. */
static int expire(struct api_server *s)
{
	uint64_t now = api_now_ms(), next = UINT64_MAX;
	for (unsigned i = 0; i < s->n_conns;) {
		struct api_conn *c = s->conns[i];
		uint64_t d = deadline(s, c);
		if (d > now) {
			next = d < next ? d : next;
			i++;
			continue;
		}
		if (c->in_len && c->out_off == c->out_len && !c->discard) {
			char msg[96];
			snprintf(msg, sizeof(msg), "Request timed out: incomplete after %u ms.",
				 s->limits.request_timeout_ms);
			refuse_connection(c->fd, 408, msg);
			c->fd = -1;
		}
		LOG_D("API: dropping a connection %s", c->busy_since ? "past the request timeout"
								    : "idle too long");
		drop(s, i);
	}
	return next == UINT64_MAX ? -1 : (int)(next - now + 1);
}

static void *api_thread(void *arg)
{
	struct api_server *s = arg;
	log_thread_name("fc_api");
	/* Before any byte from a client is read: the API thread's own set-up,
	 * such as its seccomp filter. */
	if (s->on_thread_start)
		s->on_thread_start(s->arg);
	struct epoll_event evs[16];
	for (;;) {
		int n = epoll_wait(s->epoll_fd, evs, 16, expire(s));
		if (n < 0 && errno != EINTR) {
			LOG_E("API thread: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == TAG_STOP)
				return NULL;
			if (evs[i].data.ptr == TAG_LISTEN)
				accept_all(s);
			else
				serve(s, evs[i].data.ptr, evs[i].events);
		}
	}
	return NULL;
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

static int watch(int epfd, int fd, void *tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int start_thread(struct api_server *s, ember_err *e)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, EMBER_THREAD_STACK_SIZE);
	/* Signals are the VMM thread's (its signalfd) and the vCPUs'. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&s->thread, &attr, api_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc)
		return err_set(e, "cannot start the API thread: %s", strerror(rc));
	s->running = true;
	return 0;
}

int api_server_start_opts(struct api_server *s, const char *path, size_t max_payload,
			  struct vmm_channel *chan, struct metrics *metrics,
			  const struct api_server_opts *opts, ember_err *e)
{
	static const struct api_limits defaults = API_DEFAULT_LIMITS;
	memset(s, 0, sizeof(*s));
	s->listen_fd = s->epoll_fd = s->stop_fd = -1;
	s->metrics = metrics;
	s->max_payload = max_payload;
	s->chan = chan;
	s->limits = opts ? opts->limits : defaults;
	if (!s->limits.max_connections)
		s->limits.max_connections = 1;
	s->on_thread_start = opts ? opts->on_thread_start : NULL;
	s->arg = opts ? opts->arg : NULL;
	size_t len = strlen(path);
	if (len >= sizeof(s->path))
		return err_set(e, "--api-sock %s: path longer than %zu bytes", path,
			       sizeof(s->path) - 1);
	memcpy(s->path, path, len + 1);
	if (claim_path(path, e))
		return -1;

	s->conns = calloc(s->limits.max_connections, sizeof(*s->conns));
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s->conns || s->listen_fd < 0 || s->epoll_fd < 0 || s->stop_fd < 0) {
		err_set(e, "--api-sock %s: %s", path, s->conns ? strerror(errno) : "out of memory");
		goto fail;
	}
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	memcpy(a.sun_path, s->path, sizeof(s->path));
	if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		err_set(e, "--api-sock %s: %s", path, strerror(errno));
		goto fail;
	}
	if (listen(s->listen_fd, 128) < 0 || watch(s->epoll_fd, s->listen_fd, TAG_LISTEN) ||
	    watch(s->epoll_fd, s->stop_fd, TAG_STOP)) {
		err_set(e, "--api-sock %s: %s", path, strerror(errno));
		unlink(s->path);
		goto fail;
	}
	if (start_thread(s, e) == 0)
		return 0;
	unlink(s->path);
fail:
	api_server_stop(s);
	return -1;
}

int api_server_start(struct api_server *s, const char *path, size_t max_payload,
		     struct vmm_channel *chan, struct metrics *metrics, ember_err *e)
{
	return api_server_start_opts(s, path, max_payload, chan, metrics, NULL, e);
}

void api_server_stop(struct api_server *s)
{
	if (s->running) {
		uint64_t one = 1;
		ssize_t w = write(s->stop_fd, &one, sizeof(one));
		(void)w;
		pthread_join(s->thread, NULL);
		s->running = false;
		unlink(s->path);
	}
	while (s->n_conns)
		drop(s, s->n_conns - 1);
	free(s->conns);
	s->conns = NULL;
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	s->listen_fd = s->epoll_fd = s->stop_fd = -1;
}
