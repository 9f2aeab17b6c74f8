/* The jail's directory tree: <chroot_base>/<exec_file_name>/<id>/root with the
 * exec file copied in, /dev/net/tun, /dev/kvm, /dev/urandom and
 * /dev/userfaultfd nodes and a /run, all owned by the jailed uid:gid. */
#ifndef EMBER_JAILER_JAIL_H
#define EMBER_JAILER_JAIL_H

#include <limits.h>
#include <sys/types.h>

#include "jailer/undo.h"
#include "util/err.h"

#define JAILER_MAX_ID_LEN 64

struct jail {
	char exec_src[PATH_MAX];      /* the --exec-file, canonical */
	char exec_name[NAME_MAX + 1]; /* its file name */
	char root[PATH_MAX];          /* <base>/<exec_name>/<id>/root */
	uid_t uid;
	gid_t gid;
};

/* --id: 1 to 64 ASCII letters, digits or '-'. */
int jail_check_id(const char *id, ember_err *e);

/* Resolves and checks the paths (the exec file is a regular file, the base a
 * directory); makes nothing. */
int jail_resolve(struct jail *j, const char *exec_file, const char *chroot_base, const char *id,
		 ember_err *e);

/* The minor number of misc device name in a /proc/misc-format file, or -1. */
int jail_misc_minor(const char *proc_misc, const char *name);

/* Makes the tree and the device nodes (uffd_minor < 0: no /dev/userfaultfd),
 * recording each thing made in u. A jail already built at j->root (its copy
 * of the exec file exists) is an error. */
int jail_build(const struct jail *j, int uffd_minor, struct undo_log *u, ember_err *e);

/* Enters a new mount namespace whose root is the jail (pivot_root), with
 * nothing of the host's tree left reachable. */
int jail_enter(const struct jail *j, ember_err *e);

#endif
