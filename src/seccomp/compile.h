/* Firecracker's seccompiler JSON (docs/seccomp.md) -> struct seccomp_policy,
 * strictly: every thread kind present ("vmm", "api", "vcpu") and no other,
 * known syscall names, known actions and operators, arguments 0 to 5, values
 * that fit their width, no unknown keys ("comment" is allowed anywhere a
 * rule or condition is). */
#ifndef EMBER_SECCOMP_COMPILE_H
#define EMBER_SECCOMP_COMPILE_H

#include "seccomp/policy.h"
#include "util/err.h"

/* On success *out holds the policy (seccomp_policy_free it); on failure it is
 * left empty and e says what and where, in one line. */
int seccomp_policy_parse(const char *text, size_t len, struct seccomp_policy *out, ember_err *e);
int seccomp_policy_load_file(const char *path, struct seccomp_policy *out, ember_err *e);

#endif
