#include "jailer/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cgroup_parse_arg(const char *arg, struct cgroup_prop *p, ember_err *e)
{
	const char *eq = strchr(arg, '=');
	if (!eq || strchr(eq + 1, '=') || !eq[1])
		return err_set(e, "--cgroup %s: expected <cgroup_file>=<value>", arg);
	size_t len = (size_t)(eq - arg);
	const char *dot = memchr(arg, '.', len);
	if (len >= CGROUP_FILE_MAX || !dot || dot == arg || dot + 1 == eq ||
	    memchr(arg, '/', len))
		return err_set(e, "--cgroup %s: %.*s is not a cgroup file (<controller>.<name>)",
			       arg, (int)len, arg);
	memcpy(p->file, arg, len);
	p->file[len] = '\0';
	p->value = eq + 1;
	return 0;
}

int cgroup_check_parent(const char *parent, ember_err *e)
{
	bool bad = !*parent || parent[0] == '/';
	for (const char *c = parent; !bad && *c;) {
		size_t n = strcspn(c, "/");
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			bad = true;
		c += n;
		c += (*c == '/');
	}
	if (bad)
		return err_set(e, "--parent-cgroup %s: must be a relative path without '.' or "
			       "'..'", parent);
	return 0;
}

/* The controller of a cgroup file: the part before the first '.'. */
static void controller_of(const char *file, char *out, size_t n)
{
	size_t len = strcspn(file, ".");
	if (len >= n)
		len = n - 1;
	memcpy(out, file, len);
	out[len] = '\0';
}

/* /proc/mounts escapes blanks and backslashes as \ooo (octal). */
static void unescape_mount_path(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

static bool list_has(const char *list, const char *sep, const char *word)
{
	size_t wl = strlen(word);
	for (const char *c = list; *c;) {
		size_t n = strcspn(c, sep);
		if (n == wl && !strncmp(c, word, n))
			return true;
		c += n;
		c += strspn(c, sep);
	}
	return false;
}

int cgroup_find_mount(const char *mounts_path, int version, const char *controller,
		      char *out, size_t out_size, ember_err *e)
{
	FILE *f = fopen(mounts_path, "re");
	if (!f)
		return err_set(e, "open %s: %s", mounts_path, strerror(errno));
	char line[4096];
	bool any = false, found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		char dev[256], dir[PATH_MAX], type[64], opts[1024];
		if (sscanf(line, "%255s %4095s %63s %1023s", dev, dir, type, opts) != 4)
			continue;
		if (version == 2 ? strcmp(type, "cgroup2") : strcmp(type, "cgroup"))
			continue;
		any = true;
		if (version == 1 && !list_has(opts, ",", controller))
			continue;
		unescape_mount_path(dir);
		if (strlen(dir) >= out_size)
			continue;
		strcpy(out, dir);
		found = true;
	}
	fclose(f);
	if (found)
		return 0;
	if (!any)
		return err_set(e, "no cgroup v%d hierarchy is mounted (%s)", version, mounts_path);
	return err_set(e, "cgroup controller %s is unavailable: no cgroup v1 hierarchy has it "
		       "(%s)", controller, mounts_path);
}

static int join_path(char *out, const char *a, const char *b, const char *c, ember_err *e)
{
	int n = c ? snprintf(out, PATH_MAX, "%s/%s/%s", a, b, c)
		  : snprintf(out, PATH_MAX, "%s/%s", a, b);
	if (n < 0 || n >= PATH_MAX)
		return err_set(e, "cgroup path %s/%s...: too long", a, b);
	return 0;
}

/* Version 2: the controllers the hierarchy's root offers (cgroup.controllers). */
static int v2_check_controller(const char *mount, const char *ctrl, ember_err *e)
{
	char path[PATH_MAX], list[1024] = "";
	if (join_path(path, mount, "cgroup.controllers", NULL, e))
		return -1;
	FILE *f = fopen(path, "re");
	if (!f)
		return err_set(e, "read %s: %s", path, strerror(errno));
	if (!fgets(list, sizeof(list), f))
		list[0] = '\0';
	fclose(f);
	if (!list_has(list, " \n", ctrl))
		return err_set(e, "cgroup controller %s is unavailable (%s has: %s)", ctrl, path,
			       strtok(list, "\n") ? list : "none");
	return 0;
}

static struct cgroup_group *group_for(struct cgroup_plan *plan, const char *mount,
				      const char *parent, const char *id, ember_err *e)
{
	for (size_t i = 0; i < plan->n_groups; i++)
		if (!strcmp(plan->groups[i].mount, mount))
			return &plan->groups[i];
	if (plan->n_groups == CGROUP_MAX_GROUPS) {
		err_set(e, "more than %d cgroup hierarchies", CGROUP_MAX_GROUPS);
		return NULL;
	}
	struct cgroup_group *g = &plan->groups[plan->n_groups];
	memset(g, 0, sizeof(*g));
	strcpy(g->mount, mount);
	if (join_path(g->dir, mount, parent, id, e))
		return NULL;
	plan->n_groups++;
	return g;
}

int cgroup_plan_build(struct cgroup_plan *plan, int version, const struct cgroup_prop *props,
		      size_t n_props, const char *parent, const char *id, const char *mounts_path,
		      ember_err *e)
{
	memset(plan, 0, sizeof(*plan));
	plan->version = version;
	plan->props = props;
	if (version != 1 && version != 2)
		return err_set(e, "--cgroup-version %d: use 1 or 2", version);
	if (n_props > CGROUP_MAX_PROPS)
		return err_set(e, "more than %d --cgroup values", CGROUP_MAX_PROPS);
	char mount[PATH_MAX];
	if (n_props == 0) {
		/* As Firecracker: v1 without --cgroup does nothing; v2 joins
		 * an existing parent cgroup, made beforehand by the operator. */
		if (version == 1)
			return 0;
		if (cgroup_find_mount(mounts_path, 2, NULL, mount, sizeof(mount), e) ||
		    join_path(plan->parent_dir, mount, parent, NULL, e))
			return -1;
		plan->join_parent = true;
		return 0;
	}
	for (size_t i = 0; i < n_props; i++) {
		char ctrl[CGROUP_FILE_MAX];
		controller_of(props[i].file, ctrl, sizeof(ctrl));
		if (cgroup_find_mount(mounts_path, version, ctrl, mount, sizeof(mount), e) ||
		    (version == 2 && v2_check_controller(mount, ctrl, e)))
			return err_prefix(e, "--cgroup %s", props[i].file);
		struct cgroup_group *g = group_for(plan, mount, parent, id, e);
		if (!g)
			return -1;
		g->props[g->n_props++] = i;
	}
	return 0;
}

/* Writes "<value>\n" to an existing cgroup file (never creates one: an
 * unknown file name is an error, ENOENT). */
static int write_file(const char *path, const char *value, ember_err *e)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, "write cgroup file %s: %s", path, strerror(errno));
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "%s\n", value);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		close(fd);
		return err_set(e, "write cgroup file %s: value too long", path);
	}
	ssize_t w = write(fd, buf, (size_t)n);
	int saved = errno;
	close(fd);
	if (w != n)
		return err_set(e, "write cgroup file %s=%s: %s", path, value,
			       w < 0 ? strerror(saved) : "short write");
	return 0;
}

/* Reads a cgroup file; 1 if it holds only blanks. */
static int read_file(const char *path, char *buf, size_t n, ember_err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, "read cgroup file %s: %s", path, strerror(errno));
	ssize_t r = read(fd, buf, n - 1);
	int saved = errno;
	close(fd);
	if (r < 0)
		return err_set(e, "read cgroup file %s: %s", path, strerror(saved));
	buf[r] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return buf[strspn(buf, " \t")] == '\0';
}

/* mkdir -p of a cgroup below its hierarchy's mount, recording what it made. */
static int make_dirs(const char *mount, const char *dir, struct undo_log *u, ember_err *e)
{
	char path[PATH_MAX];
	strcpy(path, dir);
	for (char *c = path + strlen(mount) + 1;; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		char saved = *c;
		*c = '\0';
		if (mkdir(path, 0755) == 0) {
			if (undo_push(u, UNDO_RMDIR, path))
				return err_set(e, "create cgroup %s: too many steps to undo", path);
		} else if (errno != EEXIST) {
			return err_set(e, "create cgroup %s: %s", path, strerror(errno));
		}
		*c = saved;
		if (!saved)
			return 0;
	}
}

/* Version 1: a new cgroup starts with some files empty (cpuset.cpus,
 * cpuset.mems), which then refuse tasks; as Firecracker, each level below the
 * mount that has the file empty takes its parent's value first. The root may
 * lack the file (pids.max): the levels below must have it. */
static int v1_inherit(const struct cgroup_group *g, const char *file, ember_err *e)
{
	char path[PATH_MAX], parent_val[512] = "", val[512];
	ember_err ignored;
	int n = snprintf(path, sizeof(path), "%s/%s", g->mount, file);
	if (n < 0 || n >= PATH_MAX)
		return err_set(e, "cgroup path %s/%s: too long", g->mount, file);
	if (read_file(path, parent_val, sizeof(parent_val), &ignored) < 0)
		parent_val[0] = '\0';
	for (const char *c = g->dir + strlen(g->mount) + 1;; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		n = snprintf(path, sizeof(path), "%.*s/%s", (int)(c - g->dir), g->dir, file);
		if (n < 0 || n >= PATH_MAX)
			return err_set(e, "cgroup path %s/%s: too long", g->dir, file);
		int empty = read_file(path, val, sizeof(val), e);
		if (empty < 0)
			return -1;
		if (empty && parent_val[0] && write_file(path, parent_val, e))
			return -1;
		if (!empty)
			strcpy(parent_val, val);
		if (!*c)
			return 0;
	}
}

/* Version 2: the controller must be enabled in cgroup.subtree_control of every
 * level from the root down to the new cgroup's parent. */
static int v2_enable(const struct cgroup_group *g, const char *file, ember_err *e)
{
	char ctrl[CGROUP_FILE_MAX + 1] = "+", path[PATH_MAX];
	controller_of(file, ctrl + 1, sizeof(ctrl) - 1);
	const char *leaf = strrchr(g->dir, '/');
	for (const char *c = g->dir + strlen(g->mount);; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		int n = snprintf(path, sizeof(path), "%.*s/cgroup.subtree_control",
				 (int)(c - g->dir), g->dir);
		if (n < 0 || n >= PATH_MAX)
			return err_set(e, "cgroup path %s: too long", g->dir);
		if (write_file(path, ctrl, e))
			return err_prefix(e, "enable controller %s", ctrl + 1);
		if (c == leaf)
			return 0;
	}
}

int cgroup_plan_apply(const struct cgroup_plan *plan, struct undo_log *u, ember_err *e)
{
	char path[PATH_MAX], pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (plan->join_parent) {
		struct stat st;
		if (stat(plan->parent_dir, &st) || !S_ISDIR(st.st_mode))
			return 0; /* as Firecracker: no such cgroup, nothing to join */
		if (join_path(path, plan->parent_dir, "cgroup.procs", NULL, e) ||
		    write_file(path, pid, e))
			return err_prefix(e, "move into cgroup %s (to make a cgroup under it, pass "
					  "--cgroup)", plan->parent_dir);
		return 0;
	}
	for (size_t i = 0; i < plan->n_groups; i++) {
		const struct cgroup_group *g = &plan->groups[i];
		if (make_dirs(g->mount, g->dir, u, e))
			return -1;
		for (size_t j = 0; j < g->n_props; j++) {
			const struct cgroup_prop *p = &plan->props[g->props[j]];
			if (plan->version == 1 ? v1_inherit(g, p->file, e) : v2_enable(g, p->file, e))
				return -1;
			if (join_path(path, g->dir, p->file, NULL, e) || write_file(path, p->value, e))
				return -1;
		}
	}
	const char *tasks = plan->version == 1 ? "tasks" : "cgroup.procs";
	for (size_t i = 0; i < plan->n_groups; i++) {
		const struct cgroup_group *g = &plan->groups[i];
		/* Undo moves back to the hierarchy's root, so the cgroup can go. */
		if (join_path(path, g->mount, tasks, NULL, e))
			return -1;
		if (undo_push(u, UNDO_WRITE_PID, path))
			return err_set(e, "cgroup %s: too many steps to undo", g->dir);
		if (join_path(path, g->dir, tasks, NULL, e) || write_file(path, pid, e))
			return err_prefix(e, "move into cgroup %s", g->dir);
	}
	return 0;
}
