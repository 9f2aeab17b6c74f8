/* Host output that can never block its producer: a bounded byte queue in
 * front of a file descriptor, written by a thread of its own.
 *
 * The guest's console (Ember's stdout) and the logger's stderr are whatever
 * the caller made them: a pipe nobody reads, a pty with a stopped reader. A
 * write() there blocks for good, and a vCPU or the VMM thread blocked on it
 * (under a device's lock) stops the whole VMM: the API, the devices,
 * SIGTERM. Producers here only copy into the queue, under a mutex held for
 * that copy; what does not fit is dropped and counted. The writer thread is
 * the only one that may block on the descriptor. It writes a burst at once:
 * woken by a first byte, it waits up to a few milliseconds for the line's
 * newline (docs/reliability.md: a wake-up per console byte was measured to
 * make nested guests fail more often). */
#ifndef EMBER_OUT_QUEUE_H
#define EMBER_OUT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct out_queue;

/* A queue of `capacity` bytes in front of fd (not owned: never closed).
 * NULL if out of memory. */
struct out_queue *out_queue_create(int fd, size_t capacity);

/* Starts the writer thread (once; later calls do nothing). Bytes queued
 * before wait for it. It is started explicitly, never by a producer: the
 * new thread inherits its creator's seccomp filters, and vCPU and API
 * threads may not create threads at all (docs/seccomp.md). So the owner
 * starts it on the VMM thread once that thread's filter is on, and the
 * writer runs under the vmm filter. A flush or destroy starts it if bytes
 * wait (an error at start-up). -1 if the thread cannot be created. */
int out_queue_start(struct out_queue *q);

/* Queues len bytes. With whole, all or nothing (a log line is never
 * torn); otherwise as many as fit. Returns how many were queued; the rest
 * are dropped and counted (out_queue_take_dropped). Never blocks on fd. */
size_t out_queue_put(struct out_queue *q, const void *data, size_t len, bool whole);

/* Bytes dropped since the last call: the queue was full, or fd failed
 * (closed, EPIPE) and took what was queued with it. */
uint64_t out_queue_take_dropped(struct out_queue *q);

/* Waits until everything queued has been written, giving up once the
 * writer has made no progress for idle_ms (a reader that went away). Returns
 * true if the queue is empty. */
bool out_queue_flush(struct out_queue *q, unsigned idle_ms);

/* out_queue_flush(idle_ms), then the end of the queue. A writer still
 * blocked in write() is left behind (detached) and frees the queue when
 * that write returns: destroy itself never waits on fd beyond idle_ms. */
void out_queue_destroy(struct out_queue *q, unsigned idle_ms);

#endif
