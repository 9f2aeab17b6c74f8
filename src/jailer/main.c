/* ember-jailer: builds a jail for one microVM and execs Ember in it, with
 * Firecracker's jailer's flags and steps (docs/jailer.md). Each failure is one
 * line naming the step and the path; what was built before it is taken down. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "jailer/args.h"
#include "jailer/cgroup.h"
#include "jailer/jail.h"
#include "jailer/privs.h"
#include "jailer/rlimit.h"
#include "jailer/undo.h"

static uint64_t clock_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int fail(const char *msg)
{
	fprintf(stderr, "ember-jailer: error: %s\n", msg);
	return 1;
}

/* Every fd but 0, 1 and 2: close_range(2), or one by one where the kernel
 * lacks it. */
static void close_inherited_fds(void)
{
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
		return;
	}
	int self = dirfd(d);
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] >= '0' && de->d_name[0] <= '9') {
			int fd = atoi(de->d_name);
			if (fd > 2 && fd != self)
				close(fd);
		}
	closedir(d);
}

/* <exec_file_name>.pid in the jail's root, as Firecracker's jailer. */
static int write_pid_file(const char *exec_name, pid_t pid, ember_err *e)
{
	char path[NAME_MAX + 8], buf[32];
	snprintf(path, sizeof(path), "/%s.pid", exec_name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(e, "write pid file %s in the jail: %s", path, strerror(errno));
	int n = snprintf(buf, sizeof(buf), "%d", (int)pid);
	ssize_t w = write(fd, buf, (size_t)n);
	close(fd);
	if (w != n)
		return err_set(e, "write pid file %s in the jail: short write", path);
	return 0;
}

struct run {
	struct jailer_args args;
	struct jail jail;
	struct cgroup_plan cgroups;
	struct undo_log undo;
	uint64_t start_us, start_cpu_us, jailer_cpu_us;
};

static int exec_jailed(struct run *r, ember_err *e)
{
	struct jailer_args *a = &r->args;
	char exe[NAME_MAX + 2], start[24], start_cpu[24], parent_cpu[24];
	snprintf(exe, sizeof(exe), "/%s", r->jail.exec_name);
	snprintf(start, sizeof(start), "%llu", (unsigned long long)r->start_us);
	snprintf(parent_cpu, sizeof(parent_cpu), "%llu", (unsigned long long)r->jailer_cpu_us);
	if (privs_drop(a->uid, a->gid, e))
		return -1;
	snprintf(start_cpu, sizeof(start_cpu), "%llu",
		 (unsigned long long)clock_us(CLOCK_PROCESS_CPUTIME_ID));
	enum { FIXED = 9 };
	char **argv = calloc((size_t)a->n_extra + FIXED + 1, sizeof(char *));
	if (!argv)
		return err_set(e, "exec %s: out of memory", exe);
	char *fixed[FIXED] = {exe, "--id", (char *)a->id, "--start-time-us", start,
			      "--start-time-cpu-us", start_cpu, "--parent-cpu-time-us", parent_cpu};
	memcpy(argv, fixed, sizeof(fixed));
	for (int i = 0; i < a->n_extra; i++)
		argv[FIXED + i] = a->extra[i];
	char *envp[] = {NULL};
	execve(exe, argv, envp);
	int saved = errno;
	free(argv);
	return err_set(e, "exec %s in the jail: %s", exe, strerror(saved));
}

/* --daemonize: fork, setsid, fork again (no controlling terminal can come
 * back), standard I/O on /dev/null. The parents exit 0. */
static int daemonize(struct run *r, int dev_null, ember_err *e)
{
	pid_t pid = fork();
	if (pid < 0)
		return err_set(e, "daemonize: fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return err_set(e, "daemonize: setsid: %s", strerror(errno));
	r->jailer_cpu_us += clock_us(CLOCK_PROCESS_CPUTIME_ID);
	pid = fork();
	if (pid < 0)
		return err_set(e, "daemonize: fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	if (dup2(dev_null, 0) < 0 || dup2(dev_null, 1) < 0 || dup2(dev_null, 2) < 0)
		return err_set(e, "daemonize: redirect standard I/O to /dev/null: %s",
			       strerror(errno));
	close(dev_null);
	return 0;
}

/* --new-pid-ns: the jailed program runs as pid 1 of a new PID namespace; the
 * jailer writes its (host) pid into the jail and exits. */
static int exec_in_new_pid_ns(struct run *r, ember_err *e)
{
	bool session_leader = !r->args.daemonize && getsid(0) == getpid();
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid < 0)
		return err_set(e, "clone into a new PID namespace: %s", strerror(errno));
	if (pid == 0) {
		if (session_leader && setsid() < 0)
			return err_set(e, "setsid in the new PID namespace: %s", strerror(errno));
		return exec_jailed(r, e);
	}
	if (write_pid_file(r->jail.exec_name, pid, e))
		return -1;
	_exit(0); /* nothing to flush; no exit handlers (a sanitizer's) in the jail */
}

/* Everything that can be checked before anything is made. */
static int check(struct run *r, int *netns_fd, int *dev_null, ember_err *e)
{
	struct jailer_args *a = &r->args;
	if (jail_resolve(&r->jail, a->exec_file, a->chroot_base, a->id, e))
		return -1;
	r->jail.uid = a->uid;
	r->jail.gid = a->gid;
	const char *parent = a->parent_cgroup ? a->parent_cgroup : r->jail.exec_name;
	if (cgroup_plan_build(&r->cgroups, a->cgroup_version, a->cgroups, a->n_cgroups, parent,
			      a->id, "/proc/mounts", e))
		return -1;
	if (a->netns && (*netns_fd = open(a->netns, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set(e, "--netns %s: %s", a->netns, strerror(errno));
	/* Opened now: there is no /dev/null in the jail. */
	if (a->daemonize && (*dev_null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		return err_set(e, "open /dev/null: %s", strerror(errno));
	return 0;
}

/* The steps that make things, in Firecracker's jailer's order; a failure takes
 * them down again. */
static int build(struct run *r, int netns_fd, ember_err *e)
{
	int uffd_minor = jail_misc_minor("/proc/misc", "userfaultfd");
	if (jail_build(&r->jail, uffd_minor, &r->undo, e))
		goto undo;
	if (netns_fd >= 0) {
		if (setns(netns_fd, CLONE_NEWNET)) {
			err_set(e, "join network namespace %s: %s", r->args.netns, strerror(errno));
			goto undo;
		}
		close(netns_fd);
	}
	if (rlimit_apply(&r->args.rlimits, e) || cgroup_plan_apply(&r->cgroups, &r->undo, e) ||
	    jail_enter(&r->jail, e))
		goto undo;
	undo_forget(&r->undo);
	return 0;
undo:
	undo_run(&r->undo);
	return -1;
}

int main(int argc, char **argv)
{
	static struct run r;
	r.start_us = clock_us(CLOCK_MONOTONIC);
	r.start_cpu_us = clock_us(CLOCK_PROCESS_CPUTIME_ID);
	close_inherited_fds();
	clearenv();

	ember_err e = {{0}};
	if (jailer_args_parse(argc, argv, &r.args, &e))
		return fail(e.msg);
	if (r.args.help) {
		fputs(jailer_usage, stdout);
		return 0;
	}
	if (r.args.version) {
		printf("Ember jailer v%s\n", EMBER_VERSION);
		return 0;
	}
	int netns_fd = -1, dev_null = -1;
	if (check(&r, &netns_fd, &dev_null, &e) || build(&r, netns_fd, &e))
		return fail(e.msg);

	/* In the jail from here: nothing of the host's tree to take down. */
	r.jailer_cpu_us = clock_us(CLOCK_PROCESS_CPUTIME_ID) - r.start_cpu_us;
	if (dev_null >= 0 && daemonize(&r, dev_null, &e))
		return fail(e.msg);
	if (r.args.new_pid_ns) {
		exec_in_new_pid_ns(&r, &e);
		return fail(e.msg);
	}
	if (write_pid_file(r.jail.exec_name, getpid(), &e))
		return fail(e.msg);
	exec_jailed(&r, &e);
	return fail(e.msg);
}
