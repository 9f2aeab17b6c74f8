#include "seccomp/bpf.h"

#include <errno.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A "dword" is the low 32 bits, as the kernel reads an int argument: eq and
 * masked_eq mask the upper half off (as seccompiler does); the ordering
 * comparisons, which libseccomp cannot mask, see the whole register. */
static struct scmp_arg_cmp to_cmp(const struct seccomp_cond *c)
{
	static const enum scmp_compare ops[] = {
		[SC_EQ] = SCMP_CMP_EQ, [SC_NE] = SCMP_CMP_NE, [SC_LT] = SCMP_CMP_LT,
		[SC_LE] = SCMP_CMP_LE, [SC_GT] = SCMP_CMP_GT, [SC_GE] = SCMP_CMP_GE,
	};
	struct scmp_arg_cmp a = {.arg = c->index};
	if (c->op == SC_MASKED_EQ) {
		a.op = SCMP_CMP_MASKED_EQ;
		a.datum_a = c->qword ? c->mask : c->mask & 0xffffffffu;
		a.datum_b = c->val;
	} else if (c->op == SC_EQ && !c->qword) {
		a.op = SCMP_CMP_MASKED_EQ;
		a.datum_a = 0xffffffffu;
		a.datum_b = c->val;
	} else {
		a.op = ops[c->op];
		a.datum_a = c->val;
	}
	return a;
}

int seccomp_bpf_build(const struct seccomp_filter *f, struct seccomp_bpf *out, ember_err *e)
{
	memset(out, 0, sizeof(*out));
	scmp_filter_ctx ctx = seccomp_init(f->default_action);
	if (!ctx)
		return err_set(e, "libseccomp: cannot create a filter");
	int rc = 0, fd = -1;
	/* Another architecture's syscall (int 0x80, x32) ends the process. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)))
		goto fail;
	for (size_t i = 0; i < f->n; i++) {
		const struct seccomp_rule *r = &f->rules[i];
		struct scmp_arg_cmp cmp[SECCOMP_MAX_CONDS];
		for (unsigned k = 0; k < r->n; k++)
			cmp[k] = to_cmp(&r->c[k]);
		rc = seccomp_rule_add_exact_array(ctx, f->filter_action, r->nr, r->n, cmp);
		if (rc) {
			char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, r->nr);
			err_set(e, "filter[%zu] (%s): libseccomp refuses the rule: %s", i,
				name ? name : "?", strerror(-rc));
			free(name);
			seccomp_release(ctx);
			return -1;
		}
	}
	fd = memfd_create("ember-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	struct stat st;
	if ((rc = seccomp_export_bpf(ctx, fd)))
		goto fail;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto fail;
	}
	size_t n = (size_t)st.st_size / sizeof(struct sock_filter);
	if (n == 0 || n > BPF_MAXINSNS) {
		err_set(e, "the filter is %zu BPF instructions long (the kernel takes up to %d)", n,
			BPF_MAXINSNS);
		goto fail_set;
	}
	out->insns = malloc(n * sizeof(struct sock_filter));
	if (!out->insns || pread(fd, out->insns, n * sizeof(struct sock_filter), 0) !=
				   (ssize_t)(n * sizeof(struct sock_filter))) {
		rc = -EIO;
		goto fail;
	}
	out->len = (unsigned short)n;
	close(fd);
	seccomp_release(ctx);
	return 0;
fail:
	err_set(e, "libseccomp: %s", strerror(rc < 0 ? -rc : EINVAL));
fail_set:
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
	seccomp_bpf_free(out);
	return -1;
}

void seccomp_bpf_free(struct seccomp_bpf *b)
{
	free(b->insns);
	b->insns = NULL;
	b->len = 0;
}
