/* The I/O engines when the host fails them. The io_uring engine when the
 * kernel refuses a submission: its requests must still complete (retried,
 * or failed with -EIO), never wait for ever. Before, a refused submission
 * left the SQEs in the ring to be "retried at the next completion", which
 * never came when nothing else was in flight: the guest waited for good,
 * and a drain (a path update, a reset, the end) blocked the VMM thread in
 * io_uring_wait_cqe. Alarms turn such a hang into a failed test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "devices/block_io.h"

struct done_log {
	unsigned n;
	uint64_t cookie[16];
	int64_t res[16];
};

static void on_done(void *ctx, uint64_t cookie, int64_t res)
{
	struct done_log *d = ctx;
	if (d->n < 16) {
		d->cookie[d->n] = cookie;
		d->res[d->n] = res;
	}
	d->n++;
}

struct fixture {
	char path[64];
	int fd;
	struct block_io *io;
	char buf[4][512];
	struct iovec iov[4];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/ember-test-bio-XXXXXX");
	f->fd = mkstemp(f->path);
	assert_true(f->fd >= 0);
	char data[4096];
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(write(f->fd, data, sizeof(data)), (ssize_t)sizeof(data));
	ember_err e;
	assert_int_equal(block_io_uring_create(&f->io, f->fd, &e), 0);
	for (int i = 0; i < 4; i++)
		f->iov[i] = (struct iovec){.iov_base = f->buf[i], .iov_len = 512};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	block_io_destroy(f->io);
	close(f->fd);
	unlink(f->path);
	free(f);
	return 0;
}

static void submit_reads(struct fixture *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct block_io_req r = {.op = BLOCK_IO_READ, .offset = 512 * i, .iov = &f->iov[i],
					 .iovcnt = 1, .len = 512, .cookie = 100 + i};
		int64_t res;
		assert_int_equal(block_io_submit(f->io, &r, &res), BLOCK_IO_QUEUED);
	}
	block_io_kick(f->io);
}

/* Reaps as the device does: when the eventfd says so, until n are done. */
static void reap_until(struct fixture *f, struct done_log *d, unsigned n)
{
	while (d->n < n) {
		struct pollfd p = {.fd = f->io->event_fd, .events = POLLIN};
		assert_int_equal(poll(&p, 1, 5000), 1); /* a completion must be signalled */
		block_io_reap(f->io, on_done, d);
	}
}

/* A refusal that passes is retried: the reads succeed. */
static void transient_refusal_is_retried(void **state)
{
	struct fixture *f = *state;
	struct done_log d = {0};
	alarm(10);
	block_io_uring_inject_submit_error(f->io, EAGAIN, 1);
	submit_reads(f, 2);
	reap_until(f, &d, 2);
	alarm(0);
	assert_int_equal(d.n, 2);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(d.res[i], 512);
	assert_int_equal(f->io->inflight, 0);
	assert_int_equal((uint8_t)f->buf[0][0], 0x5a);
}

/* A refusal that does not pass, with nothing else in the kernel: the reads
 * fail with -EIO, signalled on the eventfd, and the engine works after. */
static void lasting_refusal_fails_the_requests(void **state)
{
	struct fixture *f = *state;
	struct done_log d = {0};
	alarm(10);
	block_io_uring_inject_submit_error(f->io, EAGAIN, 100);
	submit_reads(f, 3);
	reap_until(f, &d, 3);
	assert_int_equal(d.n, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(d.res[i], -EIO);
	assert_int_equal(f->io->inflight, 0);
	/* A hard error fails at once. */
	memset(&d, 0, sizeof(d));
	block_io_uring_inject_submit_error(f->io, EBADF, 1);
	submit_reads(f, 1);
	reap_until(f, &d, 1);
	assert_int_equal(d.res[0], -EIO);
	/* The refused SQEs never reach the kernel later: the next reads
	 * complete once each, with their own cookies. */
	block_io_uring_inject_submit_error(f->io, 0, 0);
	memset(&d, 0, sizeof(d));
	submit_reads(f, 2);
	reap_until(f, &d, 2);
	alarm(0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.res[0], 512);
	assert_int_equal(d.res[1], 512);
	assert_true(d.cookie[0] == 100 || d.cookie[0] == 101);
	assert_true(d.cookie[1] == 100 || d.cookie[1] == 101);
	assert_int_not_equal(d.cookie[0], d.cookie[1]);
	struct pollfd p = {.fd = f->io->event_fd, .events = POLLIN};
	if (poll(&p, 1, 200) == 1)
		block_io_reap(f->io, on_done, &d);
	assert_int_equal(d.n, 2);
}

/* A drain with refused requests returns (before: io_uring_wait_cqe for a
 * completion that could never come). */
static void drain_does_not_wait_for_refused_requests(void **state)
{
	struct fixture *f = *state;
	struct done_log d = {0};
	alarm(10);
	block_io_uring_inject_submit_error(f->io, ENOMEM, 100);
	for (unsigned i = 0; i < 2; i++) {
		struct block_io_req r = {.op = BLOCK_IO_READ, .offset = 0, .iov = &f->iov[i],
					 .iovcnt = 1, .len = 512, .cookie = i};
		int64_t res;
		assert_int_equal(block_io_submit(f->io, &r, &res), BLOCK_IO_QUEUED);
	}
	block_io_drain(f->io, on_done, &d);
	alarm(0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.res[0], -EIO);
	assert_int_equal(f->io->inflight, 0);
}

/* The Sync engine: a write that moves part of its data, then fails (the
 * host's file system filling up: ENOSPC; here RLIMIT_FSIZE's EFBIG, which
 * needs no small file system) reports the error, not the bytes it moved,
 * so that the log says why (issue 16, docs/reliability.md). */
static void sync_partial_write_then_error_reports_the_error(void **state)
{
	(void)state;
	char path[] = "/tmp/ember-test-bio-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	struct block_io *io;
	ember_err e;
	assert_int_equal(block_io_sync_create(&io, fd, &e), 0);
	static char data[8192];
	memset(data, 0xa5, sizeof(data));
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct block_io_req r = {.op = BLOCK_IO_WRITE, .offset = 0, .iov = &iov, .iovcnt = 1,
				 .len = sizeof(data)};
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 4096 + 512;
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	int64_t res = 0;
	enum block_io_submit_result sr = block_io_submit(io, &r, &res);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, prev);
	assert_int_equal(sr, BLOCK_IO_DONE);
	assert_int_equal(res, -EFBIG);
	/* Part of it did reach the file. */
	assert_int_equal(lseek(fd, 0, SEEK_END), 4096 + 512);
	/* A read past the end is still a short count (EOF), not an error. */
	r.op = BLOCK_IO_READ;
	assert_int_equal(block_io_submit(io, &r, &res), BLOCK_IO_DONE);
	assert_int_equal(res, 4096 + 512);
	block_io_destroy(io);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(transient_refusal_is_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(lasting_refusal_fails_the_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(drain_does_not_wait_for_refused_requests, setup,
						teardown),
		cmocka_unit_test(sync_partial_write_then_error_reports_the_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
