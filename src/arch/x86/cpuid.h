/* CPUID as the guest sees it: KVM's supported set, normalised so each vCPU
 * reports its own APIC id, a topology of `count` vCPUs in one package (one
 * thread per core, or two with SMT), the hypervisor bit, KVM's signature and the host's brand string. */
#ifndef EMBER_X86_CPUID_H
#define EMBER_X86_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"

#define CPUID_MAX_ENTRIES 256

/* The entries of a struct kvm_cpuid2, kept in a fixed array (kvm_cpuid2
 * ends in a flexible array and cannot be embedded). */
struct cpuid_set {
	uint32_t nent;
	struct kvm_cpuid_entry2 entries[CPUID_MAX_ENTRIES];
};

/* KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd. */
int cpuid_supported(int kvm_fd, struct cpuid_set *out, ember_err *e);
/* KVM_SET_CPUID2 on a vCPU fd. */
int cpuid_set_vcpu(int vcpu_fd, const struct cpuid_set *set, ember_err *e);

/* The host's 48-byte brand string (leaves 0x80000002-4). */
void cpuid_host_brand(char brand[48]);

/* Rewrites `set` in place for vCPU `index` of `count` (two threads per
 * core with smt). */
void cpuid_normalize(struct cpuid_set *set, unsigned index, unsigned count, bool smt,
		     const char brand[48]);

/* On an AMD host, the topology extensions Linux reads SMT from (as
 * Firecracker's AMD normalisation: leaves 0x8000001e and 0x8000001d from
 * the host, and the TOPOEXT bit); without them a Linux guest sees one
 * thread per core whatever leaf 0xb says. Nothing elsewhere. */
void cpuid_amd_topology_ext(struct cpuid_set *set);

/* Finds leaf/subleaf in set, or NULL. */
struct kvm_cpuid_entry2 *cpuid_find(struct cpuid_set *set, uint32_t function, uint32_t index);

#endif
