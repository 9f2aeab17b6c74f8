#include "seccomp/compile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Far above any real filter (Firecracker's own file is about 40 KiB). */
#define MAX_FILE_BYTES (1u << 20)

static const char *const kind_names[SECCOMP_THREAD_KINDS] = {"vmm", "api", "vcpu"};

const char *seccomp_thread_name(enum seccomp_thread kind)
{
	return (unsigned)kind < SECCOMP_THREAD_KINDS ? kind_names[kind] : "?";
}

void seccomp_policy_free(struct seccomp_policy *p)
{
	for (int k = 0; k < SECCOMP_THREAD_KINDS; k++) {
		if (p->f[k].owned)
			free(p->f[k].rules);
		p->f[k] = (struct seccomp_filter){0};
	}
}

/* Refuses any key of obj not in allowed (NULL-terminated). */
static int only_keys(json_t *obj, const char *const *allowed, const char *where, ember_err *e)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(key, *a);
		if (!ok)
			return err_set(e, "%s: unknown field \"%.64s\"", where, key);
	}
	return 0;
}

/* A non-negative integer no larger than max. */
static int get_uint(json_t *v, uint64_t max, uint64_t *out, const char *where, const char *what,
		    ember_err *e)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return err_set(e, "%s: \"%s\" must be an integer from 0 to %llu", where, what,
			       (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_action(json_t *v, uint32_t *out, const char *where, const char *what,
			ember_err *e)
{
	static const struct {
		const char *name;
		uint32_t act;
	} plain[] = {
		{"allow", SCMP_ACT_ALLOW},
		{"trap", SCMP_ACT_TRAP},
		{"kill_thread", SCMP_ACT_KILL_THREAD},
		{"kill_process", SCMP_ACT_KILL_PROCESS},
		{"log", SCMP_ACT_LOG},
	};
	if (json_is_string(v)) {
		for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
			if (!strcmp(json_string_value(v), plain[i].name)) {
				*out = plain[i].act;
				return 0;
			}
		}
	} else if (json_is_object(v) && json_object_size(v) == 1) {
		json_t *n;
		uint64_t x;
		if ((n = json_object_get(v, "errno"))) {
			if (get_uint(n, 0xffff, &x, where, "errno", e))
				return -1;
			*out = SCMP_ACT_ERRNO((uint32_t)x);
			return 0;
		}
		if ((n = json_object_get(v, "trace"))) {
			if (get_uint(n, 0xffff, &x, where, "trace", e))
				return -1;
			*out = SCMP_ACT_TRACE((uint32_t)x);
			return 0;
		}
	}
	return err_set(e, "%s: bad %s (one of \"allow\", \"trap\", \"kill_thread\", "
		       "\"kill_process\", \"log\", {\"errno\": N}, {\"trace\": N})", where, what);
}

static int parse_cond(json_t *j, struct seccomp_cond *c, const char *where, ember_err *e)
{
	static const char *const keys[] = {"index", "type", "op", "val", "comment", NULL};
	static const struct {
		const char *name;
		enum seccomp_op op;
	} ops[] = {
		{"eq", SC_EQ}, {"ne", SC_NE}, {"lt", SC_LT}, {"le", SC_LE}, {"gt", SC_GT}, {"ge", SC_GE},
	};
	if (!json_is_object(j))
		return err_set(e, "%s: not an object", where);
	if (only_keys(j, keys, where, e))
		return -1;
	json_t *index = json_object_get(j, "index"), *type = json_object_get(j, "type"),
	       *op = json_object_get(j, "op"), *val = json_object_get(j, "val");
	if (!index || !type || !op || !val)
		return err_set(e, "%s: needs \"index\", \"type\", \"op\" and \"val\"", where);
	uint64_t x;
	if (get_uint(index, 5, &x, where, "index", e))
		return -1;
	c->index = (unsigned)x;
	const char *t = json_string_value(type);
	if (!t || (strcmp(t, "dword") && strcmp(t, "qword")))
		return err_set(e, "%s: \"type\" must be \"dword\" or \"qword\"", where);
	c->qword = !strcmp(t, "qword");
	uint64_t max = c->qword ? INT64_MAX : UINT32_MAX; /* jansson's integers are signed */
	bool found = false;
	if (json_is_string(op)) {
		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]) && !found; i++)
			if ((found = !strcmp(json_string_value(op), ops[i].name)))
				c->op = ops[i].op;
	} else if (json_is_object(op) && json_object_size(op) == 1 &&
		   json_object_get(op, "masked_eq")) {
		if (get_uint(json_object_get(op, "masked_eq"), max, &c->mask, where, "masked_eq", e))
			return -1;
		c->op = SC_MASKED_EQ;
		found = true;
	}
	if (!found)
		return err_set(e, "%s: bad \"op\" (one of \"eq\", \"ne\", \"lt\", \"le\", \"gt\", "
			       "\"ge\", {\"masked_eq\": MASK})", where);
	return get_uint(val, max, &c->val, where, "val", e);
}

static int parse_rule(json_t *j, struct seccomp_rule *r, const char *where, ember_err *e)
{
	static const char *const keys[] = {"syscall", "args", "comment", NULL};
	if (!json_is_object(j))
		return err_set(e, "%s: not an object", where);
	if (only_keys(j, keys, where, e))
		return -1;
	const char *name = json_string_value(json_object_get(j, "syscall"));
	if (!name)
		return err_set(e, "%s: \"syscall\" must be a syscall name", where);
	r->nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name);
	if (r->nr < 0) /* unknown, or libseccomp's pseudo number for another arch's */
		return err_set(e, "%s: unknown syscall \"%.64s\"", where, name);
	json_t *args = json_object_get(j, "args");
	if (!args)
		return 0;
	if (!json_is_array(args) || json_array_size(args) > SECCOMP_MAX_CONDS)
		return err_set(e, "%s (%s): \"args\" must be an array of at most %d conditions",
			       where, name, SECCOMP_MAX_CONDS);
	size_t i;
	json_t *a;
	json_array_foreach(args, i, a) {
		char w[160];
		snprintf(w, sizeof(w), "%s (%s): args[%zu]", where, name, i);
		if (parse_cond(a, &r->c[i], w, e))
			return -1;
		for (size_t k = 0; k < i; k++)
			if (r->c[k].index == r->c[i].index)
				return err_set(e, "%s: a second condition on argument %u (write "
					       "another rule instead)", w, r->c[i].index);
	}
	r->n = (unsigned)json_array_size(args);
	return 0;
}

static int parse_filter(json_t *j, struct seccomp_filter *f, const char *kind, ember_err *e)
{
	static const char *const keys[] = {"default_action", "filter_action", "filter", NULL};
	if (!json_is_object(j))
		return err_set(e, "%s: not an object", kind);
	if (only_keys(j, keys, kind, e))
		return -1;
	json_t *def = json_object_get(j, "default_action"), *act = json_object_get(j, "filter_action"),
	       *rules = json_object_get(j, "filter");
	if (!def || !act || !rules)
		return err_set(e, "%s: needs \"default_action\", \"filter_action\" and \"filter\"", kind);
	if (parse_action(def, &f->default_action, kind, "default_action", e) ||
	    parse_action(act, &f->filter_action, kind, "filter_action", e))
		return -1;
	if (f->default_action == f->filter_action)
		return err_set(e, "%s: \"filter_action\" is the same as \"default_action\"", kind);
	if (!json_is_array(rules))
		return err_set(e, "%s: \"filter\" must be an array of rules", kind);
	f->n = json_array_size(rules);
	f->rules = calloc(f->n ? f->n : 1, sizeof(*f->rules));
	f->owned = true;
	if (!f->rules)
		return err_set(e, "out of memory");
	size_t i;
	json_t *r;
	json_array_foreach(rules, i, r) {
		char w[64];
		snprintf(w, sizeof(w), "%s: filter[%zu]", kind, i);
		if (parse_rule(r, &f->rules[i], w, e))
			return -1;
	}
	return 0;
}

int seccomp_policy_parse(const char *text, size_t len, struct seccomp_policy *out, ember_err *e)
{
	memset(out, 0, sizeof(*out));
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return err_set(e, "line %d: %s", je.line, je.text);
	int rc = -1;
	if (!json_is_object(root)) {
		err_set(e, "the top level must be an object of thread kinds (vmm, api, vcpu)");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		int k = 0;
		while (k < SECCOMP_THREAD_KINDS && strcmp(key, kind_names[k]))
			k++;
		if (k == SECCOMP_THREAD_KINDS) {
			err_set(e, "unknown thread kind \"%.64s\" (vmm, api, vcpu)", key);
			goto out;
		}
	}
	for (int k = 0; k < SECCOMP_THREAD_KINDS; k++) {
		json_t *f = json_object_get(root, kind_names[k]);
		if (!f) {
			err_set(e, "missing thread kind \"%s\"", kind_names[k]);
			goto out;
		}
		if (parse_filter(f, &out->f[k], kind_names[k], e))
			goto out;
	}
	rc = 0;
out:
	json_decref(root);
	if (rc)
		seccomp_policy_free(out);
	return rc;
}

int seccomp_policy_load_file(const char *path, struct seccomp_policy *out, ember_err *e)
{
	memset(out, 0, sizeof(*out));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, "cannot open it: %s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_BYTES) {
		close(fd);
		return err_set(e, "not a regular file of at most %u bytes", MAX_FILE_BYTES);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!buf || got != (size_t)st.st_size) {
		free(buf);
		return err_set(e, "cannot read it");
	}
	int rc = seccomp_policy_parse(buf, got, out, e);
	free(buf);
	return rc;
}
