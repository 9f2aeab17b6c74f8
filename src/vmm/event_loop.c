#include "vmm/event_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int event_loop_init(struct event_loop *l, ember_err *e)
{
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < EVENT_LOOP_MAX; i++)
		l->handlers[i].fd = -1;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return err_set(e, "epoll_create1: %s", strerror(errno));
	return 0;
}

void event_loop_destroy(struct event_loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

int event_loop_add(struct event_loop *l, int fd, uint32_t events, event_fn fn, void *ctx)
{
	for (int i = 0; i < EVENT_LOOP_MAX; i++) {
		struct event_handler *h = &l->handlers[i];
		if (h->fd != -1)
			continue;
		struct epoll_event ev = {.events = events, .data.ptr = h};
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -1;
		*h = (struct event_handler){fd, fn, ctx};
		return 0;
	}
	errno = ENOSPC;
	return -1;
}

static struct event_handler *find(struct event_loop *l, int fd)
{
	for (int i = 0; i < EVENT_LOOP_MAX; i++)
		if (l->handlers[i].fd == fd)
			return &l->handlers[i];
	return NULL;
}

int event_loop_modify(struct event_loop *l, int fd, uint32_t events)
{
	struct event_handler *h = find(l, fd);
	if (!h)
		return -1;
	struct epoll_event ev = {.events = events, .data.ptr = h};
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void event_loop_remove(struct event_loop *l, int fd)
{
	struct event_handler *h = find(l, fd);
	if (!h)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	h->fd = -1;
}

int event_loop_run_once(struct event_loop *l, int timeout_ms)
{
	struct epoll_event evs[EVENT_LOOP_MAX];
	int n = epoll_wait(l->epfd, evs, EVENT_LOOP_MAX, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	for (int i = 0; i < n; i++) {
		struct event_handler *h = evs[i].data.ptr;
		/* A handler earlier in this batch may have removed this one. */
		if (h->fd != -1)
			h->fn(h->ctx, evs[i].events);
	}
	return n;
}
