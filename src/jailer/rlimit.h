/* The jailer's --resource-limit values (fsize, no-file) and setting them. */
#ifndef EMBER_JAILER_RLIMIT_H
#define EMBER_JAILER_RLIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

/* As Firecracker's jailer: no-file is always set, to 2048 unless given. */
#define JAILER_DEFAULT_NO_FILE 2048

struct jailer_rlimits {
	bool has_fsize;
	uint64_t fsize;
	uint64_t no_file;
};

void rlimit_defaults(struct jailer_rlimits *r);

/* Parses one "<resource>=<value>" argument into r. */
int rlimit_parse(const char *arg, struct jailer_rlimits *r, ember_err *e);

/* setrlimit() for the jailer and, through exec, the jailed process: soft and
 * hard limit alike, so the jailed process cannot raise them again. */
int rlimit_apply(const struct jailer_rlimits *r, ember_err *e);

#endif
