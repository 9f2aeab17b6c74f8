#include "util/out_queue.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The writer does nothing but write(): a small stack is plenty. */
#define WRITER_STACK (64u << 10)

/* A guest console arrives a byte per vCPU exit. Waking the writer for each
 * byte costs the host two thread wake-ups per byte (writer, then the
 * reader of fd); so the writer, woken by a first byte, waits up to this
 * long for the rest of the line. A newline, a half-full queue, a flush or
 * the end cut the wait short: only a partial line (a prompt) waits it out. */
#define GATHER_MS 5

struct out_queue {
	pthread_mutex_t lock;
	pthread_cond_t more;     /* writer: data queued, or stop */
	pthread_cond_t progress; /* flushers: bytes written, or the writer ended */
	int fd;
	uint8_t *buf;
	size_t cap, head, len;
	uint64_t written;
	unsigned flushers;       /* callers in flush_locked: write at once */
	unsigned gather_ms;
	bool newline;            /* a newline queued since the last write */
	bool started, writing, gathering, stop, abandoned, broken;
	atomic_uint_fast64_t dropped;
	pthread_t thread;
};

struct out_queue *out_queue_create(int fd, size_t capacity)
{
	struct out_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->buf = malloc(capacity);
	if (!q->buf) {
		free(q);
		return NULL;
	}
	q->fd = fd;
	q->cap = capacity;
	/* EMBER_DEBUG_NO_GATHER=1: a write per wake-up, as before gathering
	 * (bench/nested-boot.py's ember-nogather, an A/B of the two). */
	const char *no_gather = getenv("EMBER_DEBUG_NO_GATHER");
	q->gather_ms = no_gather && !strcmp(no_gather, "1") ? 0 : GATHER_MS;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->more, &ca);
	pthread_cond_init(&q->progress, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&q->dropped, 0);
	return q;
}

static void free_queue(struct out_queue *q)
{
	pthread_cond_destroy(&q->more);
	pthread_cond_destroy(&q->progress);
	pthread_mutex_destroy(&q->lock);
	free(q->buf);
	free(q);
}

static struct timespec after_ms(unsigned ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* With the lock held: true while the writer should let more bytes come. */
static bool may_gather(const struct out_queue *q)
{
	return q->gather_ms && !q->stop && !q->flushers && !q->newline && q->len < q->cap / 2;
}

/* With the lock held: waits at most GATHER_MS for a burst to end. */
static void gather(struct out_queue *q)
{
	struct timespec until = after_ms(q->gather_ms);
	q->gathering = true;
	while (may_gather(q))
		if (pthread_cond_timedwait(&q->more, &q->lock, &until) == ETIMEDOUT)
			break;
	q->gathering = false;
}

static void *writer(void *arg)
{
	struct out_queue *q = arg;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->len && !q->stop)
			pthread_cond_wait(&q->more, &q->lock);
		if (!q->len)
			break; /* stopping, and nothing left */
		gather(q);
		if (!q->len)
			continue; /* emptied by a destroy while gathering */
		/* Producers only append past head+len: the bytes being written
		 * stay put while the lock is dropped. */
		size_t chunk = q->len < q->cap - q->head ? q->len : q->cap - q->head;
		if (chunk == q->len)
			q->newline = false;
		q->writing = true;
		pthread_mutex_unlock(&q->lock);
		ssize_t n = write(q->fd, q->buf + q->head, chunk);
		int err = errno;
		if (n < 0 && err == EAGAIN) {
			/* Someone made fd non-blocking: wait for room here. */
			struct pollfd p = {.fd = q->fd, .events = POLLOUT};
			poll(&p, 1, 100);
		}
		pthread_mutex_lock(&q->lock);
		q->writing = false;
		if (q->abandoned)
			break;
		if (n > 0) {
			q->head = (q->head + (size_t)n) % q->cap;
			q->len -= (size_t)n;
			q->written += (uint64_t)n;
		} else if (n == 0 || (err != EINTR && err != EAGAIN)) {
			/* Closed or broken: what is queued, and all that
			 * follows, is lost and counted. */
			atomic_fetch_add(&q->dropped, q->len);
			q->len = 0;
			q->broken = true;
		}
		pthread_cond_broadcast(&q->progress);
	}
	bool abandoned = q->abandoned;
	q->started = false;
	pthread_cond_broadcast(&q->progress);
	pthread_mutex_unlock(&q->lock);
	if (abandoned)
		free_queue(q);
	return NULL;
}

static int start_writer(struct out_queue *q)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, WRITER_STACK);
	/* No signal for this thread: SIGTERM/SIGINT belong to the VMM
	 * thread's signalfd, the kick signal to the vCPUs. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&q->thread, &attr, writer, q);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc;
}

/* With the lock held. */
static int start_locked(struct out_queue *q)
{
	if (q->started || q->stop)
		return 0;
	if (start_writer(q))
		return -1;
	q->started = true;
	return 0;
}

int out_queue_start(struct out_queue *q)
{
	pthread_mutex_lock(&q->lock);
	int rc = start_locked(q);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

size_t out_queue_put(struct out_queue *q, const void *data, size_t len, bool whole)
{
	pthread_mutex_lock(&q->lock);
	size_t room = q->broken || q->stop ? 0 : q->cap - q->len;
	size_t n = len <= room ? len : whole ? 0 : room;
	size_t tail = (q->head + q->len) % q->cap;
	size_t first = n < q->cap - tail ? n : q->cap - tail;
	memcpy(q->buf + tail, data, first);
	memcpy(q->buf, (const uint8_t *)data + first, n - first);
	bool was_empty = q->len == 0;
	q->len += n;
	if (n && memchr(data, '\n', n))
		q->newline = true;
	/* The first byte wakes the writer; while it gathers, a newline or
	 * the queue's second half ends its wait. */
	if (n && (was_empty || (q->gathering && (q->newline || q->len >= q->cap / 2))))
		pthread_cond_signal(&q->more);
	pthread_mutex_unlock(&q->lock);
	if (n < len)
		atomic_fetch_add(&q->dropped, len - n);
	return n;
}

uint64_t out_queue_take_dropped(struct out_queue *q)
{
	return atomic_exchange(&q->dropped, 0);
}

/* With the lock held. A window of idle_ms with no byte written ends the
 * wait; any progress opens a new window. */
static bool flush_locked(struct out_queue *q, unsigned idle_ms)
{
	uint64_t seen = q->written;
	struct timespec until = after_ms(idle_ms);
	q->flushers++;
	pthread_cond_signal(&q->more); /* a gathering writer writes now */
	while (q->len && q->started) {
		if (pthread_cond_timedwait(&q->progress, &q->lock, &until) != ETIMEDOUT)
			continue;
		if (q->written == seen)
			break;
		seen = q->written;
		until = after_ms(idle_ms);
	}
	q->flushers--;
	return q->len == 0;
}

bool out_queue_flush(struct out_queue *q, unsigned idle_ms)
{
	pthread_mutex_lock(&q->lock);
	/* Bytes queued before the writer was started (an error at start-up)
	 * still go out. */
	if (q->len)
		start_locked(q);
	bool done = flush_locked(q, idle_ms);
	pthread_mutex_unlock(&q->lock);
	return done;
}

void out_queue_destroy(struct out_queue *q, unsigned idle_ms)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	if (q->len)
		start_locked(q);
	flush_locked(q, idle_ms);
	q->stop = true;
	if (!q->started) {
		pthread_mutex_unlock(&q->lock);
		free_queue(q);
		return;
	}
	if (q->writing) {
		/* Stuck in write(): it frees the queue when that returns. */
		atomic_fetch_add(&q->dropped, q->len);
		q->abandoned = true;
		pthread_detach(q->thread);
		pthread_mutex_unlock(&q->lock);
		return;
	}
	q->len = 0;
	pthread_cond_signal(&q->more);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
	free_queue(q);
}
