/* The Async engine: io_uring through liburing.
 *
 * The ring is created disabled, given its one file (registered, so SQEs name
 * it by index 0 and never by descriptor) and its completion eventfd, and
 * then locked down with IORING_REGISTER_RESTRICTIONS before it is enabled:
 * only readv, writev and fsync, only on the registered file, and no register
 * operation but a file update. As in Firecracker, a bug elsewhere in the VMM
 * cannot turn this ring into a general-purpose syscall channel. */
#include "devices/block_io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "util/log.h"

struct uring_io {
	struct block_io io; /* first: the engine's struct block_io * points here */
	struct io_uring ring;
	unsigned queued; /* SQEs prepared but not yet accepted by the kernel */
	unsigned submit_errors;
	/* Requests the kernel would not take, taken back out of the ring and
	 * failed with -EIO: the next reap or drain hands them over. */
	uint64_t failed[BLOCK_IO_URING_DEPTH];
	unsigned nr_failed;
	/* Tests: the next inject_count submissions fail with -inject_err. */
	int inject_err;
	unsigned inject_count;
};

/* A failing submission with nothing else in the kernel is tried this many
 * times in a row before its requests fail: no completion would come to
 * retry it later. */
#define SUBMIT_TRIES 3

static struct uring_io *to_uring(struct block_io *io)
{
	return (struct uring_io *)io;
}

static enum block_io_submit_result uring_submit(struct block_io *io, const struct block_io_req *r,
						int64_t *res)
{
	struct uring_io *u = to_uring(io);
	if (r->op != BLOCK_IO_READ && r->op != BLOCK_IO_WRITE && r->op != BLOCK_IO_FLUSH) {
		*res = -EINVAL;
		return BLOCK_IO_DONE;
	}
	if (io->inflight >= io->max_inflight)
		return BLOCK_IO_FULL;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe)
		return BLOCK_IO_FULL;
	switch (r->op) {
	case BLOCK_IO_READ:
		io_uring_prep_readv(sqe, 0, r->iov, (unsigned)r->iovcnt, r->offset);
		break;
	case BLOCK_IO_WRITE:
		io_uring_prep_writev(sqe, 0, r->iov, (unsigned)r->iovcnt, r->offset);
		break;
	case BLOCK_IO_FLUSH:
		io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
		break;
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, r->cookie);
	io->inflight++;
	u->queued++;
	return BLOCK_IO_QUEUED;
}

static int submit(struct uring_io *u)
{
	if (u->inject_count) {
		/* What a refused io_uring_enter leaves behind: the SQEs are
		 * published to the kernel's ring, none consumed. */
		u->inject_count--;
		io_uring_smp_store_release(u->ring.sq.ktail, u->ring.sq.sqe_tail);
		u->ring.sq.sqe_head = u->ring.sq.sqe_tail;
		return -u->inject_err;
	}
	return io_uring_submit(&u->ring);
}

/* Takes the SQEs the kernel did not consume back out of the ring and fails
 * their requests with -EIO. Safe because nothing reads the ring but
 * io_uring_enter on this thread (no SQPOLL): the kernel has not seen them
 * and never will. liburing maps SQ slot i to SQE i, so the slots between
 * the kernel's head and our tail are the unsubmitted SQEs. */
static void fail_queued(struct uring_io *u)
{
	struct io_uring_sq *sq = &u->ring.sq;
	unsigned head = io_uring_smp_load_acquire(sq->khead);
	unsigned tail = *sq->ktail;
	for (unsigned p = head; p != tail; p++) {
		if (u->nr_failed < BLOCK_IO_URING_DEPTH)
			u->failed[u->nr_failed++] = sq->sqes[p & sq->ring_mask].user_data;
	}
	io_uring_smp_store_release(sq->ktail, head);
	sq->sqe_head = sq->sqe_tail = head;
	u->queued = 0;
	/* The owner reaps when the eventfd is readable: make it so. */
	uint64_t one = 1;
	if (write(u->io.event_fd, &one, sizeof(one)) < 0)
		LOG_D("block: completion eventfd: %s", strerror(errno));
}

/* Sends the queued SQEs. A refusal that a completion will retry (the
 * kernel is short of memory or busy while requests of ours are in it) is
 * left for the next reap; one that nothing would retry (nothing of ours in
 * the kernel, or an error that does not pass) fails the queued requests
 * with -EIO rather than leave the guest, or a drain, waiting for ever. */
static void uring_kick(struct block_io *io)
{
	struct uring_io *u = to_uring(io);
	unsigned tries = 0;
	while (u->queued) {
		int n = submit(u);
		if (n > 0) {
			u->queued -= (unsigned)n < u->queued ? (unsigned)n : u->queued;
			tries = 0;
			continue;
		}
		if (n == -EINTR)
			continue;
		int err = n ? -n : EAGAIN;
		bool transient = err == EAGAIN || err == EBUSY || err == ENOMEM;
		unsigned in_kernel = io->inflight - u->queued - u->nr_failed;
		if (transient && in_kernel) {
			if (u->submit_errors++ == 0)
				LOG_E("block: io_uring_submit: %s (retried at the next completion; "
				      "further failures are not logged)", strerror(err));
			return;
		}
		if (transient && ++tries < SUBMIT_TRIES)
			continue;
		if (u->submit_errors++ == 0)
			LOG_E("block: io_uring_submit: %s; %u requests fail with an I/O error "
			      "(further failures are not logged)", strerror(err), u->queued);
		fail_queued(u);
		return;
	}
}

static unsigned deliver_failed(struct uring_io *u, block_io_done_fn *done, void *ctx)
{
	unsigned n = 0;
	while (u->nr_failed) {
		uint64_t cookie = u->failed[--u->nr_failed];
		if (u->io.inflight)
			u->io.inflight--;
		done(ctx, cookie, -EIO);
		n++;
	}
	return n;
}

static unsigned uring_reap(struct block_io *io, block_io_done_fn *done, void *ctx)
{
	struct uring_io *u = to_uring(io);
	uint64_t count;
	/* Cleared before looking at the ring, so a completion that arrives
	 * after the last peek makes the eventfd readable again. */
	if (read(io->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		LOG_D("block: completion eventfd: %s", strerror(errno));
	unsigned n = deliver_failed(u, done, ctx);
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		uint64_t cookie = io_uring_cqe_get_data64(cqe);
		int64_t res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		if (io->inflight)
			io->inflight--;
		done(ctx, cookie, res);
		n++;
	}
	/* Anything the kernel refused earlier goes now (or fails). */
	uring_kick(io);
	return n + deliver_failed(u, done, ctx);
}

static void uring_drain(struct block_io *io, block_io_done_fn *done, void *ctx)
{
	struct uring_io *u = to_uring(io);
	while (io->inflight) {
		uring_kick(io);
		/* What the kernel refused is not waited for. */
		deliver_failed(u, done, ctx);
		if (!io->inflight)
			break;
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(&u->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			/* Nothing can complete any more (the ring is unusable);
			 * waiting on would hang the VMM. */
			LOG_E("block: io_uring_wait_cqe: %s; %u requests lost", strerror(-rc),
			      io->inflight);
			io->inflight = 0;
			return;
		}
		uint64_t cookie = io_uring_cqe_get_data64(cqe);
		int64_t res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		io->inflight--;
		done(ctx, cookie, res);
	}
	uint64_t count;
	if (read(io->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		LOG_D("block: completion eventfd: %s", strerror(errno));
}

void block_io_uring_inject_submit_error(struct block_io *io, int err, unsigned count)
{
	struct uring_io *u = to_uring(io);
	u->inject_err = err;
	u->inject_count = count;
}

static int uring_set_file(struct block_io *io, int fd, ember_err *e)
{
	struct uring_io *u = to_uring(io);
	if (io->inflight)
		return err_set(e, "io_uring: cannot change the file with %u requests in flight",
			       io->inflight);
	int rc = io_uring_register_files_update(&u->ring, 0, &fd, 1);
	if (rc < 0)
		return err_set(e, "io_uring: updating the registered file: %s", strerror(-rc));
	io->fd = fd;
	return 0;
}

static void uring_destroy(struct block_io *io)
{
	struct uring_io *u = to_uring(io);
	io_uring_queue_exit(&u->ring);
	close(io->event_fd);
	free(u);
}

static const struct block_io_ops uring_ops = {
	.name = "Async",
	.submit = uring_submit,
	.kick = uring_kick,
	.reap = uring_reap,
	.drain = uring_drain,
	.set_file = uring_set_file,
	.destroy = uring_destroy,
};

/* Debian's liburing 2.3 declares io_uring_register_restrictions() and
 * io_uring_enable_rings() but does not export them, so these two go to the
 * system call directly. */
static int ring_register(struct io_uring *ring, unsigned op, const void *arg, unsigned nr)
{
	long rc = syscall(__NR_io_uring_register, ring->ring_fd, op, arg, nr);
	return rc < 0 ? -errno : (int)rc;
}

static int lock_down(struct io_uring *ring)
{
	struct io_uring_restriction r[] = {
		{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV},
		{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV},
		{.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FSYNC},
		{.opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED, .sqe_flags = IOSQE_FIXED_FILE},
		{.opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED, .sqe_flags = IOSQE_FIXED_FILE},
		{.opcode = IORING_RESTRICTION_REGISTER_OP,
		 .register_op = IORING_REGISTER_FILES_UPDATE},
		{.opcode = IORING_RESTRICTION_REGISTER_OP,
		 .register_op = IORING_REGISTER_FILES_UPDATE2},
	};
	return ring_register(ring, IORING_REGISTER_RESTRICTIONS, r, sizeof(r) / sizeof(r[0]));
}

int block_io_uring_create(struct block_io **out, int fd, ember_err *e)
{
	struct uring_io *u = calloc(1, sizeof(*u));
	if (!u)
		return err_set(e, "io_uring: out of memory");
	u->io = (struct block_io){.ops = &uring_ops, .fd = fd, .max_inflight = BLOCK_IO_URING_DEPTH};
	u->io.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->io.event_fd < 0) {
		err_set(e, "io_uring: eventfd: %s", strerror(errno));
		free(u);
		return -1;
	}
	/* The completion queue is twice the submission queue, and at most
	 * BLOCK_IO_URING_DEPTH requests are in flight, so it never overflows. */
	struct io_uring_params p = {.flags = IORING_SETUP_R_DISABLED};
	int rc = io_uring_queue_init_params(BLOCK_IO_URING_DEPTH, &u->ring, &p);
	if (rc < 0) {
		err_set(e, "io_uring: setting up a ring: %s (the Async io_engine needs a host "
			   "kernel with io_uring, 5.10.51 or later)", strerror(-rc));
		close(u->io.event_fd);
		free(u);
		return -1;
	}
	const char *step = "registering the file";
	rc = io_uring_register_files(&u->ring, &fd, 1);
	if (rc >= 0) {
		step = "registering the eventfd";
		rc = io_uring_register_eventfd(&u->ring, u->io.event_fd);
	}
	if (rc >= 0) {
		step = "registering restrictions";
		rc = lock_down(&u->ring);
	}
	if (rc >= 0) {
		step = "enabling the ring";
		rc = ring_register(&u->ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	}
	if (rc < 0) {
		err_set(e, "io_uring: %s: %s", step, strerror(-rc));
		uring_destroy(&u->io);
		return -1;
	}
	*out = &u->io;
	return 0;
}
