#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "arch/x86/cpu_template.h"

static struct cpu_template t; /* large: not on the stack */

static int parse(const char *text, ember_err *e)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
	assert_non_null(j);
	int rc = cpu_template_parse(j, &t, e);
	json_decref(j);
	return rc;
}

static void expect_error(const char *text, const char *needle)
{
	ember_err e = {{0}};
	assert_int_equal(parse(text, &e), -1);
	if (!strstr(e.msg, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", e.msg, needle);
}

static void bitmaps(void **state)
{
	(void)state;
	uint64_t mask, value;
	ember_err e;
	/* The doc's example: clear, set, leave. */
	assert_int_equal(cpu_bitmap_parse("0bxxxx000000000011xx00011011110010", 32, &mask, &value,
					  &e), 0);
	assert_int_equal(mask, 0x0fff3fff); /* the doc: leave 0xf000c000 */
	assert_int_equal(value, 0x000306f2);
	/* Short: the high bits are left alone; '_' separates; "0b" optional. */
	assert_int_equal(cpu_bitmap_parse("1_0x", 32, &mask, &value, &e), 0);
	assert_int_equal(mask, 0x6);
	assert_int_equal(value, 0x4);
	assert_int_equal(cpu_bitmap_parse("0b", 32, &mask, &value, &e), 0);
	assert_int_equal(mask, 0);
	/* 64 bits for MSRs. */
	char msr[67] = "0b1";
	memset(msr + 3, '0', 63);
	msr[66] = 0;
	assert_int_equal(cpu_bitmap_parse(msr, 64, &mask, &value, &e), 0);
	assert_true(mask == UINT64_MAX && value == 1ULL << 63);
	assert_int_equal(cpu_bitmap_parse(msr, 32, &mask, &value, &e), -1);
	assert_non_null(strstr(e.msg, "string is too long"));
	assert_int_equal(cpu_bitmap_parse("0b10y1", 32, &mask, &value, &e), -1);
	assert_non_null(strstr(e.msg, "unknown character: y"));
}

static void numbers(void **state)
{
	(void)state;
	uint64_t v;
	ember_err e;
	assert_int_equal(cpu_number_parse("0x10a", 32, &v, &e), 0);
	assert_int_equal(v, 0x10a);
	assert_int_equal(cpu_number_parse("0b1000101", 32, &v, &e), 0);
	assert_int_equal(v, 69);
	assert_int_equal(cpu_number_parse("0xffffffff", 32, &v, &e), 0);
	assert_int_equal(cpu_number_parse("0x100000000", 32, &v, &e), -1);
	assert_int_equal(cpu_number_parse("69", 32, &v, &e), -1);
	assert_non_null(strstr(e.msg, "No supported number system prefix"));
	assert_int_equal(cpu_number_parse("0x", 32, &v, &e), -1);
	assert_int_equal(cpu_number_parse("0b102", 32, &v, &e), -1);
	assert_int_equal(cpu_number_parse("0xfffffffffffffffff", 64, &v, &e), -1);
}

static void parse_and_apply(void **state)
{
	(void)state;
	ember_err e = {{0}};
	assert_int_equal(parse("{\"kvm_capabilities\": [\"!56\", \"171\"],"
			       " \"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\","
			       "  \"flags\": 0, \"modifiers\": ["
			       "   {\"register\": \"eax\", \"bitmap\": \"0bxxxx000000000011xx00011011110010\"},"
			       "   {\"register\": \"edx\", \"bitmap\": \"0b1x0\"}]}],"
			       " \"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": \"0b0_1\"}]}", &e),
			 0);
	assert_int_equal(t.n_caps, 2);
	assert_true(t.caps[0] == -57 && t.caps[1] == 171);
	assert_int_equal(t.n_cpuid, 1);
	struct cpuid_set set = {0};
	set.entries[set.nent++] = (struct kvm_cpuid_entry2){.function = 1, .index = 0, .flags = 7,
							    .eax = 0xffffffff, .edx = 0x1};
	set.entries[set.nent++] = (struct kvm_cpuid_entry2){.function = 7, .eax = 42};
	assert_int_equal(cpu_template_apply_cpuid(&t, &set, &e), 0);
	assert_int_equal(set.entries[0].eax, 0xf000c000 | 0x000306f2);
	assert_int_equal(set.entries[0].edx, 0x4);	/* bit 2 set, bit 0 cleared */
	assert_int_equal(set.entries[0].flags, 0);	/* the template's flags */
	assert_int_equal(set.entries[1].eax, 42);	/* untouched */
	uint64_t msr = 0xff;
	assert_true(cpu_template_msr(&t, 0x10a, &msr));
	assert_int_equal(msr, 0xfd);
	msr = 5;
	assert_false(cpu_template_msr(&t, 0x10b, &msr));
	assert_int_equal(msr, 5);

	/* A leaf KVM does not have: refused, nothing changed. */
	assert_int_equal(parse("{\"cpuid_modifiers\": [{\"leaf\": \"0x7\", \"subleaf\": \"0x0\","
			       " \"flags\": 0, \"modifiers\": [{\"register\": \"ebx\", \"bitmap\": \"0b1\"}]},"
			       " {\"leaf\": \"0x40000010\", \"subleaf\": \"0x0\", \"flags\": 0,"
			       " \"modifiers\": []}]}", &e), 0);
	assert_int_equal(cpu_template_apply_cpuid(&t, &set, &e), -1);
	assert_non_null(strstr(e.msg, "0x40000010"));
	assert_int_equal(set.entries[1].ebx, 0);
}

static void hostile(void **state)
{
	(void)state;
	expect_error("[]", "expected an object");
	expect_error("{\"vcpu_features\": []}", "unknown field `vcpu_features`");
	expect_error("{\"cpuid_modifiers\": {}}", "expected array");
	expect_error("{\"cpuid_modifiers\": [{\"subleaf\": \"0x0\", \"flags\": 0, \"modifiers\": []}]}",
		     "missing field `leaf`");
	expect_error("{\"cpuid_modifiers\": [{\"leaf\": \"1\", \"subleaf\": \"0x0\", \"flags\": 0,"
		     " \"modifiers\": []}]}", "No supported number system prefix");
	expect_error("{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": -1,"
		     " \"modifiers\": []}]}", "flags");
	expect_error("{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0,"
		     " \"modifiers\": [{\"register\": \"esp\", \"bitmap\": \"0b1\"}]}]}",
		     "unknown variant `esp`");
	expect_error("{\"cpuid_modifiers\": [{\"leaf\": \"0x1\", \"subleaf\": \"0x0\", \"flags\": 0,"
		     " \"modifiers\": [{\"register\": \"eax\", \"bitmap\": 1}]}]}", "expected string");
	expect_error("{\"msr_modifiers\": [{\"addr\": \"0x10a\", \"bitmap\": \"0b2\"}]}",
		     "unknown character");
	expect_error("{\"msr_modifiers\": [{\"addr\": \"0x10a\"}]}", "missing field `bitmap`");
	expect_error("{\"kvm_capabilities\": [\"!\"]}", "kvm_capabilities");
	expect_error("{\"kvm_capabilities\": [\"-5\"]}", "kvm_capabilities");
	expect_error("{\"kvm_capabilities\": [\"99999999999\"]}", "not a capability number");
	expect_error("{\"kvm_capabilities\": [5]}", "kvm_capabilities");
	/* More modifiers than the table holds. */
	size_t n = CPU_TEMPLATE_MAX_MODIFIERS + 1, len = 64 + n * 40;
	char *big = malloc(len), *p = big;
	p += sprintf(p, "{\"msr_modifiers\": [");
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s{\"addr\": \"0x1\", \"bitmap\": \"0b1\"}", i ? "," : "");
	sprintf(p, "]}");
	expect_error(big, "at most");
	free(big);
}

static void static_templates(void **state)
{
	(void)state;
	enum cpu_static_template k;
	assert_int_equal(cpu_static_template_parse("T2A", &k), 0);
	assert_int_equal(k, CPU_TEMPLATE_T2A);
	assert_string_equal(cpu_static_template_name(k), "T2A");
	assert_int_equal(cpu_static_template_parse("None", &k), 0);
	assert_int_equal(k, CPU_TEMPLATE_NONE);
	assert_int_equal(cpu_static_template_parse("t2a", &k), -1);
	assert_int_equal(cpu_static_template_parse("", &k), -1);

	/* Who may run what: vendor first, then the exact model and stepping. */
	ember_err e = {{0}};
	const uint32_t milan = 0x00a00f11, skylake = 0x00050654, cascade = 0x00050657;
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_T2A, "AuthenticAMD", milan, &e), 0);
	/* The processor-type bits (13:12) do not count. */
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_T2A, "AuthenticAMD",
						   milan | 0x3000, &e), 0);
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_T2A, "GenuineIntel", milan, &e), -1);
	assert_non_null(strstr(e.msg, "vendor mismatched"));
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_T2A, "AuthenticAMD", 0x00800f12,
						   &e), -1);
	assert_non_null(strstr(e.msg, "CPU model is not permitted"));
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_T2S, "GenuineIntel", skylake, &e),
			 0);
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_T2CL, "GenuineIntel", skylake, &e),
			 -1);
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_T2CL, "GenuineIntel", cascade, &e),
			 0);
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_C3, "AuthenticAMD", skylake, &e), -1);
	assert_int_equal(cpu_static_template_check(CPU_TEMPLATE_NONE, "GenuineIntel", skylake, &e),
			 -1);

	/* T2A's modifiers as a template: one per leaf/subleaf, leaf 1 shows a
	 * family 6 model 0x3f stepping 2 processor, AVX-512 is hidden. */
	cpu_static_template_get(CPU_TEMPLATE_T2A, &t);
	assert_int_equal(t.n_cpuid, 6); /* 1, 7/0, 0xd/0, 0xd/1, 0x80000001, 0x80000008 */
	assert_int_equal(t.n_msr, 0);
	struct cpuid_set set = {0};
	uint32_t leaves[][2] = {{1, 0}, {7, 0}, {0xd, 0}, {0xd, 1}, {0x80000001, 0}, {0x80000008, 0}};
	for (size_t i = 0; i < 6; i++)
		set.entries[set.nent++] = (struct kvm_cpuid_entry2){
			.function = leaves[i][0], .index = leaves[i][1], .eax = 0xffffffff,
			.ebx = 0xffffffff, .ecx = 0xffffffff, .edx = 0xffffffff};
	assert_int_equal(cpu_template_apply_cpuid(&t, &set, &e), 0);
	assert_int_equal(cpuid_find(&set, 1, 0)->eax, 0xf000c000u | 0x000306f2u);
	assert_false(cpuid_find(&set, 7, 0)->ebx & (1u << 16)); /* AVX512F */
	assert_true(cpuid_find(&set, 7, 0)->ebx & (1u << 9));	/* ERMS set */

	/* T2S also sets IA32_ARCH_CAPABILITIES, whatever it was. */
	cpu_static_template_get(CPU_TEMPLATE_T2S, &t);
	assert_int_equal(t.n_msr, 1);
	uint64_t msr = 0xdeadbeef;
	assert_true(cpu_template_msr(&t, 0x10a, &msr));
	assert_int_equal(msr, 0x0c0a0c4c);
	/* T2CL leaves the mitigation bits KVM passes through and clears the
	 * rest. */
	cpu_static_template_get(CPU_TEMPLATE_T2CL, &t);
	msr = ~0ULL;
	assert_true(cpu_template_msr(&t, 0x10a, &msr));
	assert_int_equal(msr, ~0xffffffffe2f51e00ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bitmaps),
		cmocka_unit_test(numbers),
		cmocka_unit_test(parse_and_apply),
		cmocka_unit_test(hostile),
		cmocka_unit_test(static_templates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
