/* The jailer's cgroups (--cgroup-version, --cgroup FILE=VALUE, --parent-cgroup):
 * finding the hierarchies in /proc/mounts, checking the request before
 * anything is made, then making <hierarchy>/<parent>/<id>, writing the values
 * and moving the jailer (and so the jailed process) into it. */
#ifndef EMBER_JAILER_CGROUP_H
#define EMBER_JAILER_CGROUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "jailer/undo.h"
#include "util/err.h"

#define CGROUP_MAX_PROPS 32
#define CGROUP_MAX_GROUPS 16
#define CGROUP_FILE_MAX 128

struct cgroup_prop {
	char file[CGROUP_FILE_MAX]; /* e.g. "cpu.shares" */
	const char *value;          /* points into the argument */
};

/* Parses "--cgroup FILE=VALUE": one '=', a non-empty value, and a file name
 * "<controller>.<name>" with no '/'. */
int cgroup_parse_arg(const char *arg, struct cgroup_prop *p, ember_err *e);

/* --parent-cgroup: a relative path without "." or ".." components. */
int cgroup_check_parent(const char *parent, ember_err *e);

/* Where the cgroup hierarchy is mounted, from a /proc/mounts-format file:
 * version 1, the "cgroup" mount whose options name controller; version 2,
 * the "cgroup2" mount (controller unused). */
int cgroup_find_mount(const char *mounts_path, int version, const char *controller,
		      char *out, size_t out_size, ember_err *e);

/* One cgroup directory to make and the properties that go into it. */
struct cgroup_group {
	char mount[PATH_MAX];
	char dir[PATH_MAX]; /* <mount>/<parent>/<id> */
	size_t props[CGROUP_MAX_PROPS];
	size_t n_props;
};

struct cgroup_plan {
	int version;
	const struct cgroup_prop *props;
	struct cgroup_group groups[CGROUP_MAX_GROUPS];
	size_t n_groups;
	/* Version 2 without --cgroup: join <v2 mount>/<parent> if it exists. */
	bool join_parent;
	char parent_dir[PATH_MAX];
};

/* Checks the request against the host (hierarchies mounted, controllers
 * available) and plans it; makes nothing. */
int cgroup_plan_build(struct cgroup_plan *plan, int version, const struct cgroup_prop *props,
		      size_t n_props, const char *parent, const char *id, const char *mounts_path,
		      ember_err *e);

/* Makes the cgroups, writes the values and moves the calling process in;
 * records in u what it made. */
int cgroup_plan_apply(const struct cgroup_plan *plan, struct undo_log *u, ember_err *e);

#endif
