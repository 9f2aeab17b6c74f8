/* The jailer's command line, in Firecracker's jailer's form:
 *   ember-jailer --id ID --exec-file FILE --uid UID --gid GID [options] [-- ARGS]
 * Everything after "--" goes to the jailed program. */
#ifndef EMBER_JAILER_ARGS_H
#define EMBER_JAILER_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "jailer/cgroup.h"
#include "jailer/rlimit.h"
#include "util/err.h"

#define JAILER_DEFAULT_CHROOT_BASE "/srv/jailer"

struct jailer_args {
	const char *id;
	const char *exec_file;
	uid_t uid;
	gid_t gid;
	const char *chroot_base;
	const char *netns;         /* NULL: stay in the caller's */
	const char *parent_cgroup; /* NULL: the exec file's name */
	bool daemonize;
	bool new_pid_ns;
	int cgroup_version;
	struct cgroup_prop cgroups[CGROUP_MAX_PROPS];
	size_t n_cgroups;
	struct jailer_rlimits rlimits;
	char **extra; /* after "--"; NULL-terminated (argv's own end) */
	int n_extra;
	bool help;
	bool version;
};

/* Parses and checks argv. On --help or --version, sets that and checks
 * nothing else. */
int jailer_args_parse(int argc, char **argv, struct jailer_args *a, ember_err *e);

extern const char jailer_usage[];

#endif
