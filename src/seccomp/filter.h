/* Ember's default seccomp filters: one allowlist per thread kind, derived
 * from what each thread calls (docs/seccomp.md says what and why). */
#ifndef EMBER_SECCOMP_FILTER_H
#define EMBER_SECCOMP_FILTER_H

#include "seccomp/policy.h"
#include "util/err.h"

/* Fills *out with the defaults (static tables: seccomp_policy_free is a
 * no-op on it). Fails only if libseccomp does not know a name. */
int seccomp_default_policy(struct seccomp_policy *out, ember_err *e);

#endif
