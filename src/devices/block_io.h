/* The I/O engines behind virtio-block: one small interface, two engines.
 *
 *  - Sync: preadv/pwritev/fdatasync straight into guest memory on the
 *    calling thread; every request completes inside block_io_submit().
 *  - io_uring: requests are queued as SQEs, sent by block_io_kick(), and
 *    complete later; the engine's eventfd becomes readable when completions
 *    are waiting and block_io_reap() hands them over.
 *
 * An engine reads and writes the file descriptor it is given but does not
 * own it (block_io_set_file() swaps it). The iovecs of a queued request
 * must stay valid, and their memory mapped, until it completes. Not
 * thread-safe: one owner (the device, under its lock). */
#ifndef EMBER_BLOCK_IO_H
#define EMBER_BLOCK_IO_H

#include <stdint.h>
#include <sys/uio.h>

#include "util/err.h"

/* Requests an io_uring engine keeps in flight at most; its rings are sized
 * so that neither the submission nor the completion queue can overflow. */
#define BLOCK_IO_URING_DEPTH 128

enum block_io_op { BLOCK_IO_READ, BLOCK_IO_WRITE, BLOCK_IO_FLUSH };

struct block_io_req {
	enum block_io_op op;
	uint64_t offset;	  /* bytes; READ and WRITE */
	const struct iovec *iov; /* READ and WRITE */
	int iovcnt;
	uint64_t len;	  /* total of iov */
	uint64_t cookie;  /* handed back with the completion */
};

/* What block_io_submit() did. */
enum block_io_submit_result {
	BLOCK_IO_FULL = -1, /* no room: retry after a completion */
	BLOCK_IO_DONE = 0,  /* finished now; *res holds the result */
	BLOCK_IO_QUEUED = 1 /* completes later, through block_io_reap() */
};

/* A completion: res is the number of bytes transferred (0 for a flush) or
 * -errno. */
typedef void block_io_done_fn(void *ctx, uint64_t cookie, int64_t res);

struct block_io;

struct block_io_ops {
	const char *name;
	enum block_io_submit_result (*submit)(struct block_io *io, const struct block_io_req *r,
					      int64_t *res);
	void (*kick)(struct block_io *io);
	unsigned (*reap)(struct block_io *io, block_io_done_fn *done, void *ctx);
	void (*drain)(struct block_io *io, block_io_done_fn *done, void *ctx);
	int (*set_file)(struct block_io *io, int fd, ember_err *e);
	void (*destroy)(struct block_io *io);
};

struct block_io {
	const struct block_io_ops *ops;
	int fd;		     /* the backing file (not owned) */
	int event_fd;	     /* readable when completions wait; -1 for Sync */
	unsigned inflight;   /* queued or submitted, not yet reaped */
	unsigned max_inflight;
};

int block_io_sync_create(struct block_io **out, int fd, ember_err *e);
/* An io_uring engine for fd, restricted (IORING_REGISTER_RESTRICTIONS) to
 * readv, writev and fsync on its one registered file. */
int block_io_uring_create(struct block_io **out, int fd, ember_err *e);

/* Starts a request. */
static inline enum block_io_submit_result block_io_submit(struct block_io *io,
							  const struct block_io_req *r,
							  int64_t *res)
{
	return io->ops->submit(io, r, res);
}

/* Sends what submit queued to the kernel (one system call per batch). */
static inline void block_io_kick(struct block_io *io)
{
	if (io->ops->kick)
		io->ops->kick(io);
}

/* Clears the eventfd and calls done for every finished request, without
 * blocking. Returns how many. */
static inline unsigned block_io_reap(struct block_io *io, block_io_done_fn *done, void *ctx)
{
	return io->ops->reap ? io->ops->reap(io, done, ctx) : 0;
}

/* Waits until nothing is in flight, calling done for each request. */
static inline void block_io_drain(struct block_io *io, block_io_done_fn *done, void *ctx)
{
	if (io->ops->drain)
		io->ops->drain(io, done, ctx);
}

/* Points the engine at another file. Only with nothing in flight. */
static inline int block_io_set_file(struct block_io *io, int fd, ember_err *e)
{
	return io->ops->set_file(io, fd, e);
}

/* Drains, then frees the engine. NULL is ignored. */
void block_io_destroy(struct block_io *io);

#endif
