#include "jailer/args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jailer/jail.h"

const char jailer_usage[] =
	"Usage: ember-jailer --id ID --exec-file FILE --uid UID --gid GID [options] [-- ARGS]\n"
	"\n"
	"Builds a jail for one microVM and execs FILE (Ember) in it, as Firecracker's jailer.\n"
	"\n"
	"Options:\n"
	"  --id ID                   the microVM's id: 1 to 64 letters, digits or '-'\n"
	"  --exec-file FILE          the program to copy into the jail and exec\n"
	"  --uid UID, --gid GID      the user and group it runs as\n"
	"  --chroot-base-dir DIR     where jails are built (default " JAILER_DEFAULT_CHROOT_BASE ")\n"
	"  --netns PATH              join this network namespace (e.g. /run/netns/NAME)\n"
	"  --daemonize               detach: new session, standard I/O on /dev/null\n"
	"  --new-pid-ns              run FILE as pid 1 of a new PID namespace\n"
	"  --cgroup-version 1|2      the cgroup hierarchy to use (default 1)\n"
	"  --cgroup FILE=VALUE       write VALUE to this cgroup file (repeatable)\n"
	"  --parent-cgroup PATH      the cgroup to make <id> under (default: FILE's name)\n"
	"  --resource-limit RES=N    fsize=BYTES or no-file=N (repeatable; no-file defaults\n"
	"                            to 2048)\n"
	"  --version, --help\n"
	"\n"
	"Everything after -- is passed to FILE, after --id and the start-time options.\n";

enum opt { O_ID, O_EXEC, O_UID, O_GID, O_BASE, O_NETNS, O_DAEMON, O_PIDNS, O_CGVER, O_CGROUP,
	   O_PARENT, O_RLIMIT, O_VERSION, O_HELP, O_COUNT };

static const struct {
	const char *name;
	bool value;
	bool repeatable;
} opts[O_COUNT] = {
	[O_ID] = {"id", true, false},
	[O_EXEC] = {"exec-file", true, false},
	[O_UID] = {"uid", true, false},
	[O_GID] = {"gid", true, false},
	[O_BASE] = {"chroot-base-dir", true, false},
	[O_NETNS] = {"netns", true, false},
	[O_DAEMON] = {"daemonize", false, false},
	[O_PIDNS] = {"new-pid-ns", false, false},
	[O_CGVER] = {"cgroup-version", true, false},
	[O_CGROUP] = {"cgroup", true, true},
	[O_PARENT] = {"parent-cgroup", true, false},
	[O_RLIMIT] = {"resource-limit", true, true},
	[O_VERSION] = {"version", false, false},
	[O_HELP] = {"help", false, false},
};

static int parse_id_number(const char *flag, const char *s, unsigned *out, ember_err *e)
{
	bool digits = *s && strspn(s, "0123456789") == strlen(s);
	errno = 0;
	char *end;
	unsigned long v = digits ? strtoul(s, &end, 10) : 0;
	if (!digits || errno || v > 0xfffffffeUL) /* (uid_t)-1 means "unchanged" */
		return err_set(e, "--%s %s: not a valid id (a decimal number below 4294967295)",
			       flag, s);
	*out = (unsigned)v;
	return 0;
}

static int take(struct jailer_args *a, enum opt o, const char *v, const char **vals,
		ember_err *e)
{
	switch (o) {
	case O_CGROUP:
		if (a->n_cgroups == CGROUP_MAX_PROPS)
			return err_set(e, "more than %d --cgroup values", CGROUP_MAX_PROPS);
		return cgroup_parse_arg(v, &a->cgroups[a->n_cgroups++], e);
	case O_RLIMIT: return rlimit_parse(v, &a->rlimits, e);
	case O_DAEMON: a->daemonize = true; return 0;
	case O_PIDNS: a->new_pid_ns = true; return 0;
	case O_VERSION: a->version = true; return 0;
	case O_HELP: a->help = true; return 0;
	default: vals[o] = v; return 0;
	}
}

int jailer_args_parse(int argc, char **argv, struct jailer_args *a, ember_err *e)
{
	memset(a, 0, sizeof(*a));
	rlimit_defaults(&a->rlimits);
	a->chroot_base = JAILER_DEFAULT_CHROOT_BASE;
	a->cgroup_version = 1;
	a->extra = argv + argc;
	const char *vals[O_COUNT] = {0};
	bool seen[O_COUNT] = {0};
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--")) {
			a->extra = argv + i + 1;
			a->n_extra = argc - i - 1;
			break;
		}
		if (strncmp(arg, "--", 2))
			return err_set(e, "unexpected argument %s (options start with --; arguments "
				       "for the jailed program go after --)", arg);
		const char *name = arg + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		int o = 0;
		while (o < O_COUNT && !(strlen(opts[o].name) == len &&
					!strncmp(opts[o].name, name, len)))
			o++;
		if (o == O_COUNT)
			return err_set(e, "unknown option %s (see --help)", arg);
		if (seen[o] && !opts[o].repeatable)
			return err_set(e, "--%s given more than once", opts[o].name);
		seen[o] = true;
		const char *v = NULL;
		if (opts[o].value) {
			if (eq)
				v = eq + 1;
			else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
				v = argv[++i];
			else
				return err_set(e, "--%s needs a value", opts[o].name);
		} else if (eq) {
			return err_set(e, "--%s takes no value", opts[o].name);
		}
		if (take(a, (enum opt)o, v, vals, e))
			return -1;
	}
	if (a->help || a->version)
		return 0;
	static const enum opt required[] = {O_ID, O_EXEC, O_UID, O_GID};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!vals[required[i]])
			return err_set(e, "missing --%s (see --help)", opts[required[i]].name);
	a->id = vals[O_ID];
	a->exec_file = vals[O_EXEC];
	unsigned uid, gid;
	if (jail_check_id(a->id, e) || parse_id_number("uid", vals[O_UID], &uid, e) ||
	    parse_id_number("gid", vals[O_GID], &gid, e))
		return -1;
	a->uid = uid;
	a->gid = gid;
	if (vals[O_BASE])
		a->chroot_base = vals[O_BASE];
	a->netns = vals[O_NETNS];
	if (vals[O_CGVER]) {
		if (strcmp(vals[O_CGVER], "1") && strcmp(vals[O_CGVER], "2"))
			return err_set(e, "--cgroup-version %s: use 1 or 2", vals[O_CGVER]);
		a->cgroup_version = vals[O_CGVER][0] - '0';
	}
	a->parent_cgroup = vals[O_PARENT];
	if (a->parent_cgroup && cgroup_check_parent(a->parent_cgroup, e))
		return -1;
	return 0;
}
