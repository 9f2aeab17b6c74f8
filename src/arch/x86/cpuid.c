#include "arch/x86/cpuid.h"

#include <cpuid.h>
#include <stdbool.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#define LEAF1_ECX_PDCM (1u << 15)
#define LEAF1_ECX_TSC_DEADLINE (1u << 24)
#define LEAF1_ECX_HYPERVISOR (1u << 31)
#define LEAF6_EAX_TURBO (1u << 1)
#define LEAF6_ECX_FREQ_SELECTION (1u << 3)
#define LEAF7_EBX_FDP_EXCPTN_ONLY (1u << 6)
#define LEAF7_EBX_FPU_CS_DS_DEPRECATED (1u << 13)
#define LEAF7_ECX_WAITPKG (1u << 5)
#define LEAF7_EDX_ARCH_CAPABILITIES (1u << 29)
#define LEAF1_EDX_HTT (1u << 28)
#define LEAF80000001_ECX_TOPOEXT (1u << 22)
#define CLFLUSH_LINE_QWORDS 8 /* 64-byte cache lines */
/* Extended topology level types (leaves 0xB and 0x1F). */
#define TOPO_LEVEL_SMT 1
#define TOPO_LEVEL_CORE 2

/* A kvm_cpuid2 with room for CPUID_MAX_ENTRIES, for the ioctls. */
static struct kvm_cpuid2 *cpuid2_alloc(void)
{
	return calloc(1, sizeof(struct kvm_cpuid2) +
				 CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
}

int cpuid_supported(int kvm_fd, struct cpuid_set *out, ember_err *e)
{
	struct kvm_cpuid2 *c = cpuid2_alloc();
	if (!c)
		return err_set(e, "out of memory");
	c->nent = CPUID_MAX_ENTRIES;
	int rc = ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
	if (rc == 0) {
		out->nent = c->nent;
		memcpy(out->entries, c->entries, c->nent * sizeof(c->entries[0]));
	}
	int saved = errno;
	free(c);
	if (rc < 0)
		return err_set(e, "KVM_GET_SUPPORTED_CPUID: %s", strerror(saved));
	return 0;
}

int cpuid_set_vcpu(int vcpu_fd, const struct cpuid_set *set, ember_err *e)
{
	struct kvm_cpuid2 *c = cpuid2_alloc();
	if (!c)
		return err_set(e, "out of memory");
	c->nent = set->nent;
	memcpy(c->entries, set->entries, set->nent * sizeof(set->entries[0]));
	int rc = ioctl(vcpu_fd, KVM_SET_CPUID2, c);
	int saved = errno;
	free(c);
	if (rc < 0)
		return err_set(e, "KVM_SET_CPUID2: %s", strerror(saved));
	return 0;
}

void cpuid_host_brand(char brand[48])
{
	unsigned int r[12] = {0};
	for (unsigned i = 0; i < 3; i++)
		__cpuid(0x80000002 + i, r[i * 4], r[i * 4 + 1], r[i * 4 + 2], r[i * 4 + 3]);
	memcpy(brand, r, 48);
}

struct kvm_cpuid_entry2 *cpuid_find(struct cpuid_set *set, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < set->nent; i++) {
		struct kvm_cpuid_entry2 *ent = &set->entries[i];
		if (ent->function == function &&
		    (!(ent->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || ent->index == index))
			return ent;
	}
	return NULL;
}

/* Bits needed to hold ids 0..n-1. */
static unsigned id_bits(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

static void topology_leaf(struct kvm_cpuid_entry2 *ent, unsigned apic_id, unsigned count,
			  unsigned threads)
{
	switch (ent->index) {
	case 0: /* SMT level: `threads` per core */
		ent->eax = id_bits(threads);
		ent->ebx = threads;
		ent->ecx = (TOPO_LEVEL_SMT << 8) | ent->index;
		break;
	case 1: /* core level: all vCPUs in one package */
		ent->eax = id_bits(count);
		ent->ebx = count;
		ent->ecx = (TOPO_LEVEL_CORE << 8) | ent->index;
		break;
	default: /* no further levels */
		ent->eax = 0;
		ent->ebx = 0;
		ent->ecx = ent->index;
		break;
	}
	ent->edx = apic_id;
}

static void set_cache_sharing(struct kvm_cpuid_entry2 *ent, unsigned count, unsigned threads,
			      bool intel)
{
	unsigned type = ent->eax & 0x1f;
	unsigned level = (ent->eax >> 5) & 0x7;
	if (!type)
		return;
	/* EAX[25:14]: logical processors sharing this cache, minus one: the
	 * package's for L3, a core's threads for L1 and L2. */
	unsigned sharing = level >= 3 ? count - 1 : threads - 1;
	ent->eax = (ent->eax & ~(0xfffu << 14)) | (sharing << 14);
	/* Intel's EAX[31:26]: cores in the package, minus one. */
	if (intel)
		ent->eax = (ent->eax & 0x03ffffffu) | ((count / threads - 1) << 26);
}

void cpuid_normalize(struct cpuid_set *set, unsigned index, unsigned count, bool smt,
		     const char brand[48])
{
	/* As Firecracker: SMT pairs vCPUs 2k and 2k+1 as the two threads of
	 * core k (vcpu_count is 1 or even then); one vCPU is one thread. */
	unsigned threads = smt && count > 1 ? 2 : 1;
	struct kvm_cpuid_entry2 *v = cpuid_find(set, 0, 0);
	bool intel = v && v->ebx == 0x756e6547; /* "Genu" */
	unsigned apic_id = index;

	for (uint32_t i = 0; i < set->nent; i++) {
		struct kvm_cpuid_entry2 *ent = &set->entries[i];
		switch (ent->function) {
		case 0x1:
			ent->ebx = (apic_id << 24) | (count << 16) | (CLFLUSH_LINE_QWORDS << 8);
			/* Firecracker's normalisation: no perfmon capabilities MSR;
			 * the TSC deadline timer, which KVM always emulates
			 * (KVM_CAP_TSC_DEADLINE_TIMER) but does not report. Without
			 * it Linux programs the LAPIC timer in one-shot mode. */
			ent->ecx &= ~LEAF1_ECX_PDCM;
			ent->ecx |= LEAF1_ECX_TSC_DEADLINE | LEAF1_ECX_HYPERVISOR;
			if (count > 1)
				ent->edx |= LEAF1_EDX_HTT;
			else
				ent->edx &= ~LEAF1_EDX_HTT;
			break;
		case 0x4:
			set_cache_sharing(ent, count, threads, intel);
			break;
		case 0x6: /* Intel: no turbo, no frequency selection in a VM */
			if (intel) {
				ent->eax &= ~LEAF6_EAX_TURBO;
				ent->ecx &= ~LEAF6_ECX_FREQ_SELECTION;
			}
			break;
		case 0x7:
			if (ent->index != 0)
				break;
			if (intel) {
				/* As Firecracker's Intel normalisation: FPU CS/DS
				 * deprecated, FDP updated on exceptions only, no
				 * WAITPKG (UMONITOR/UMWAIT/TPAUSE). */
				ent->ebx |= LEAF7_EBX_FDP_EXCPTN_ONLY | LEAF7_EBX_FPU_CS_DS_DEPRECATED;
				ent->ecx &= ~LEAF7_ECX_WAITPKG;
			} else {
				/* AMD has no IA32_ARCH_CAPABILITIES MSR. */
				ent->edx &= ~LEAF7_EDX_ARCH_CAPABILITIES;
			}
			break;
		case 0xa: /* no virtual PMU */
			ent->eax = ent->ebx = ent->ecx = ent->edx = 0;
			break;
		case 0xb:
		case 0x1f:
			topology_leaf(ent, apic_id, count, threads);
			break;
		case 0x40000000:
			ent->ebx = 0x4b4d564b; /* "KVMKVMKVM\0\0\0" */
			ent->ecx = 0x564b4d56;
			ent->edx = 0x4d;
			break;
		case 0x80000002:
		case 0x80000003:
		case 0x80000004: {
			const char *b = brand + (ent->function - 0x80000002) * 16;
			memcpy(&ent->eax, b, 4);
			memcpy(&ent->ebx, b + 4, 4);
			memcpy(&ent->ecx, b + 8, 4);
			memcpy(&ent->edx, b + 12, 4);
			break;
		}
		case 0x80000008: /* AMD: NC and ApicIdSize */
			if (!intel)
				ent->ecx = (ent->ecx & ~0xf0ffu) | (id_bits(count) << 12) | (count - 1);
			break;
		case 0x8000001d:
			if (!intel)
				set_cache_sharing(ent, count, threads, false);
			break;
		case 0x8000001e: /* AMD: extended APIC id, core id, threads per core, one node */
			if (!intel) {
				ent->eax = apic_id;
				ent->ebx = ((threads - 1) << 8) | ((apic_id / threads) & 0xff);
				ent->ecx = 0;
			}
			break;
		default:
			break;
		}
	}
}

/* Sets or adds leaf/subleaf in set from the host's CPUID; false if full. */
static bool put_host_leaf(struct cpuid_set *set, uint32_t function, uint32_t index, uint32_t flags)
{
	struct kvm_cpuid_entry2 *ent = cpuid_find(set, function, index);
	if (!ent) {
		if (set->nent >= CPUID_MAX_ENTRIES)
			return false;
		ent = &set->entries[set->nent++];
	}
	unsigned r[4];
	__cpuid_count(function, index, r[0], r[1], r[2], r[3]);
	*ent = (struct kvm_cpuid_entry2){.function = function, .index = index, .flags = flags,
					 .eax = r[0], .ebx = r[1], .ecx = r[2], .edx = r[3]};
	return true;
}

void cpuid_amd_topology_ext(struct cpuid_set *set)
{
	struct kvm_cpuid_entry2 *v = cpuid_find(set, 0, 0);
	struct kvm_cpuid_entry2 *ext = cpuid_find(set, 0x80000001, 0);
	unsigned a, b, c, d;
	__cpuid(0, a, b, c, d);
	/* Only on an AMD host, whose CPUID has these leaves (Firecracker's
	 * check: elsewhere 0x8000001d's walk might never end). */
	if (!v || v->ebx != 0x68747541 /* "Auth" */ || b != 0x68747541 || !ext)
		return;
	__cpuid(0x80000000, a, b, c, d);
	if (a < 0x8000001e)
		return;
	if (!put_host_leaf(set, 0x8000001e, 0, 0))
		return;
	/* Cache levels until the null type, at most 8. */
	for (uint32_t i = 0; i < 8; i++) {
		unsigned r[4];
		__cpuid_count(0x8000001d, i, r[0], r[1], r[2], r[3]);
		if (!(r[0] & 0x1f) || !put_host_leaf(set, 0x8000001d, i, KVM_CPUID_FLAG_SIGNIFCANT_INDEX))
			break;
	}
	ext->ecx |= LEAF80000001_ECX_TOPOEXT;
}
