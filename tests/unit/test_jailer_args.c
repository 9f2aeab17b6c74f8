/* ember-jailer: the command line, --cgroup and --resource-limit parsing, the
 * cgroup hierarchy look-up and plan (from a mock /proc/mounts), the jail's
 * path checks and /proc/misc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jailer/args.h"
#include "jailer/cgroup.h"
#include "jailer/jail.h"
#include "jailer/rlimit.h"
#include "jailer/undo.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static struct jailer_args A;
static ember_err E;

static int parse(int argc, char **argv)
{
	memset(&E, 0, sizeof(E));
	return jailer_args_parse(argc, argv, &A, &E);
}

static void has(const char *needle)
{
	if (!strstr(E.msg, needle))
		fail_msg("error \"%s\" lacks \"%s\"", E.msg, needle);
}

static void test_minimal_and_defaults(void **state)
{
	(void)state;
	char *argv[] = {"jailer", "--id", "vm-1", "--exec-file", "/bin/true", "--uid", "123",
			"--gid", "100", NULL};
	assert_int_equal(parse(ARGC(argv), argv), 0);
	assert_string_equal(A.id, "vm-1");
	assert_string_equal(A.exec_file, "/bin/true");
	assert_int_equal(A.uid, 123);
	assert_int_equal(A.gid, 100);
	assert_string_equal(A.chroot_base, "/srv/jailer");
	assert_null(A.netns);
	assert_null(A.parent_cgroup);
	assert_false(A.daemonize);
	assert_false(A.new_pid_ns);
	assert_int_equal(A.cgroup_version, 1);
	assert_int_equal(A.n_cgroups, 0);
	assert_false(A.rlimits.has_fsize);
	assert_int_equal(A.rlimits.no_file, 2048);
	assert_int_equal(A.n_extra, 0);
}

static void test_all_flags_and_extra(void **state)
{
	(void)state;
	char *argv[] = {"jailer", "--id=a", "--exec-file", "/x/ember", "--uid", "0", "--gid", "0",
			"--chroot-base-dir", "/tmp", "--netns", "/run/netns/n", "--daemonize",
			"--new-pid-ns", "--cgroup-version", "2", "--cgroup", "cpu.max=1000 100000",
			"--cgroup", "memory.max=1G", "--parent-cgroup", "all/uvms",
			"--resource-limit", "fsize=250000000", "--resource-limit", "no-file=1024",
			"--", "--config-file", "/vm.json", "--", NULL};
	assert_int_equal(parse(ARGC(argv), argv), 0);
	assert_string_equal(A.id, "a");
	assert_string_equal(A.chroot_base, "/tmp");
	assert_string_equal(A.netns, "/run/netns/n");
	assert_true(A.daemonize);
	assert_true(A.new_pid_ns);
	assert_int_equal(A.cgroup_version, 2);
	assert_int_equal(A.n_cgroups, 2);
	assert_string_equal(A.cgroups[0].file, "cpu.max");
	assert_string_equal(A.cgroups[0].value, "1000 100000");
	assert_string_equal(A.cgroups[1].file, "memory.max");
	assert_string_equal(A.cgroups[1].value, "1G");
	assert_string_equal(A.parent_cgroup, "all/uvms");
	assert_true(A.rlimits.has_fsize);
	assert_int_equal(A.rlimits.fsize, 250000000);
	assert_int_equal(A.rlimits.no_file, 1024);
	assert_int_equal(A.n_extra, 3);
	assert_string_equal(A.extra[0], "--config-file");
	assert_string_equal(A.extra[2], "--");
	assert_null(A.extra[3]);
}

static void test_help_version(void **state)
{
	(void)state;
	char *h[] = {"jailer", "--help", NULL};
	assert_int_equal(parse(ARGC(h), h), 0);
	assert_true(A.help);
	char *v[] = {"jailer", "--version", NULL};
	assert_int_equal(parse(ARGC(v), v), 0);
	assert_true(A.version);
}

/* Each bad command line: the error names the flag and the value. */
static void test_bad_command_lines(void **state)
{
	(void)state;
	static const struct {
		const char *args[6];
		const char *msg;
	} cases[] = {
		{{"--id", "a_b"}, "--id a_b: invalid character at position 1"},
		{{"--id", ""}, "--id : must be 1 to 64 characters"},
		{{"--id", "x1234567890123456789012345678901234567890123456789012345678901234"},
		 "must be 1 to 64 characters long (it has 65)"},
		{{"--id", "a b"}, "invalid character at position 1"},
		{{"--uid", "-1"}, "--uid -1: not a valid id"},
		{{"--gid", "4294967295"}, "--gid 4294967295: not a valid id"},
		{{"--uid", "12a"}, "--uid 12a"},
		{{"--cgroup-version", "3"}, "--cgroup-version 3: use 1 or 2"},
		{{"--cgroup", "cpu.shares"}, "--cgroup cpu.shares: expected <cgroup_file>=<value>"},
		{{"--cgroup", "cpu.shares="}, "expected <cgroup_file>=<value>"},
		{{"--cgroup", "a=b=c"}, "expected <cgroup_file>=<value>"},
		{{"--cgroup", "shares=2"}, "shares is not a cgroup file"},
		{{"--cgroup", "../cpu.shares=2"}, "is not a cgroup file"},
		{{"--cgroup", ".shares=2"}, "is not a cgroup file"},
		{{"--parent-cgroup", "/abs"}, "--parent-cgroup /abs: must be a relative path"},
		{{"--parent-cgroup", "a/../b"}, "must be a relative path"},
		{{"--parent-cgroup", "./a"}, "must be a relative path"},
		{{"--resource-limit", "fsize"}, "--resource-limit fsize: expected <resource>=<value>"},
		{{"--resource-limit", "no-file=abc"}, "abc is not a limit"},
		{{"--resource-limit", "no-file=-1"}, "-1 is not a limit"},
		{{"--resource-limit", "fsize=99999999999999999999"}, "is not a limit"},
		{{"--resource-limit", "cpu=1"}, "unknown resource cpu"},
		{{"--bogus"}, "unknown option --bogus"},
		{{"stray"}, "unexpected argument stray"},
		{{"--daemonize=1"}, "--daemonize takes no value"},
		{{"--netns"}, "--netns needs a value"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[16] = {"jailer"};
		int argc = 1;
		for (size_t k = 0; k < 6 && cases[i].args[k]; k++)
			argv[argc++] = (char *)cases[i].args[k];
		/* The required flags but the case's own. */
		char *tail[] = {"--id", "ok", "--exec-file", "/e", "--uid", "1", "--gid", "1"};
		for (size_t k = 0; k < 8; k += 2)
			if (strcmp(argv[1], tail[k])) {
				argv[argc++] = tail[k];
				argv[argc++] = tail[k + 1];
			}
		argv[argc] = NULL;
		if (parse(argc, argv) == 0)
			fail_msg("case %zu (%s %s) was accepted", i, argv[1], argv[2]);
		has(cases[i].msg);
	}
	char *twice[] = {"jailer", "--id", "a", "--exec-file", "/e", "--uid", "1", "--uid", "2",
			 "--gid", "1", NULL};
	assert_int_equal(parse(ARGC(twice), twice), -1);
	has("--uid given more than once");
	char *missing[] = {"jailer", "--id", "a", "--uid", "1", "--gid", "1", NULL};
	assert_int_equal(parse(ARGC(missing), missing), -1);
	has("missing --exec-file");
}

static void test_rlimit_parse(void **state)
{
	(void)state;
	struct jailer_rlimits r;
	rlimit_defaults(&r);
	assert_int_equal(r.no_file, JAILER_DEFAULT_NO_FILE);
	assert_int_equal(rlimit_parse("fsize=0", &r, &E), 0);
	assert_true(r.has_fsize);
	assert_int_equal(r.fsize, 0);
	assert_int_equal(rlimit_parse("no-file=18446744073709551615", &r, &E), 0);
	assert_true(r.no_file == UINT64_MAX);
	assert_int_equal(rlimit_parse("no-file=18446744073709551616", &r, &E), -1);
	assert_int_equal(rlimit_parse("no-file= 5", &r, &E), -1);
	assert_int_equal(rlimit_parse("no-file=+5", &r, &E), -1);
	assert_int_equal(rlimit_parse("no-file=", &r, &E), -1);
	assert_int_equal(rlimit_parse("=5", &r, &E), -1);
	assert_int_equal(rlimit_parse("fsizex=5", &r, &E), -1);
}

/* A mock /proc/mounts and cgroup tree in a temporary directory. */
static char tmp[64], mounts[128];

static void mkfile(const char *rel, const char *text)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void mkdir_in(const char *rel)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static int setup_mock(void **state)
{
	(void)state;
	strcpy(tmp, "/tmp/jailer-unit-XXXXXX");
	assert_non_null(mkdtemp(tmp));
	snprintf(mounts, sizeof(mounts), "%s/mounts", tmp);
	char text[2048];
	snprintf(text, sizeof(text),
		 "proc /proc proc rw 0 0\n"
		 "cgroup %s/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n"
		 "cgroup %s/pids cgroup rw,pids 0 0\n"
		 "cgroup2 %s/uni\\040fied cgroup2 rw,nsdelegate 0 0\n"
		 "cgroup %s/named cgroup rw,name=systemd 0 0\n",
		 tmp, tmp, tmp, tmp);
	mkfile("mounts", text);
	mkdir_in("uni fied");
	mkdir_in("pids");
	mkfile("uni fied/cgroup.controllers", "cpuset cpu io memory pids\n");
	return 0;
}

static int teardown_mock(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_cgroup_find_mount(void **state)
{
	(void)state;
	char out[PATH_MAX], want[PATH_MAX];
	assert_int_equal(cgroup_find_mount(mounts, 1, "cpuacct", out, sizeof(out), &E), 0);
	snprintf(want, sizeof(want), "%s/cpu,cpuacct", tmp);
	assert_string_equal(out, want);
	assert_int_equal(cgroup_find_mount(mounts, 1, "pids", out, sizeof(out), &E), 0);
	snprintf(want, sizeof(want), "%s/pids", tmp);
	assert_string_equal(out, want);
	/* The escaped blank in the v2 mount point is unescaped. */
	assert_int_equal(cgroup_find_mount(mounts, 2, NULL, out, sizeof(out), &E), 0);
	snprintf(want, sizeof(want), "%s/uni fied", tmp);
	assert_string_equal(out, want);
	/* "cpu" is not "cpuset"; whole option words only. */
	assert_int_equal(cgroup_find_mount(mounts, 1, "cpuset", out, sizeof(out), &E), -1);
	has("cgroup controller cpuset is unavailable");
	assert_int_equal(cgroup_find_mount("/nonexistent/mounts", 1, "cpu", out, sizeof(out), &E),
			 -1);
	has("open /nonexistent/mounts");
}

static void test_cgroup_plan(void **state)
{
	(void)state;
	struct cgroup_prop props[3];
	assert_int_equal(cgroup_parse_arg("cpu.shares=2", &props[0], &E), 0);
	assert_int_equal(cgroup_parse_arg("cpuacct.x=1", &props[1], &E), 0);
	assert_int_equal(cgroup_parse_arg("pids.max=10", &props[2], &E), 0);
	static struct cgroup_plan plan;
	char want[PATH_MAX];
	/* v1: cpu and cpuacct share a mount, so one cgroup there, one in pids. */
	assert_int_equal(cgroup_plan_build(&plan, 1, props, 3, "ember", "vm1", mounts, &E), 0);
	assert_int_equal(plan.n_groups, 2);
	snprintf(want, sizeof(want), "%s/cpu,cpuacct/ember/vm1", tmp);
	assert_string_equal(plan.groups[0].dir, want);
	assert_int_equal(plan.groups[0].n_props, 2);
	snprintf(want, sizeof(want), "%s/pids/ember/vm1", tmp);
	assert_string_equal(plan.groups[1].dir, want);
	/* v2: one cgroup; the controllers come from cgroup.controllers. */
	assert_int_equal(cgroup_plan_build(&plan, 2, props + 2, 1, "a/b", "vm1", mounts, &E), 0);
	assert_int_equal(plan.n_groups, 1);
	snprintf(want, sizeof(want), "%s/uni fied/a/b/vm1", tmp);
	assert_string_equal(plan.groups[0].dir, want);
	assert_int_equal(cgroup_plan_build(&plan, 2, props, 1, "p", "vm1", mounts, &E), 0);
	assert_int_equal(cgroup_plan_build(&plan, 2, props + 1, 1, "p", "vm1", mounts, &E), -1);
	has("--cgroup cpuacct.x: cgroup controller cpuacct is unavailable");
	/* No --cgroup: v1 plans nothing, v2 joins <v2>/<parent> if there. */
	assert_int_equal(cgroup_plan_build(&plan, 1, NULL, 0, "ember", "vm1", mounts, &E), 0);
	assert_int_equal(plan.n_groups, 0);
	assert_false(plan.join_parent);
	assert_int_equal(cgroup_plan_build(&plan, 2, NULL, 0, "ember", "vm1", mounts, &E), 0);
	assert_true(plan.join_parent);
	snprintf(want, sizeof(want), "%s/uni fied/ember", tmp);
	assert_string_equal(plan.parent_dir, want);
	/* No v1 hierarchy for an unknown controller; no hierarchy at all. */
	struct cgroup_prop bogus;
	assert_int_equal(cgroup_parse_arg("bogus.x=1", &bogus, &E), 0);
	assert_int_equal(cgroup_plan_build(&plan, 1, &bogus, 1, "e", "vm1", mounts, &E), -1);
	has("cgroup controller bogus is unavailable");
	char empty[128];
	snprintf(empty, sizeof(empty), "%s/empty-mounts", tmp);
	mkfile("empty-mounts", "proc /proc proc rw 0 0\n");
	assert_int_equal(cgroup_plan_build(&plan, 2, props, 1, "e", "vm1", empty, &E), -1);
	has("no cgroup v2 hierarchy is mounted");
}

static bool exists(const char *rel)
{
	char p[256];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	return stat(p, &st) == 0;
}

static void read_into(const char *rel, char *buf, size_t n)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	size_t got = fread(buf, 1, n - 1, f);
	buf[got] = '\0';
	fclose(f);
}

/* Applying a v1 plan to a mock tree (plain directories, so the cgroup files
 * are whatever the test made): values inherited then written, the pid moved
 * in; and a file the cgroup lacks takes down what was made. */
static void test_cgroup_apply_and_undo(void **state)
{
	(void)state;
	struct cgroup_prop props[1];
	static struct cgroup_plan plan;
	static struct undo_log u;
	char buf[64], pid[32];
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

	/* Success: <pids>/ember exists with pids.max "max", <pids>/ember/vm1
	 * exists with an empty one (a new cgroup's) and a tasks file. */
	mkdir_in("pids/ember");
	mkdir_in("pids/ember/vm1");
	mkfile("pids/ember/pids.max", "max\n");
	mkfile("pids/ember/vm1/pids.max", "");
	mkfile("pids/ember/vm1/tasks", "");
	assert_int_equal(cgroup_parse_arg("pids.max=10", &props[0], &E), 0);
	assert_int_equal(cgroup_plan_build(&plan, 1, props, 1, "ember", "vm1", mounts, &E), 0);
	memset(&u, 0, sizeof(u));
	assert_int_equal(cgroup_plan_apply(&plan, &u, &E), 0);
	read_into("pids/ember/vm1/pids.max", buf, sizeof(buf));
	assert_string_equal(buf, "10\n");
	read_into("pids/ember/vm1/tasks", buf, sizeof(buf));
	assert_string_equal(buf, pid);
	/* Nothing was made (all there before); only the move back is recorded. */
	assert_int_equal(u.n, 1);
	assert_int_equal(u.steps[0].kind, UNDO_WRITE_PID);

	/* Failure: a new parent and cgroup are made, the file is not there. */
	assert_int_equal(cgroup_parse_arg("pids.bogus=1", &props[0], &E), 0);
	assert_int_equal(cgroup_plan_build(&plan, 1, props, 1, "new/deep", "vm2", mounts, &E), 0);
	memset(&u, 0, sizeof(u));
	assert_int_equal(cgroup_plan_apply(&plan, &u, &E), -1);
	has("pids.bogus");
	has("No such file or directory");
	assert_true(exists("pids/new/deep/vm2"));
	assert_int_equal(u.n, 3);
	undo_run(&u);
	assert_int_equal(u.n, 0);
	assert_false(exists("pids/new"));
	assert_true(exists("pids/ember/vm1"));
}

static void test_undo_order(void **state)
{
	(void)state;
	static struct undo_log u;
	char d[256], f[256];
	memset(&u, 0, sizeof(u));
	mkdir_in("u");
	snprintf(d, sizeof(d), "%s/u", tmp);
	snprintf(f, sizeof(f), "%s/u/file", tmp);
	mkfile("u/file", "x");
	/* Newest first: the file goes before its directory. */
	assert_int_equal(undo_push(&u, UNDO_RMDIR, d), 0);
	assert_int_equal(undo_push(&u, UNDO_UNLINK, f), 0);
	undo_run(&u);
	assert_false(exists("u"));
	/* Forgotten steps are not undone; a full log refuses more. */
	mkdir_in("u");
	assert_int_equal(undo_push(&u, UNDO_RMDIR, d), 0);
	undo_forget(&u);
	undo_run(&u);
	assert_true(exists("u"));
	for (int i = 0; i < UNDO_MAX; i++)
		assert_int_equal(undo_push(&u, UNDO_RMDIR, d), 0);
	assert_int_equal(undo_push(&u, UNDO_RMDIR, d), -1);
	undo_forget(&u);
}

static void test_jail_resolve_and_misc(void **state)
{
	(void)state;
	static struct jail j;
	char exe[128], want[PATH_MAX];
	snprintf(exe, sizeof(exe), "%s/bin-x", tmp);
	mkfile("bin-x", "#!/bin/sh\n");
	assert_int_equal(jail_resolve(&j, exe, tmp, "vm-9", &E), 0);
	assert_string_equal(j.exec_name, "bin-x");
	snprintf(want, sizeof(want), "%s/bin-x/vm-9/root", tmp);
	assert_string_equal(j.root, want);
	assert_int_equal(jail_resolve(&j, exe, "/", "vm-9", &E), 0);
	assert_string_equal(j.root, "/bin-x/vm-9/root");
	assert_int_equal(jail_resolve(&j, "/nonexistent/ember", tmp, "v", &E), -1);
	has("--exec-file /nonexistent/ember: No such file or directory");
	assert_int_equal(jail_resolve(&j, tmp, tmp, "v", &E), -1);
	has("not a regular file");
	assert_int_equal(jail_resolve(&j, exe, exe, "v", &E), -1);
	has("--chroot-base-dir");
	has("not a directory");
	mkfile("misc", " 57 vhost-net\n232 kvm\n257 userfaultfd\nbad line\n");
	snprintf(exe, sizeof(exe), "%s/misc", tmp);
	assert_int_equal(jail_misc_minor(exe, "userfaultfd"), 257);
	assert_int_equal(jail_misc_minor(exe, "kvm"), 232);
	assert_int_equal(jail_misc_minor(exe, "fault"), -1);
	assert_int_equal(jail_misc_minor("/nonexistent", "kvm"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_and_defaults),
		cmocka_unit_test(test_all_flags_and_extra),
		cmocka_unit_test(test_help_version),
		cmocka_unit_test(test_bad_command_lines),
		cmocka_unit_test(test_rlimit_parse),
		cmocka_unit_test(test_cgroup_find_mount),
		cmocka_unit_test(test_cgroup_plan),
		cmocka_unit_test(test_cgroup_apply_and_undo),
		cmocka_unit_test(test_undo_order),
		cmocka_unit_test(test_jail_resolve_and_misc),
	};
	return cmocka_run_group_tests(tests, setup_mock, teardown_mock);
}
