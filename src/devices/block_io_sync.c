/* The Sync engine: blocking system calls on the caller's thread, straight
 * between the file and guest memory. Also the engine-independent helpers. */
#include "devices/block_io.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The kernel takes at most IOV_MAX iovecs per call; the device never builds
 * more, but a copy lets a partial transfer advance through them. */
#define SYNC_MAX_IOV 1024

/* preadv/pwritev until len bytes moved, EOF, or an error. Partial transfers
 * (a signal, a pipe-like file) continue where they stopped. Returns the
 * bytes moved at EOF, or -errno if an error stopped it, even after some
 * bytes moved: a write that fills the host's file system moves part of the
 * data, then fails with ENOSPC, and that is what the log must say. */
static int64_t transfer(int fd, bool write, const struct iovec *iov_in, int iovcnt,
			uint64_t offset, uint64_t len)
{
	if (iovcnt < 0 || iovcnt > SYNC_MAX_IOV)
		return -EINVAL;
	struct iovec iov[SYNC_MAX_IOV];
	memcpy(iov, iov_in, (size_t)iovcnt * sizeof(*iov));
	struct iovec *cur = iov;
	uint64_t done = 0;
	while (done < len && iovcnt > 0) {
		if (offset + done > (uint64_t)INT64_MAX)
			return done ? (int64_t)done : -EINVAL;
		ssize_t n = write ? pwritev(fd, cur, iovcnt, (off_t)(offset + done))
				  : preadv(fd, cur, iovcnt, (off_t)(offset + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break; /* end of file */
		done += (uint64_t)n;
		size_t left = (size_t)n;
		while (iovcnt > 0 && left >= cur->iov_len) {
			left -= cur->iov_len;
			cur++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			cur->iov_base = (uint8_t *)cur->iov_base + left;
			cur->iov_len -= left;
		}
	}
	return (int64_t)done;
}

static enum block_io_submit_result sync_submit(struct block_io *io, const struct block_io_req *r,
					       int64_t *res)
{
	switch (r->op) {
	case BLOCK_IO_READ:
	case BLOCK_IO_WRITE:
		*res = transfer(io->fd, r->op == BLOCK_IO_WRITE, r->iov, r->iovcnt, r->offset,
				r->len);
		break;
	case BLOCK_IO_FLUSH:
		*res = fdatasync(io->fd) ? -errno : 0;
		break;
	default:
		*res = -EINVAL;
	}
	return BLOCK_IO_DONE;
}

static int sync_set_file(struct block_io *io, int fd, ember_err *e)
{
	(void)e;
	io->fd = fd;
	return 0;
}

static void sync_destroy(struct block_io *io)
{
	free(io);
}

static const struct block_io_ops sync_ops = {
	.name = "Sync",
	.submit = sync_submit,
	.set_file = sync_set_file,
	.destroy = sync_destroy,
};

int block_io_sync_create(struct block_io **out, int fd, ember_err *e)
{
	struct block_io *io = calloc(1, sizeof(*io));
	if (!io)
		return err_set(e, "block I/O: out of memory");
	*io = (struct block_io){.ops = &sync_ops, .fd = fd, .event_fd = -1, .max_inflight = 1};
	*out = io;
	return 0;
}

static void discard(void *ctx, uint64_t cookie, int64_t res)
{
	(void)ctx;
	(void)cookie;
	(void)res;
}

void block_io_destroy(struct block_io *io)
{
	if (!io)
		return;
	block_io_drain(io, discard, NULL);
	io->ops->destroy(io);
}
