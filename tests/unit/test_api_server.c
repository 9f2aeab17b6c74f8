/* The API server with short limits (the integration tests use the defaults):
 * the thread-start hook, the idle and request timeouts, the connection
 * limit, and no buffers kept for an idle connection. A fake VMM thread
 * answers every request with 200 {}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/http_conn.h"
#include "api/server.h"

#define REQUEST_MS 300
#define IDLE_MS 500

static struct vmm_channel chan;
static struct metrics metrics;
static struct api_server server;
static char sock_path[108];
static pthread_t vmm_thread;
static volatile int stop_vmm;
static pthread_t hook_thread;
static int hook_calls;

static void *fake_vmm(void *arg)
{
	(void)arg;
	while (!stop_vmm) {
		struct pollfd p = {.fd = chan.event_fd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		if (vmm_channel_take(&chan)) {
			struct vmm_response r = {0};
			vmm_response_json(&r, 200, json_object());
			vmm_channel_answer(&chan, &r);
		}
	}
	return NULL;
}

static void hook(void *arg)
{
	assert_ptr_equal(arg, &server);
	hook_thread = pthread_self();
	__atomic_add_fetch(&hook_calls, 1, __ATOMIC_SEQ_CST);
}

static int setup(void **state)
{
	(void)state;
	metrics_init(&metrics);
	hook_calls = 0; /* before the API thread can call the hook */
	ember_err e = {0};
	assert_int_equal(vmm_channel_init(&chan, &e), 0);
	snprintf(sock_path, sizeof(sock_path), "/tmp/ember-test-api-%d.sock", (int)getpid());
	struct api_server_opts opts = {
		.limits = {.max_connections = 3, .request_timeout_ms = REQUEST_MS,
			   .idle_timeout_ms = IDLE_MS},
		.on_thread_start = hook,
		.arg = &server,
	};
	assert_int_equal(api_server_start_opts(&server, sock_path, 1000, &chan, &metrics, &opts,
					       &e), 0);
	stop_vmm = 0;
	assert_int_equal(pthread_create(&vmm_thread, NULL, fake_vmm, NULL), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vmm_channel_close(&chan);
	api_server_stop(&server);
	stop_vmm = 1;
	pthread_join(vmm_thread, NULL);
	vmm_channel_destroy(&chan);
	assert_int_equal(access(sock_path, F_OK), -1); /* the socket file is gone */
	return 0;
}

static uint64_t now_ms(void)
{
	return api_now_ms();
}

static int dial(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_str(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Reads until the server closes (or 5 s pass: a failure); the bytes in buf. */
static size_t read_to_close(int fd, char *buf, size_t cap)
{
	size_t have = 0;
	for (;;) {
		ssize_t n = recv(fd, buf + have, cap - 1 - have, 0);
		assert_true(n >= 0); /* not a timeout */
		if (n == 0)
			break;
		have += (size_t)n;
	}
	buf[have] = 0;
	return have;
}

/* One request and its whole response (the fake's is small: one recv). */
static void round_trip(int fd)
{
	send_str(fd, "GET / HTTP/1.1\r\n\r\n");
	char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = 0;
	assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(buf, "\r\n\r\n{}"));
}

static void hook_runs_first_on_the_api_thread(void **state)
{
	(void)state;
	int fd = dial();
	round_trip(fd);
	close(fd);
	assert_int_equal(__atomic_load_n(&hook_calls, __ATOMIC_SEQ_CST), 1);
	assert_true(pthread_equal(hook_thread, server.thread));
	assert_false(pthread_equal(hook_thread, pthread_self()));
}

static void idle_connection_is_closed_after_the_idle_timeout(void **state)
{
	(void)state;
	int fd = dial();
	round_trip(fd);
	uint64_t t0 = now_ms();
	char buf[64];
	assert_int_equal(read_to_close(fd, buf, sizeof(buf)), 0); /* closed, silently */
	uint64_t waited = now_ms() - t0;
	assert_true(waited >= IDLE_MS - 50);
	assert_true(waited < IDLE_MS + 3000);
	close(fd);
}

static void half_request_gets_408_after_the_request_timeout(void **state)
{
	(void)state;
	int fd = dial();
	uint64_t t0 = now_ms();
	send_str(fd, "PUT /machine-config HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\"");
	char buf[512];
	read_to_close(fd, buf, sizeof(buf));
	uint64_t waited = now_ms() - t0;
	assert_non_null(strstr(buf, "HTTP/1.1 408 "));
	assert_non_null(strstr(buf, "\"fault_message\""));
	assert_true(waited >= REQUEST_MS - 50 && waited < REQUEST_MS + 3000);
	close(fd);
}

static void new_connection_without_a_request_is_dropped(void **state)
{
	(void)state;
	int fd = dial();
	uint64_t t0 = now_ms();
	char buf[64];
	assert_int_equal(read_to_close(fd, buf, sizeof(buf)), 0);
	assert_true(now_ms() - t0 < REQUEST_MS + 3000);
	close(fd);
}

static void over_the_limit_with_all_busy_gets_503(void **state)
{
	(void)state;
	int busy[3];
	for (int i = 0; i < 3; i++) {
		busy[i] = dial();
		send_str(busy[i], "GET / HT");
	}
	int extra = dial();
	char buf[512];
	read_to_close(extra, buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 503 "));
	assert_non_null(strstr(buf, "Too many open connections"));
	close(extra);
	for (int i = 0; i < 3; i++)
		close(busy[i]);
}

static void idle_connection_holds_no_buffer(void **state)
{
	(void)state;
	int fd = dial();
	/* A body of the largest size allowed grows the input buffer... */
	char req[1200];
	int n = snprintf(req, sizeof(req), "PUT /mmds HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
	memset(req + n, ' ', 1000);
	req[n + 1000] = 0;
	req[n] = '{';
	req[n + 999] = '}';
	send_str(fd, req);
	char buf[512];
	assert_true(recv(fd, buf, sizeof(buf), 0) > 0);
	/* ...which goes once the answer is out. */
	uint64_t t0 = now_ms();
	for (;;) {
		struct api_conn *c = __atomic_load_n(&server.conns[0], __ATOMIC_SEQ_CST);
		if (c && !__atomic_load_n(&c->in, __ATOMIC_SEQ_CST) &&
		    !__atomic_load_n(&c->out, __ATOMIC_SEQ_CST))
			break;
		assert_true(now_ms() - t0 < 2000);
		usleep(1000);
	}
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(hook_runs_first_on_the_api_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(idle_connection_is_closed_after_the_idle_timeout,
						setup, teardown),
		cmocka_unit_test_setup_teardown(half_request_gets_408_after_the_request_timeout,
						setup, teardown),
		cmocka_unit_test_setup_teardown(new_connection_without_a_request_is_dropped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(over_the_limit_with_all_busy_gets_503, setup,
						teardown),
		cmocka_unit_test_setup_teardown(idle_connection_holds_no_buffer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
