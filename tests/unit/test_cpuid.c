#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "arch/x86/cpuid.h"

static void add(struct cpuid_set *s, uint32_t fn, uint32_t idx, uint32_t flags, uint32_t eax,
		uint32_t ebx, uint32_t ecx, uint32_t edx)
{
	s->entries[s->nent++] = (struct kvm_cpuid_entry2){
		.function = fn, .index = idx, .flags = flags,
		.eax = eax, .ebx = ebx, .ecx = ecx, .edx = edx,
	};
}

/* What KVM might report on an Intel host. */
static void intel_set(struct cpuid_set *s)
{
	memset(s, 0, sizeof(*s));
	add(s, 0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69); /* GenuineIntel */
	add(s, 1, 0, 0, 0x806f8, 0x12345678, 1u << 15 /* PDCM */, 1u << 28);
	add(s, 6, 0, 0, 0x77, 0, 0x9, 0);
	add(s, 7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0x1, 0x20 /* WAITPKG */, 0x20000000);
	add(s, 7, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0, 0x20, 0x20000000);
	/* L1d (type 1, level 1) and L3 (type 3, level 3) */
	add(s, 4, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0xfc004121, 0, 0, 0);
	add(s, 4, 3, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0xfc03c163, 0, 0, 0);
	add(s, 0xa, 0, 0, 0x07300805, 1, 2, 3);
	add(s, 0xb, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 1, 2, 0x100, 99);
	add(s, 0xb, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 7, 112, 0x201, 99);
	add(s, 0xb, 2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0, 2, 99);
	add(s, 0x40000000, 0, 0, 0x40000001, 0, 0, 0);
	add(s, 0x80000002, 0, 0, 0, 0, 0, 0);
	add(s, 0x80000003, 0, 0, 0, 0, 0, 0);
	add(s, 0x80000004, 0, 0, 0, 0, 0, 0);
}

static const char brand[48] = "Test CPU @ 1.00GHz";

static void leaf1_per_vcpu(void **state)
{
	(void)state;
	struct cpuid_set s;
	intel_set(&s);
	cpuid_normalize(&s, 3, 4, false, brand);
	struct kvm_cpuid_entry2 *l1 = cpuid_find(&s, 1, 0);
	assert_int_equal(l1->ebx >> 24, 3);	   /* APIC id */
	assert_int_equal((l1->ebx >> 16) & 0xff, 4); /* logical CPUs */
	assert_int_equal((l1->ebx >> 8) & 0xff, 8); /* clflush line */
	assert_true(l1->ecx & (1u << 31));	   /* hypervisor */
	assert_true(l1->ecx & (1u << 24));	   /* TSC deadline timer */
	assert_false(l1->ecx & (1u << 15));	   /* no PDCM */
	assert_true(l1->edx & (1u << 28));	   /* HTT with > 1 CPU */

	intel_set(&s);
	cpuid_normalize(&s, 0, 1, false, brand);
	l1 = cpuid_find(&s, 1, 0);
	assert_int_equal(l1->ebx >> 24, 0);
	assert_false(l1->edx & (1u << 28));
}

static void topology_leaves(void **state)
{
	(void)state;
	struct cpuid_set s;
	intel_set(&s);
	cpuid_normalize(&s, 5, 6, false, brand);
	struct kvm_cpuid_entry2 *smt = cpuid_find(&s, 0xb, 0);
	struct kvm_cpuid_entry2 *core = cpuid_find(&s, 0xb, 1);
	struct kvm_cpuid_entry2 *none = cpuid_find(&s, 0xb, 2);
	assert_int_equal(smt->ebx, 1);
	assert_int_equal(smt->eax, 0);
	assert_int_equal((smt->ecx >> 8) & 0xff, 1);
	assert_int_equal(core->ebx, 6);
	assert_int_equal(core->eax, 3); /* 6 ids need 3 bits */
	assert_int_equal((core->ecx >> 8) & 0xff, 2);
	assert_int_equal(none->ebx, 0);
	assert_int_equal((none->ecx >> 8) & 0xff, 0);
	assert_int_equal(smt->edx, 5);
	assert_int_equal(core->edx, 5);

	struct kvm_cpuid_entry2 *l1d = cpuid_find(&s, 4, 0);
	struct kvm_cpuid_entry2 *l3 = cpuid_find(&s, 4, 3);
	assert_int_equal((l1d->eax >> 14) & 0xfff, 0);
	assert_int_equal((l3->eax >> 14) & 0xfff, 5);
	assert_int_equal(l1d->eax >> 26, 5);
	assert_int_equal(l1d->eax & 0x1f, 1); /* cache type kept */
}

static void signature_pmu_brand(void **state)
{
	(void)state;
	struct cpuid_set s;
	intel_set(&s);
	cpuid_normalize(&s, 0, 2, false, brand);
	struct kvm_cpuid_entry2 *kvm = cpuid_find(&s, 0x40000000, 0);
	char sig[13] = {0};
	memcpy(sig, &kvm->ebx, 4);
	memcpy(sig + 4, &kvm->ecx, 4);
	memcpy(sig + 8, &kvm->edx, 4);
	assert_string_equal(sig, "KVMKVMKVM");
	struct kvm_cpuid_entry2 *pmu = cpuid_find(&s, 0xa, 0);
	assert_int_equal(pmu->eax | pmu->ebx | pmu->ecx | pmu->edx, 0);
	char got[49] = {0};
	for (int i = 0; i < 3; i++) {
		struct kvm_cpuid_entry2 *b = cpuid_find(&s, 0x80000002 + i, 0);
		memcpy(got + i * 16, &b->eax, 4);
		memcpy(got + i * 16 + 4, &b->ebx, 4);
		memcpy(got + i * 16 + 8, &b->ecx, 4);
		memcpy(got + i * 16 + 12, &b->edx, 4);
	}
	assert_string_equal(got, brand);
}

static void amd_leaves(void **state)
{
	(void)state;
	struct cpuid_set s;
	memset(&s, 0, sizeof(s));
	add(&s, 0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65); /* AuthenticAMD */
	add(&s, 1, 0, 0, 0, 0, 0, 0);
	add(&s, 0x80000008, 0, 0, 0x3030, 0, 0x700f, 0);
	add(&s, 0x8000001e, 0, 0, 0, 0x100, 0x300, 0);
	cpuid_normalize(&s, 2, 4, false, brand);
	struct kvm_cpuid_entry2 *l = cpuid_find(&s, 0x80000008, 0);
	assert_int_equal(l->ecx & 0xff, 3);
	assert_int_equal((l->ecx >> 12) & 0xf, 2);
	l = cpuid_find(&s, 0x8000001e, 0);
	assert_int_equal(l->eax, 2);
	assert_int_equal((l->ebx >> 8) & 0xff, 0); /* one thread per core */
}

/* Firecracker's Intel normalisation of leaves 6 and 7 (subleaf 0 only),
 * and AMD's of leaf 7. */
static void power_and_extended_features(void **state)
{
	(void)state;
	struct cpuid_set s;
	intel_set(&s);
	cpuid_normalize(&s, 0, 2, false, brand);
	struct kvm_cpuid_entry2 *l6 = cpuid_find(&s, 6, 0);
	assert_int_equal(l6->eax, 0x75); /* no turbo */
	assert_int_equal(l6->ecx, 0x1);	 /* no frequency selection */
	struct kvm_cpuid_entry2 *l7 = cpuid_find(&s, 7, 0);
	assert_int_equal(l7->ebx, 0x1 | (1u << 6) | (1u << 13));
	assert_int_equal(l7->ecx, 0);		 /* no WAITPKG */
	assert_int_equal(l7->edx, 0x20000000); /* Intel keeps ARCH_CAPABILITIES */
	struct kvm_cpuid_entry2 *l7s1 = cpuid_find(&s, 7, 1);
	assert_int_equal(l7s1->ecx, 0x20); /* other subleaves untouched */

	memset(&s, 0, sizeof(s));
	add(&s, 0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65); /* AuthenticAMD */
	add(&s, 6, 0, 0, 0x77, 0, 0x9, 0);
	add(&s, 7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0x1, 0x20, 0x20000010);
	cpuid_normalize(&s, 0, 1, false, brand);
	assert_int_equal(cpuid_find(&s, 6, 0)->eax, 0x77);
	l7 = cpuid_find(&s, 7, 0);
	assert_int_equal(l7->edx, 0x10); /* no ARCH_CAPABILITIES on AMD */
	assert_int_equal(l7->ebx, 0x1);
	assert_int_equal(l7->ecx, 0x20);
}

/* smt: vCPUs 2k and 2k+1 are the two threads of core k. */
static void smt_topology(void **state)
{
	(void)state;
	struct cpuid_set s;
	intel_set(&s);
	cpuid_normalize(&s, 3, 4, true, brand);
	struct kvm_cpuid_entry2 *smt = cpuid_find(&s, 0xb, 0);
	struct kvm_cpuid_entry2 *core = cpuid_find(&s, 0xb, 1);
	assert_int_equal(smt->ebx, 2); /* threads per core */
	assert_int_equal(smt->eax, 1); /* one bit of APIC id for the thread */
	assert_int_equal(core->ebx, 4);
	assert_int_equal(smt->edx, 3);
	struct kvm_cpuid_entry2 *l1d = cpuid_find(&s, 4, 0);
	struct kvm_cpuid_entry2 *l3 = cpuid_find(&s, 4, 3);
	assert_int_equal((l1d->eax >> 14) & 0xfff, 1); /* a core's 2 threads share L1 */
	assert_int_equal((l3->eax >> 14) & 0xfff, 3);  /* the package shares L3 */
	assert_int_equal(l1d->eax >> 26, 1);	       /* 2 cores */

	/* One vCPU is one thread, smt or not. */
	intel_set(&s);
	cpuid_normalize(&s, 0, 1, true, brand);
	assert_int_equal(cpuid_find(&s, 0xb, 0)->ebx, 1);
	assert_int_equal(cpuid_find(&s, 0xb, 0)->eax, 0);

	/* AMD: 0x8000001e has the core id and threads per core. */
	memset(&s, 0, sizeof(s));
	add(&s, 0, 0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65); /* AuthenticAMD */
	add(&s, 0x8000001e, 0, 0, 0, 0, 0, 0);
	cpuid_normalize(&s, 3, 4, true, brand);
	struct kvm_cpuid_entry2 *l = cpuid_find(&s, 0x8000001e, 0);
	assert_int_equal(l->eax, 3);
	assert_int_equal(l->ebx & 0xff, 1);	   /* core 1 */
	assert_int_equal((l->ebx >> 8) & 0xff, 1); /* 2 threads per core */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(leaf1_per_vcpu),
		cmocka_unit_test(topology_leaves),
		cmocka_unit_test(signature_pmu_brand),
		cmocka_unit_test(amd_leaves),
		cmocka_unit_test(power_and_extended_features),
		cmocka_unit_test(smt_topology),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
