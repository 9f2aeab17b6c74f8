/* The VMM thread's epoll loop: each registered fd has a callback. */
#ifndef EMBER_EVENT_LOOP_H
#define EMBER_EVENT_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Events taken from epoll per wait; any number of fds can be watched. */
#define EVENT_LOOP_BATCH 64

typedef void (*event_fn)(void *ctx, uint32_t events);

struct event_handler {
	int fd;
	event_fn fn;
	void *ctx;
};

/* Handlers are allocated one by one, so the pointer epoll holds for each
 * stays valid while the table grows; a handler removed during a batch is
 * freed only after the batch, since a later event of the same batch may
 * still name it. */
struct event_loop {
	int epfd;
	struct event_handler **h;
	size_t n, cap;
	bool dispatching;
	bool dead; /* some handler was removed during the batch */
};

int event_loop_init(struct event_loop *l, ember_err *e);
void event_loop_destroy(struct event_loop *l);
/* Watches fd for `events` (EPOLLIN...); 0 disarms it but keeps the slot. */
int event_loop_add(struct event_loop *l, int fd, uint32_t events, event_fn fn, void *ctx);
int event_loop_modify(struct event_loop *l, int fd, uint32_t events);
void event_loop_remove(struct event_loop *l, int fd);
/* Waits once (timeout_ms as epoll_wait) and dispatches; -1 on error. */
int event_loop_run_once(struct event_loop *l, int timeout_ms);

#endif
