#include "jailer/rlimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

void rlimit_defaults(struct jailer_rlimits *r)
{
	*r = (struct jailer_rlimits){.no_file = JAILER_DEFAULT_NO_FILE};
}

/* A decimal u64: digits only (no sign, no blanks, no 0x), no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

int rlimit_parse(const char *arg, struct jailer_rlimits *r, ember_err *e)
{
	const char *eq = strchr(arg, '=');
	if (!eq)
		return err_set(e, "--resource-limit %s: expected <resource>=<value>", arg);
	size_t name_len = (size_t)(eq - arg);
	uint64_t v;
	if (!parse_u64(eq + 1, &v))
		return err_set(e, "--resource-limit %s: %s is not a limit (a decimal number)",
			       arg, eq + 1);
	if (name_len == 5 && !strncmp(arg, "fsize", 5)) {
		r->has_fsize = true;
		r->fsize = v;
	} else if (name_len == 7 && !strncmp(arg, "no-file", 7)) {
		r->no_file = v;
	} else {
		return err_set(e, "--resource-limit %s: unknown resource %.*s (fsize or no-file)",
			       arg, (int)name_len, arg);
	}
	return 0;
}

static int set_one(int resource, const char *name, uint64_t v, ember_err *e)
{
	struct rlimit rl = {.rlim_cur = (rlim_t)v, .rlim_max = (rlim_t)v};
	if (setrlimit(resource, &rl))
		return err_set(e, "set resource limit %s=%llu: %s", name, (unsigned long long)v,
			       strerror(errno));
	return 0;
}

int rlimit_apply(const struct jailer_rlimits *r, ember_err *e)
{
	if (r->has_fsize && set_one(RLIMIT_FSIZE, "fsize", r->fsize, e))
		return -1;
	return set_one(RLIMIT_NOFILE, "no-file", r->no_file, e);
}
