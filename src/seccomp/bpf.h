/* struct seccomp_policy -> one classic BPF program per thread kind, through
 * libseccomp: Ember's defaults when Ember is built (seccomp_gen.c), a
 * --seccomp-filter file once at start-up, so a bad filter stops Ember before
 * anything runs and a thread installing its filter needs no allocation. */
#ifndef EMBER_SECCOMP_BPF_H
#define EMBER_SECCOMP_BPF_H

#include <linux/filter.h>

#include "seccomp/policy.h"
#include "util/err.h"

struct seccomp_bpf {
	struct sock_filter *insns;
	unsigned short len;
};

int seccomp_bpf_build(const struct seccomp_filter *f, struct seccomp_bpf *out, ember_err *e);
void seccomp_bpf_free(struct seccomp_bpf *b);

#endif
