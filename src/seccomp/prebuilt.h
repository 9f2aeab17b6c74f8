/* Ember's default filters (filter.c) as BPF, compiled by libseccomp when
 * Ember is built (seccomp_gen.c writes seccomp_prebuilt.c into the build
 * directory), so a start with the defaults compiles nothing: libseccomp
 * took ~1.8 ms of CPU at every start. A --seccomp-filter file is still
 * compiled at start-up. test_seccomp checks the blobs against what
 * libseccomp makes of the defaults now. */
#ifndef EMBER_SECCOMP_PREBUILT_H
#define EMBER_SECCOMP_PREBUILT_H

#include <linux/filter.h>

#include "seccomp/policy.h"

struct seccomp_prebuilt {
	const struct sock_filter *insns;
	unsigned short len;
};

extern const struct seccomp_prebuilt seccomp_prebuilt[SECCOMP_THREAD_KINDS];

#endif
