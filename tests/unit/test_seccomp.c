/* The seccompiler JSON compiler (src/seccomp/compile.c): what a
 * --seccomp-filter file may say, and the one-line errors for the rest; and
 * the default filters, which must compile to BPF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <seccomp.h>
#include <stdio.h>
#include <string.h>

#include "seccomp/bpf.h"
#include "seccomp/compile.h"
#include "seccomp/filter.h"
#include "seccomp/prebuilt.h"

#define ALLOW_READ "{\"default_action\": \"trap\", \"filter_action\": \"allow\", " \
		   "\"filter\": [{\"syscall\": \"read\"}]}"

/* A whole file whose "vmm" filter is vmm_filter. */
static char *file_with_vmm(const char *vmm_filter)
{
	static char buf[4096];
	snprintf(buf, sizeof(buf), "{\"vmm\": %s, \"api\": " ALLOW_READ ", \"vcpu\": " ALLOW_READ "}",
		 vmm_filter);
	return buf;
}

static void expect_error(const char *text, const char *needle)
{
	struct seccomp_policy p;
	ember_err e = {{0}};
	assert_int_equal(seccomp_policy_parse(text, strlen(text), &p, &e), -1);
	if (!strstr(e.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, needle);
	if (strchr(e.msg, '\n'))
		fail_msg("error \"%s\" is not one line", e.msg);
	for (int k = 0; k < SECCOMP_THREAD_KINDS; k++)
		assert_null(p.f[k].rules);
}

static void firecracker_style_file(void **state)
{
	(void)state;
	const char *vmm =
		"{\"default_action\": \"trap\", \"filter_action\": \"allow\", \"filter\": ["
		" {\"syscall\": \"read\", \"comment\": \"why\"},"
		" {\"syscall\": \"ioctl\", \"args\": [{\"index\": 1, \"type\": \"dword\", "
		"  \"op\": \"eq\", \"val\": 44672, \"comment\": \"KVM_RUN\"}]},"
		" {\"syscall\": \"mmap\", \"args\": [{\"index\": 2, \"type\": \"dword\", "
		"  \"op\": {\"masked_eq\": 4}, \"val\": 0}, {\"index\": 3, \"type\": \"qword\", "
		"  \"op\": \"ne\", \"val\": 50}]}]}";
	const char *text = file_with_vmm(vmm);
	struct seccomp_policy p;
	ember_err e = {{0}};
	assert_int_equal(seccomp_policy_parse(text, strlen(text), &p, &e), 0);
	struct seccomp_filter *f = &p.f[SECCOMP_VMM];
	assert_int_equal(f->default_action, SCMP_ACT_TRAP);
	assert_int_equal(f->filter_action, SCMP_ACT_ALLOW);
	assert_int_equal(f->n, 3);
	assert_int_equal(f->rules[0].nr, SCMP_SYS(read));
	assert_int_equal(f->rules[0].n, 0);
	assert_int_equal(f->rules[1].nr, SCMP_SYS(ioctl));
	assert_int_equal(f->rules[1].n, 1);
	assert_int_equal(f->rules[1].c[0].index, 1);
	assert_false(f->rules[1].c[0].qword);
	assert_int_equal(f->rules[1].c[0].op, SC_EQ);
	assert_int_equal(f->rules[1].c[0].val, 44672);
	assert_int_equal(f->rules[2].c[0].op, SC_MASKED_EQ);
	assert_int_equal(f->rules[2].c[0].mask, 4);
	assert_true(f->rules[2].c[1].qword);
	assert_int_equal(f->rules[2].c[1].op, SC_NE);
	for (int k = 0; k < SECCOMP_THREAD_KINDS; k++) {
		struct seccomp_bpf b;
		assert_int_equal(seccomp_bpf_build(&p.f[k], &b, &e), 0);
		assert_true(b.len > 0);
		seccomp_bpf_free(&b);
	}
	seccomp_policy_free(&p);
}

static void actions(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		uint32_t act;
	} cases[] = {
		{"\"kill_thread\"", SCMP_ACT_KILL_THREAD}, {"\"kill_process\"", SCMP_ACT_KILL_PROCESS},
		{"\"log\"", SCMP_ACT_LOG}, {"{\"errno\": 1}", SCMP_ACT_ERRNO(1)},
		{"{\"trace\": 7}", SCMP_ACT_TRACE(7)}, {"\"trap\"", SCMP_ACT_TRAP},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char f[256];
		snprintf(f, sizeof(f), "{\"default_action\": %s, \"filter_action\": \"allow\", "
			 "\"filter\": []}", cases[i].json);
		const char *text = file_with_vmm(f);
		struct seccomp_policy p;
		ember_err e = {{0}};
		assert_int_equal(seccomp_policy_parse(text, strlen(text), &p, &e), 0);
		assert_int_equal(p.f[SECCOMP_VMM].default_action, cases[i].act);
		seccomp_policy_free(&p);
	}
}

static void bad_json_and_thread_kinds(void **state)
{
	(void)state;
	expect_error("{\"vmm\": ", "line 1");
	expect_error("[]", "top level");
	expect_error("{\"api\": " ALLOW_READ ", \"vcpu\": " ALLOW_READ "}", "missing thread kind \"vmm\"");
	expect_error("{\"vmm\": " ALLOW_READ ", \"vcpu\": " ALLOW_READ "}", "missing thread kind \"api\"");
	expect_error("{\"vmm\": " ALLOW_READ ", \"api\": " ALLOW_READ "}", "missing thread kind \"vcpu\"");
	expect_error("{\"vmm\": " ALLOW_READ ", \"api\": " ALLOW_READ ", \"vcpu\": " ALLOW_READ
		     ", \"io\": " ALLOW_READ "}", "unknown thread kind \"io\"");
	expect_error("{\"vmm\": " ALLOW_READ ", \"vmm\": " ALLOW_READ "}", "duplicate");
}

static void bad_filters(void **state)
{
	(void)state;
	expect_error(file_with_vmm("[]"), "vmm: not an object");
	expect_error(file_with_vmm("{\"filter_action\": \"allow\", \"filter\": []}"),
		     "needs \"default_action\"");
	expect_error(file_with_vmm("{\"default_action\": \"trap\", \"filter_action\": \"allow\", "
				   "\"filter\": [], \"extra\": 1}"), "unknown field \"extra\"");
	expect_error(file_with_vmm("{\"default_action\": \"die\", \"filter_action\": \"allow\", "
				   "\"filter\": []}"), "bad default_action");
	expect_error(file_with_vmm("{\"default_action\": \"Trap\", \"filter_action\": \"allow\", "
				   "\"filter\": []}"), "bad default_action");
	expect_error(file_with_vmm("{\"default_action\": {\"errno\": -1}, \"filter_action\": "
				   "\"allow\", \"filter\": []}"), "\"errno\" must be an integer");
	expect_error(file_with_vmm("{\"default_action\": {\"errno\": 65536}, \"filter_action\": "
				   "\"allow\", \"filter\": []}"), "\"errno\" must be an integer");
	expect_error(file_with_vmm("{\"default_action\": \"trap\", \"filter_action\": "
				   "{\"allow\": 1}, \"filter\": []}"), "bad filter_action");
	expect_error(file_with_vmm("{\"default_action\": \"allow\", \"filter_action\": \"allow\", "
				   "\"filter\": []}"), "same as");
	expect_error(file_with_vmm("{\"default_action\": \"trap\", \"filter_action\": \"allow\", "
				   "\"filter\": {}}"), "\"filter\" must be an array");
}

#define RULE(r) file_with_vmm("{\"default_action\": \"trap\", \"filter_action\": \"allow\", " \
			      "\"filter\": [{\"syscall\": \"read\"}, " r "]}")
#define COND(c) RULE("{\"syscall\": \"ioctl\", \"args\": [" c "]}")

static void bad_rules(void **state)
{
	(void)state;
	expect_error(RULE("{\"syscall\": \"no_such_call\"}"), "vmm: filter[1]: unknown syscall \"no_such_call\"");
	expect_error(RULE("{\"syscall\": \"arm_fadvise64_64\"}"), "unknown syscall");
	expect_error(RULE("{\"syscall\": 0}"), "\"syscall\" must be a syscall name");
	expect_error(RULE("{}"), "\"syscall\" must be");
	expect_error(RULE("\"read\""), "filter[1]: not an object");
	expect_error(RULE("{\"syscall\": \"read\", \"arg\": []}"), "unknown field \"arg\"");
	expect_error(RULE("{\"syscall\": \"read\", \"args\": {}}"), "\"args\" must be an array");
}

static void bad_conditions(void **state)
{
	(void)state;
	expect_error(COND("{\"index\": 6, \"type\": \"dword\", \"op\": \"eq\", \"val\": 1}"),
		     "(ioctl): args[0]: \"index\" must be an integer from 0 to 5");
	expect_error(COND("{\"index\": 1, \"type\": \"word\", \"op\": \"eq\", \"val\": 1}"),
		     "\"type\" must be");
	expect_error(COND("{\"index\": 1, \"type\": \"dword\", \"op\": \"equals\", \"val\": 1}"),
		     "bad \"op\"");
	expect_error(COND("{\"index\": 1, \"type\": \"dword\", \"op\": {\"masked_eq\": -4}, "
			  "\"val\": 1}"), "\"masked_eq\" must be an integer");
	expect_error(COND("{\"index\": 1, \"type\": \"dword\", \"op\": \"eq\", \"val\": 4294967296}"),
		     "\"val\" must be an integer from 0 to 4294967295");
	expect_error(COND("{\"index\": 1, \"type\": \"dword\", \"op\": \"eq\", \"val\": -1}"),
		     "\"val\" must be");
	expect_error(COND("{\"index\": 1, \"type\": \"dword\", \"op\": \"eq\"}"),
		     "needs \"index\", \"type\", \"op\" and \"val\"");
	expect_error(COND("{\"index\": 1, \"type\": \"dword\", \"op\": \"eq\", \"val\": 1, \"x\": 1}"),
		     "unknown field \"x\"");
	expect_error(COND("{\"index\": 1, \"type\": \"dword\", \"op\": \"eq\", \"val\": 1}, "
			  "{\"index\": 1, \"type\": \"dword\", \"op\": \"eq\", \"val\": 2}"),
		     "args[1]: a second condition on argument 1");
	expect_error(COND("1,2,3,4,5,6,7"), "at most 6 conditions");
}

static void missing_file(void **state)
{
	(void)state;
	struct seccomp_policy p;
	ember_err e = {{0}};
	assert_int_equal(seccomp_policy_load_file("/nonexistent/filter.json", &p, &e), -1);
	assert_non_null(strstr(e.msg, "cannot open it"));
	assert_int_equal(seccomp_policy_load_file("/", &p, &e), -1);
	assert_non_null(strstr(e.msg, "not a regular file"));
}

/* Every default filter compiles, traps by default, and is what Ember has
 * built in: the blobs are what libseccomp makes of filter.c's defaults now
 * (a rule changed without a rebuild of the blobs, or another libseccomp,
 * shows here). */
static void defaults_compile_to_the_prebuilt_filters(void **state)
{
	(void)state;
	struct seccomp_policy p;
	ember_err e = {{0}};
	assert_int_equal(seccomp_default_policy(&p, &e), 0);
	for (int k = 0; k < SECCOMP_THREAD_KINDS; k++) {
		struct seccomp_bpf b;
		if (seccomp_bpf_build(&p.f[k], &b, &e))
			fail_msg("%s: %s", seccomp_thread_name(k), e.msg);
		assert_true(b.len > 0);
		assert_int_equal(p.f[k].default_action, SCMP_ACT_TRAP);
		assert_int_equal(seccomp_prebuilt[k].len, b.len);
		assert_memory_equal(seccomp_prebuilt[k].insns, b.insns, b.len * sizeof(b.insns[0]));
		seccomp_bpf_free(&b);
	}
	seccomp_policy_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(firecracker_style_file),
		cmocka_unit_test(actions),
		cmocka_unit_test(bad_json_and_thread_kinds),
		cmocka_unit_test(bad_filters),
		cmocka_unit_test(bad_rules),
		cmocka_unit_test(bad_conditions),
		cmocka_unit_test(missing_file),
		cmocka_unit_test(defaults_compile_to_the_prebuilt_filters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
