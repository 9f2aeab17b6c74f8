/* Per-thread seccomp filters, as Firecracker's (docs/seccomp.md): one
 * allowlist per thread kind, "vmm" (the main thread), "api" and "vcpu";
 * a forbidden syscall ends Ember with exit code 148 after logging it and
 * flushing the seccomp.num_faults metric. */
#ifndef EMBER_SECCOMP_H
#define EMBER_SECCOMP_H

#include <stdbool.h>

#include "seccomp/policy.h"
#include "util/err.h"

/* Firecracker's exit code after a bad syscall. */
#define SECCOMP_EXIT_BAD_SYSCALL 148

/* At start-up, on the main thread, before any other thread exists: takes
 * Ember's default filters, compiled when Ember was built (prebuilt.h), or
 * compiles the seccompiler JSON file at path,
 * installs the SIGSYS handler and sets no_new_privs, which every thread
 * inherits. With disabled (--no-seccomp) it does nothing and seccomp_apply
 * installs nothing. -1 and e set if the file is bad. */
int seccomp_setup(bool disabled, const char *path, ember_err *e);

/* How the SIGSYS handler reports a bad syscall: log gets the line to log
 * (Firecracker's words) and fault(ctx) counts and flushes the metric. Both
 * run in the signal handler, so both must be async-signal-safe. Unset:
 * the line goes to stderr and nothing is counted. */
struct seccomp_reporter {
	void (*log)(const char *msg);
	void (*fault)(void *ctx);
	void *ctx;
};
void seccomp_set_reporter(const struct seccomp_reporter *r);

/* Installs kind's filter on the calling thread, for good. A thread inherits
 * the filters of the thread that created it, so each thread calls this
 * itself, first thing; the main thread calls it once the threads it must
 * not pass its filter to (the API thread) are running. -1 and e set on
 * failure. */
int seccomp_apply(enum seccomp_thread kind, ember_err *e);

/* seccomp_apply(SECCOMP_API) in the shape of a thread-start hook (the API
 * server's on_thread_start): a thread that cannot install its filter must
 * not serve, so a failure is logged and ends Ember (exit 1). */
void seccomp_apply_api_thread(void *unused);

#endif
