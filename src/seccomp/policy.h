/* A seccomp policy in the terms of Firecracker's seccompiler JSON
 * (docs/seccomp.md): one filter per thread kind, each a default action, a
 * filter action and a list of rules (a syscall and and-bound conditions on
 * its arguments). Both the default allowlists (filter.c) and a
 * --seccomp-filter file (compile.c) become one of these; bpf.c turns it
 * into the BPF programs the threads install. */
#ifndef EMBER_SECCOMP_POLICY_H
#define EMBER_SECCOMP_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum seccomp_thread { SECCOMP_VMM, SECCOMP_API, SECCOMP_VCPU, SECCOMP_THREAD_KINDS };

/* Firecracker's names: "vmm", "api", "vcpu". */
const char *seccomp_thread_name(enum seccomp_thread kind);

enum seccomp_op { SC_EQ, SC_NE, SC_LT, SC_LE, SC_GT, SC_GE, SC_MASKED_EQ };

struct seccomp_cond {
	unsigned index;     /* argument, 0 to 5 */
	bool qword;         /* "qword": all 64 bits; "dword": the low 32 */
	enum seccomp_op op;
	uint64_t mask;      /* SC_MASKED_EQ only: (arg & mask) == val */
	uint64_t val;
};

#define SECCOMP_MAX_CONDS 6

struct seccomp_rule {
	int nr; /* x86_64 syscall number */
	unsigned n;
	struct seccomp_cond c[SECCOMP_MAX_CONDS];
};

struct seccomp_filter {
	uint32_t default_action; /* libseccomp's SCMP_ACT_* values */
	uint32_t filter_action;
	struct seccomp_rule *rules;
	size_t n;
	bool owned; /* rules was allocated (compile.c) and is freed with it */
};

struct seccomp_policy {
	struct seccomp_filter f[SECCOMP_THREAD_KINDS];
};

void seccomp_policy_free(struct seccomp_policy *p);

#endif
