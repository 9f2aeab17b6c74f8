/* Host output never blocks its producer: the queue itself, the serial port
 * writing to a pipe nobody reads, and the logger on such a stderr. Each
 * test arms an alarm: a producer that blocks (as the serial port and the
 * logger did before the queue) fails the test with SIGALRM, not a hang. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <fcntl.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "devices/serial.h"
#include "util/log.h"
#include "vmm/metrics.h"
#include "util/out_queue.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t drain(int fd)
{
	char buf[65536];
	size_t total = 0;
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		total += (size_t)n;
	}
	fcntl(fd, F_SETFL, fl);
	return total;
}

/* Fills a pipe to the brim, as a reader that stopped reading leaves it. */
static void fill(int fd)
{
	static char junk[4096];
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (write(fd, junk, sizeof(junk)) > 0 || write(fd, junk, 1) > 0)
		;
	fcntl(fd, F_SETFL, fl);
}

static void queue_delivers_in_order(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct out_queue *q = out_queue_create(p[1], 16);
	assert_non_null(q);
	alarm(10);
	/* Wraps around the 16-byte ring several times. */
	char want[200], got[200];
	for (size_t i = 0; i < sizeof(want); i++)
		want[i] = (char)('a' + i % 26);
	for (size_t i = 0; i < sizeof(want); i += 10) {
		while (out_queue_put(q, want + i, 10, true) != 10)
			out_queue_flush(q, 1000);
	}
	assert_true(out_queue_flush(q, 5000));
	size_t have = 0;
	while (have < sizeof(got)) {
		ssize_t n = read(p[0], got + have, sizeof(got) - have);
		assert_true(n > 0);
		have += (size_t)n;
	}
	assert_memory_equal(want, got, sizeof(want));
	out_queue_take_dropped(q);
	/* With whole, a put that does not fit takes nothing. */
	assert_int_equal(out_queue_put(q, want, 17, true), 0);
	assert_int_equal(out_queue_take_dropped(q), 17);
	out_queue_destroy(q, 1000);
	alarm(0);
	close(p[0]);
	close(p[1]);
}

/* A console arrives a byte at a time: the writer gathers a burst into one
 * write (a SOCK_SEQPACKET pair keeps each write() a message of its own),
 * while a line's newline and a partial line each still go out unasked. */
static void queue_writes_a_burst_at_once(void **state)
{
	(void)state;
	int sp[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	struct out_queue *q = out_queue_create(sp[1], 4096);
	assert_non_null(q);
	assert_int_equal(out_queue_start(q), 0);
	alarm(10);
	char line[101], got[256];
	memset(line, 'c', 100);
	line[100] = '\n';
	/* At a vCPU's pace: a byte every 20 us (busy-waited: a sleep's
	 * timer slack would stretch it). */
	for (size_t i = 0; i < sizeof(line); i++) {
		double until = now_s() + 20e-6;
		while (now_s() < until)
			;
		assert_int_equal(out_queue_put(q, line + i, 1, true), 1);
	}
	size_t have = 0;
	int writes = 0;
	while (have < sizeof(line)) {
		ssize_t n = read(sp[0], got + have, sizeof(got) - have);
		assert_true(n > 0);
		have += (size_t)n;
		writes++;
	}
	assert_int_equal(have, sizeof(line));
	assert_memory_equal(got, line, sizeof(line));
	/* One byte per write() before the writer gathered. */
	assert_true(writes < 10);
	/* A prompt with no newline is not held back for good. */
	assert_int_equal(out_queue_put(q, "# ", 2, true), 2);
	struct pollfd pfd = {.fd = sp[0], .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(read(sp[0], got, sizeof(got)), 2);
	out_queue_destroy(q, 1000);
	alarm(0);
	close(sp[0]);
	close(sp[1]);
}

/* Nobody reads the pipe: puts never block, what does not fit is counted,
 * and destroy returns after its idle bound although the writer is stuck. */
static void queue_never_blocks_on_a_full_pipe(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	fill(p[1]);
	struct out_queue *q = out_queue_create(p[1], 4096);
	assert_non_null(q);
	alarm(10);
	static char chunk[1000];
	memset(chunk, 'x', sizeof(chunk));
	size_t queued = 0;
	for (int i = 0; i < 1000; i++) /* 1 MB against a 64 KiB pipe */
		queued += out_queue_put(q, chunk, sizeof(chunk), false);
	uint64_t dropped = out_queue_take_dropped(q);
	assert_int_equal(queued + dropped, 1000 * sizeof(chunk));
	assert_true(dropped > 0);
	assert_false(out_queue_flush(q, 200));
	double t0 = now_s();
	out_queue_destroy(q, 200);
	assert_true(now_s() - t0 < 3);
	alarm(0);
	/* The abandoned writer finishes its write once the pipe drains. */
	drain(p[0]);
	close(p[0]);
	close(p[1]);
}

/* A broken pipe loses what is queued, counted, and takes no more. */
static void queue_counts_a_closed_reader(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	close(p[0]);
	struct out_queue *q = out_queue_create(p[1], 4096);
	alarm(10);
	assert_int_equal(out_queue_put(q, "hello", 5, false), 5);
	out_queue_flush(q, 2000);
	assert_int_equal(out_queue_take_dropped(q), 5);
	assert_int_equal(out_queue_put(q, "again", 5, false), 0);
	assert_int_equal(out_queue_take_dropped(q), 5);
	out_queue_destroy(q, 1000);
	alarm(0);
	close(p[1]);
}

/* The guest prints far more than the host reads: the vCPU's port writes
 * never block (before the queue, the 65,537th byte blocked the vCPU for
 * good, under the serial lock), the loss is counted in
 * uart.missed_write_count, host input still gets in, and serial_destroy
 * does not wait on the reader. */
static void serial_never_blocks_on_unread_stdout(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct uart_metrics m;
	memset(&m, 0, sizeof(m));
	fill(p[1]);
	struct serial s;
	serial_init(&s, p[1], -1);
	s.metrics = &m;
	alarm(20);
	uint8_t b = 'g';
	for (int i = 0; i < 1 << 20; i++)
		serial_ops.write(&s, 0, &b, 1);
	uint64_t written = metric_count(&m.write_count);
	uint64_t missed = metric_count(&m.missed_write_count);
	assert_int_equal(written + missed, 1 << 20);
	assert_int_equal(missed, (1 << 20) - SERIAL_OUT_QUEUE);
	assert_int_equal(serial_enqueue(&s, (const uint8_t *)"k", 1), 1);
	double t0 = now_s();
	serial_destroy(&s);
	assert_true(now_s() - t0 < SERIAL_FLUSH_IDLE_MS / 1000.0 + 3);
	alarm(0);
	drain(p[0]);
	close(p[0]);
	close(p[1]);
}

/* The logger on a stderr nobody reads: log_msg returns, lines that do not
 * fit are counted as lost. */
static void logger_never_blocks_on_unread_stderr(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	fill(p[1]);
	int saved = dup(STDERR_FILENO);
	assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
	alarm(20);
	uint64_t lost0 = log_lost_lines();
	for (int i = 0; i < 20000; i++) /* ~2 MB of lines against a full pipe */
		LOG_W("a line that nobody reads, number %d of 20000, padded to about a hundred", i);
	assert_true(log_lost_lines() > lost0);
	alarm(0);
	drain(p[0]);
	log_flush();
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(queue_delivers_in_order),
		cmocka_unit_test(queue_writes_a_burst_at_once),
		cmocka_unit_test(queue_never_blocks_on_a_full_pipe),
		cmocka_unit_test(queue_counts_a_closed_reader),
		cmocka_unit_test(serial_never_blocks_on_unread_stdout),
		cmocka_unit_test(logger_never_blocks_on_unread_stderr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
