#include "seccomp/seccomp.h"

#include <errno.h>
#include <jansson.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "seccomp/bpf.h"
#include "seccomp/compile.h"
#include "seccomp/prebuilt.h"
#include "util/sigsafe_fmt.h"

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1 /* si_code of a SECCOMP_RET_TRAP */
#endif

/* What each thread kind installs: the prebuilt defaults, or a
 * --seccomp-filter file's programs, compiled at start into `compiled`. */
static struct seccomp_prebuilt active[SECCOMP_THREAD_KINDS];
static struct seccomp_bpf compiled[SECCOMP_THREAD_KINDS];
static bool enabled;
static struct seccomp_reporter reporter; /* read by the SIGSYS handler */

void seccomp_set_reporter(const struct seccomp_reporter *r)
{
	reporter = *r;
}

/* ---- the SIGSYS handler: async-signal-safe only ------------------------ */

static void report_line(const char *msg)
{
	if (reporter.log) {
		reporter.log(msg);
		return;
	}
	ssize_t rc = write(STDERR_FILENO, msg, strlen(msg));
	rc = write(STDERR_FILENO, "\n", 1);
	(void)rc;
}

static void on_sigsys(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	char msg[96], *p = msg, *end = msg + sizeof(msg) - 1;
	if (sig != SIGSYS || si->si_code != SYS_SECCOMP) {
		p = sigsafe_str(p, end, "Shutting down VM after intercepting signal ");
		p = sigsafe_u64(p, end, (uint64_t)sig, 0);
		p = sigsafe_str(p, end, ", code ");
		p = sigsafe_u64(p, end, (uint64_t)(unsigned)si->si_code, 0);
		p = sigsafe_str(p, end, ".");
		*p = 0;
		report_line(msg);
		_exit(2); /* Firecracker's UnexpectedError */
	}
	/* Firecracker's words; the thread's name is in the line's prefix. */
	p = sigsafe_str(p, end, "Shutting down VM after intercepting a bad syscall (");
	p = sigsafe_u64(p, end, (uint64_t)(unsigned)si->si_syscall, 0);
	p = sigsafe_str(p, end, ").");
	*p = 0;
	report_line(msg);
	if (reporter.fault)
		reporter.fault(reporter.ctx);
	_exit(SECCOMP_EXIT_BAD_SYSCALL);
}

/* ---- set-up and installation ------------------------------------------ */

/* The first time free() gives memory back from a thread's own arena, glibc
 * reads /proc/sys/vm/overcommit_memory (once per process). Make that first
 * time happen here, unfiltered, on a short-lived thread with its own arena:
 * eight 64 KiB blocks (below the mmap threshold) freed together leave a top
 * chunk above the trim threshold. */
static void *prime_arena_trim(void *unused)
{
	(void)unused;
	enum { N = 8, SIZE = 64 << 10 };
	void *p[N];
	for (int i = 0; i < N; i++)
		p[i] = malloc(SIZE);
	for (int i = N; i-- > 0;)
		free(p[i]);
	return NULL;
}

int seccomp_setup(bool disabled, const char *path, ember_err *e)
{
	if (disabled)
		return 0;
	/* Done once here, unfiltered, what would otherwise open files in
	 * whichever thread came first: jansson seeds its hash function from
	 * /dev/urandom, glibc reads /etc/localtime and, in free(),
	 * /proc/sys/vm/overcommit_memory. */
	json_object_seed(0);
	tzset();
	pthread_t t;
	if (pthread_create(&t, NULL, prime_arena_trim, NULL) == 0)
		pthread_join(t, NULL);
	if (path) {
		struct seccomp_policy pol;
		if (seccomp_policy_load_file(path, &pol, e))
			return -1;
		int rc = 0;
		for (int k = 0; k < SECCOMP_THREAD_KINDS && !rc; k++)
			if ((rc = seccomp_bpf_build(&pol.f[k], &compiled[k], e)))
				err_prefix(e, "%s", seccomp_thread_name(k));
		seccomp_policy_free(&pol);
		if (rc) {
			for (int k = 0; k < SECCOMP_THREAD_KINDS; k++)
				seccomp_bpf_free(&compiled[k]);
			return -1;
		}
	}
	for (int k = 0; k < SECCOMP_THREAD_KINDS; k++)
		active[k] = path ? (struct seccomp_prebuilt){compiled[k].insns, compiled[k].len}
				 : seccomp_prebuilt[k];
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	sigfillset(&sa.sa_mask); /* nothing else runs on this thread meanwhile */
	if (sigaction(SIGSYS, &sa, NULL))
		return err_set(e, "sigaction(SIGSYS): %s", strerror(errno));
	/* Required to install a filter without CAP_SYS_ADMIN, and what keeps
	 * an execve (were one allowed) from gaining privileges. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return err_set(e, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
	enabled = true;
	return 0;
}

int seccomp_apply(enum seccomp_thread kind, ember_err *e)
{
	if (!enabled)
		return 0;
	if ((unsigned)kind >= SECCOMP_THREAD_KINDS)
		return err_set(e, "seccomp: no thread kind %d", (int)kind);
	/* A trap while SIGSYS is blocked kills the process with the default
	 * action, skipping the report: a thread that blocks signals (the API
	 * thread does) must still take this one. */
	sigset_t sys;
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sys, NULL);
	/* The kernel copies the program; it never writes through filter. */
	struct sock_fprog prog = {.len = active[kind].len,
				  .filter = (struct sock_filter *)active[kind].insns};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return err_set(e, "cannot install the %s seccomp filter: %s",
			       seccomp_thread_name(kind), strerror(errno));
	return 0;
}

void seccomp_apply_api_thread(void *unused)
{
	(void)unused;
	ember_err e;
	if (seccomp_apply(SECCOMP_API, &e)) {
		report_line(e.msg);
		_exit(1);
	}
}
