/* Entering the jail: a mount namespace of the jailer's own, pivot_root into
 * the jail, the host's tree detached. */
#include "jailer/jail.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int jail_enter(const struct jail *j, ember_err *e)
{
	if (unshare(CLONE_NEWNS))
		return err_set(e, "enter a new mount namespace: %s", strerror(errno));
	/* Slave, not shared: nothing done in here propagates to the host, while
	 * the host's unmounts still reach the copy (as Firecracker). */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL))
		return err_set(e, "make / a slave mount: %s", strerror(errno));
	/* pivot_root wants the new root to be a mount point. */
	if (mount(j->root, j->root, NULL, MS_BIND | MS_REC, NULL))
		return err_set(e, "bind-mount %s: %s", j->root, strerror(errno));
	/* Until pivot_root, a failure leaves the host's tree as it was, so that
	 * the caller can take the jail down again. */
	if (chdir(j->root)) {
		err_set(e, "chdir %s: %s", j->root, strerror(errno));
		goto unbind;
	}
	if (mkdir("old_root", 0600)) {
		err_set(e, "create %s/old_root: %s", j->root, strerror(errno));
		goto unbind;
	}
	if (syscall(SYS_pivot_root, ".", "old_root")) {
		err_set(e, "pivot_root into %s: %s", j->root, strerror(errno));
		rmdir("old_root");
		goto unbind;
	}
	if (chdir("/"))
		return err_set(e, "chdir / in the jail: %s", strerror(errno));
	if (umount2("old_root", MNT_DETACH))
		return err_set(e, "unmount the old root: %s", strerror(errno));
	if (rmdir("old_root"))
		return err_set(e, "remove /old_root in the jail: %s", strerror(errno));
	if (chroot("."))
		return err_set(e, "chroot into the jail: %s", strerror(errno));
	return 0;
unbind:
	if (chdir("/")) {
		/* nothing better to do: the error being reported is the first */
	}
	umount2(j->root, MNT_DETACH);
	return -1;
}
