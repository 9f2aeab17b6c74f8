/* jail_probe: a static test helper that ember-jailer execs in Ember's place
 * (tests/integration/test_jailer.py). It writes what it sees from inside the
 * jail to /probe.out (key=value lines, written whole then renamed into
 * place), then waits for a signal so the test can look at it from outside
 * (/proc/<pid>), unless its arguments include --probe-exit. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

extern char **environ;

static void list_dir(FILE *out, const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(out, "dir_error=%s %s\n", dir, strerror(errno));
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char path[512];
		struct stat st;
		snprintf(path, sizeof(path), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", de->d_name);
		if (lstat(path, &st))
			continue;
		char type = S_ISDIR(st.st_mode) ? 'd' : S_ISCHR(st.st_mode) ? 'c' :
			    S_ISREG(st.st_mode) ? 'f' : '?';
		fprintf(out, "entry=%s %c %u:%u %o", path, type, (unsigned)st.st_uid,
			(unsigned)st.st_gid, (unsigned)(st.st_mode & 07777));
		if (type == 'c')
			fprintf(out, " %u:%u", major(st.st_rdev), minor(st.st_rdev));
		fputc('\n', out);
	}
	closedir(d);
}

static void report(FILE *out, int argc, char **argv, int inherited_fds)
{
	for (int i = 0; i < argc; i++)
		fprintf(out, "arg=%s\n", argv[i]);
	int env = 0;
	for (char **p = environ; *p; p++)
		env++;
	fprintf(out, "env_count=%d\n", env);
	fprintf(out, "pid=%d\nuid=%u\neuid=%u\ngid=%u\negid=%u\ngroups=%d\n", (int)getpid(),
		(unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(), (unsigned)getegid(),
		getgroups(0, NULL));
	fprintf(out, "extra_fds=%d\n", inherited_fds);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	fprintf(out, "nofile=%llu %llu\n", (unsigned long long)rl.rlim_cur,
		(unsigned long long)rl.rlim_max);
	getrlimit(RLIMIT_FSIZE, &rl);
	fprintf(out, "fsize=%llu %llu\n", (unsigned long long)rl.rlim_cur,
		(unsigned long long)rl.rlim_max);
	char cwd[512];
	fprintf(out, "cwd=%s\n", getcwd(cwd, sizeof(cwd)) ? cwd : strerror(errno));
	list_dir(out, "/");
	list_dir(out, "/dev");
	list_dir(out, "/dev/net");
	struct if_nameindex *ifs = if_nameindex();
	for (struct if_nameindex *i = ifs; i && i->if_index; i++)
		fprintf(out, "netif=%s\n", i->if_name);
	if (ifs)
		if_freenameindex(ifs);
	static const char *const devs[] = {"/dev/kvm", "/dev/net/tun"};
	for (size_t i = 0; i < 2; i++) {
		int fd = open(devs[i], O_RDWR | O_CLOEXEC);
		fprintf(out, "open=%s %s\n", devs[i], fd >= 0 ? "ok" : strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	/* What root could, the jailed process must not: a node of its own. */
	fprintf(out, "mknod=%s\n", mknod("/probe-node", S_IFCHR | 0600, makedev(1, 3)) ? strerror(errno)
									      : "ok");
}

/* As pid 1 of a PID namespace, a signal with no handler is ignored. */
static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

int main(int argc, char **argv)
{
	signal(SIGTERM, on_term);
	int fds = 0; /* counted before this program opens any */
	for (int fd = 3; fd < 4096; fd++)
		fds += fcntl(fd, F_GETFD) >= 0;
	FILE *out = fopen("/probe.tmp", "w");
	if (!out) {
		fprintf(stderr, "jail_probe: /probe.tmp: %s\n", strerror(errno));
		return 1;
	}
	report(out, argc, argv, fds);
	if (fclose(out) || rename("/probe.tmp", "/probe.out")) {
		fprintf(stderr, "jail_probe: /probe.out: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--probe-exit"))
			return 0;
	for (;;)
		pause();
}
