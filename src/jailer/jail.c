#include "jailer/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int jail_check_id(const char *id, ember_err *e)
{
	size_t n = strlen(id);
	if (n == 0 || n > JAILER_MAX_ID_LEN)
		return err_set(e, "--id %.80s: must be 1 to %d characters long (it has %zu)", id,
			       JAILER_MAX_ID_LEN, n);
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!(c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z')))
			return err_set(e, "--id %.80s: invalid character at position %zu (use "
				       "letters, digits and '-')", id, i);
	}
	return 0;
}

int jail_resolve(struct jail *j, const char *exec_file, const char *chroot_base, const char *id,
		 ember_err *e)
{
	char base[PATH_MAX];
	struct stat st;
	if (!realpath(exec_file, j->exec_src))
		return err_set(e, "--exec-file %s: %s", exec_file, strerror(errno));
	if (stat(j->exec_src, &st))
		return err_set(e, "--exec-file %s: %s", j->exec_src, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, "--exec-file %s: not a regular file", j->exec_src);
	const char *name = strrchr(j->exec_src, '/') + 1; /* realpath: absolute */
	if (!*name || strlen(name) > NAME_MAX)
		return err_set(e, "--exec-file %s: no file name", j->exec_src);
	strcpy(j->exec_name, name);
	if (!realpath(chroot_base, base))
		return err_set(e, "--chroot-base-dir %s: %s", chroot_base, strerror(errno));
	if (stat(base, &st) || !S_ISDIR(st.st_mode))
		return err_set(e, "--chroot-base-dir %s: not a directory", base);
	int n = snprintf(j->root, sizeof(j->root), "%s/%s/%s/root", strcmp(base, "/") ? base : "",
			 j->exec_name, id);
	if (n < 0 || (size_t)n >= sizeof(j->root))
		return err_set(e, "--chroot-base-dir %s: the jail's path would be too long", base);
	return 0;
}

int jail_misc_minor(const char *proc_misc, const char *name)
{
	FILE *f = fopen(proc_misc, "re");
	if (!f)
		return -1;
	char line[256], dev[128];
	int minor, found = -1;
	while (found < 0 && fgets(line, sizeof(line), f))
		if (sscanf(line, "%d %127s", &minor, dev) == 2 && !strcmp(dev, name) && minor >= 0)
			found = minor;
	fclose(f);
	return found;
}

/* mkdir of each missing directory on the way to path (absolute). */
static int make_dirs(const char *path, struct undo_log *u, ember_err *e)
{
	char p[PATH_MAX];
	strcpy(p, path);
	for (char *c = p + 1;; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		char saved = *c;
		*c = '\0';
		if (mkdir(p, 0755) == 0) {
			if (undo_push(u, UNDO_RMDIR, p))
				return err_set(e, "create directory %s: too many steps to undo", p);
		} else if (errno != EEXIST) {
			return err_set(e, "create directory %s: %s", p, strerror(errno));
		}
		*c = saved;
		if (!saved)
			return 0;
	}
}

static int copy_exec(const struct jail *j, struct undo_log *u, ember_err *e)
{
	char dst[PATH_MAX + NAME_MAX + 2];
	snprintf(dst, sizeof(dst), "%s/%s", j->root, j->exec_name);
	int in = open(j->exec_src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return err_set(e, "copy exec file: open %s: %s", j->exec_src, strerror(errno));
	struct stat st;
	if (fstat(in, &st)) {
		close(in);
		return err_set(e, "copy exec file: stat %s: %s", j->exec_src, strerror(errno));
	}
	/* O_EXCL: a jail already built here is refused, not overwritten. */
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 0755);
	if (out < 0) {
		int saved = errno;
		close(in);
		return err_set(e, "copy exec file to %s: %s%s", dst, strerror(saved),
			       saved == EEXIST ? " (a jail with this id was already built)" : "");
	}
	if (undo_push(u, UNDO_UNLINK, dst)) {
		close(in);
		close(out);
		unlink(dst);
		return err_set(e, "copy exec file to %s: too many steps to undo", dst);
	}
	int rc = 0;
	char buf[65536];
	for (;;) {
		ssize_t r = read(in, buf, sizeof(buf));
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = err_set(e, "copy exec file: read %s: %s", j->exec_src, strerror(errno));
			break;
		}
		for (ssize_t off = 0; off < r && !rc;) {
			ssize_t w = write(out, buf + off, (size_t)(r - off));
			if (w < 0 && errno != EINTR)
				rc = err_set(e, "copy exec file: write %s: %s", dst, strerror(errno));
			off += w > 0 ? w : 0;
		}
		if (rc)
			break;
	}
	if (!rc && fchown(out, j->uid, j->gid))
		rc = err_set(e, "chown %s: %s", dst, strerror(errno));
	if (!rc && fchmod(out, st.st_mode & 0755)) /* the umask may have cut it */
		rc = err_set(e, "chmod %s: %s", dst, strerror(errno));
	close(in);
	close(out);
	return rc;
}

/* A directory of the jail's own: 0700, owned by the jailed uid:gid. */
static int own_dir(const struct jail *j, const char *rel, struct undo_log *u, ember_err *e)
{
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s%s", j->root, rel);
	if (mkdir(p, 0700) == 0) {
		if (undo_push(u, UNDO_RMDIR, p))
			return err_set(e, "create directory %s: too many steps to undo", p);
	} else if (errno != EEXIST) {
		return err_set(e, "create directory %s: %s", p, strerror(errno));
	}
	if (chmod(p, 0700))
		return err_set(e, "chmod %s: %s", p, strerror(errno));
	if (chown(p, j->uid, j->gid))
		return err_set(e, "chown %s: %s", p, strerror(errno));
	return 0;
}

static int make_node(const struct jail *j, const char *rel, unsigned major, unsigned minor,
		     struct undo_log *u, ember_err *e)
{
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s%s", j->root, rel);
	if (mknod(p, S_IFCHR | S_IRUSR | S_IWUSR, makedev(major, minor)))
		return err_set(e, "create device node %s: %s", p, strerror(errno));
	if (undo_push(u, UNDO_UNLINK, p)) {
		unlink(p);
		return err_set(e, "create device node %s: too many steps to undo", p);
	}
	if (chown(p, j->uid, j->gid))
		return err_set(e, "chown %s: %s", p, strerror(errno));
	return 0;
}

int jail_build(const struct jail *j, int uffd_minor, struct undo_log *u, ember_err *e)
{
	if (make_dirs(j->root, u, e) || copy_exec(j, u, e))
		return -1;
	static const char *const dirs[] = {"", "/dev", "/dev/net", "/run"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (own_dir(j, dirs[i], u, e))
			return -1;
	if (make_node(j, "/dev/net/tun", 10, 200, u, e) || make_node(j, "/dev/kvm", 10, 232, u, e))
		return -1;
	/* /dev/urandom: Firecracker's jailer makes it (its MMDS v2 tokens read
	 * it); Ember uses getrandom(2), so it is only for jailed programs that
	 * expect it. Not fatal, as there. */
	ember_err ignored;
	if (make_node(j, "/dev/urandom", 1, 9, u, &ignored))
		fprintf(stderr, "ember-jailer: warning: %s\n", ignored.msg);
	if (uffd_minor >= 0 && make_node(j, "/dev/userfaultfd", 10, (unsigned)uffd_minor, u, e))
		return -1;
	return 0;
}
