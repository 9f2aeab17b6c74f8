#include "vmm/event_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int event_loop_init(struct event_loop *l, ember_err *e)
{
	memset(l, 0, sizeof(*l));
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
	for (size_t i = 0; i < l->n; i++)
		free(l->h[i]);
	free(l->h);
	l->h = NULL;
	l->n = l->cap = 0;
}

int event_loop_add(struct event_loop *l, int fd, uint32_t events, event_fn fn, void *ctx)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct event_handler **h = realloc(l->h, cap * sizeof(*h));
		if (!h)
			return -1; /* errno is ENOMEM */
		l->h = h;
		l->cap = cap;
	}
	struct event_handler *h = malloc(sizeof(*h));
	if (!h)
		return -1;
	*h = (struct event_handler){fd, fn, ctx};
	struct epoll_event ev = {.events = events, .data.ptr = h};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = errno;
		free(h);
		errno = err;
		return -1;
	}
	l->h[l->n++] = h;
	return 0;
}

static struct event_handler *find(struct event_loop *l, int fd)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->h[i]->fd == fd)
			return l->h[i];
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

/* Frees the handlers removed (fd -1), outside a batch. */
static void sweep(struct event_loop *l)
{
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (l->h[i]->fd == -1)
			free(l->h[i]);
		else
			l->h[k++] = l->h[i];
	}
	l->n = k;
	l->dead = false;
}

void event_loop_remove(struct event_loop *l, int fd)
{
	struct event_handler *h = find(l, fd);
	if (!h)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	h->fd = -1;
	l->dead = true;
	if (!l->dispatching)
		sweep(l);
}

int event_loop_run_once(struct event_loop *l, int timeout_ms)
{
	struct epoll_event evs[EVENT_LOOP_BATCH];
	int n = epoll_wait(l->epfd, evs, EVENT_LOOP_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	l->dispatching = true;
	for (int i = 0; i < n; i++) {
		struct event_handler *h = evs[i].data.ptr;
		/* A handler earlier in this batch may have removed this one. */
		if (h->fd != -1)
			h->fn(h->ctx, evs[i].events);
	}
	l->dispatching = false;
	if (l->dead)
		sweep(l);
	return n;
}
