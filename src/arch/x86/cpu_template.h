/* Firecracker's custom CPU templates (PUT /cpu-config, the config file's
 * "cpu-config"): CPUID and MSR modifiers, each a bitmap of the register's
 * bits to clear ('0'), set ('1') or leave ('x'), read from the right; a
 * shorter bitmap leaves the high bits alone, '_' separates, "0b" is
 * optional. Parsing is strict and every string is hostile. Firecracker's
 * static templates (machine-config "cpu_template") are the same modifiers,
 * kept as data in cpu_static_templates.c. */
#ifndef EMBER_X86_CPU_TEMPLATE_H
#define EMBER_X86_CPU_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "arch/x86/cpuid.h"
#include "util/err.h"

#define CPU_TEMPLATE_MAX_MODIFIERS 256

/* Bits in `mask` take the bits of `value`; the others stay. */
struct cpu_bits32 {
	uint32_t mask, value;
};
struct cpu_bits64 {
	uint64_t mask, value;
};

enum cpuid_reg { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX };

struct cpuid_modifier {
	uint32_t leaf, subleaf, flags;
	bool has_reg[4];
	struct cpu_bits32 reg[4]; /* by enum cpuid_reg */
};

struct msr_modifier {
	uint32_t addr;
	struct cpu_bits64 bits;
};

struct cpu_template {
	size_t n_cpuid, n_msr, n_caps;
	struct cpuid_modifier cpuid[CPU_TEMPLATE_MAX_MODIFIERS];
	struct msr_modifier msr[CPU_TEMPLATE_MAX_MODIFIERS];
	/* KVM capabilities to check (positive) or not to check ("!N": negative). */
	int64_t caps[CPU_TEMPLATE_MAX_MODIFIERS];
};

/* Checks the KVM capabilities the template names ("N": must be there;
 * "!N": Firecracker's "do not check" - Ember checks none by default). */
int cpu_template_check_caps(const struct cpu_template *t, int kvm_fd, ember_err *e);
/* The template's MSRs: read from the first vCPU (after its CPUID is set),
 * modified, then written to every vCPU, as Firecracker does. */
int cpu_template_apply_msrs(const struct cpu_template *t, const int *vcpu_fds, size_t n,
			    ember_err *e);

/* machine-config's "cpu_template" (deprecated by Firecracker, still
 * served). */
enum cpu_static_template {
	CPU_TEMPLATE_NONE,
	CPU_TEMPLATE_C3,
	CPU_TEMPLATE_T2,
	CPU_TEMPLATE_T2S,
	CPU_TEMPLATE_T2CL,
	CPU_TEMPLATE_T2A,
};

/* "None", "C3", ...: 0, or -1 for a name that is not one. */
int cpu_static_template_parse(const char *name, enum cpu_static_template *out);
const char *cpu_static_template_name(enum cpu_static_template t);
/* Whether the host (its CPUID vendor string and leaf 1 EAX) may run
 * template t, as Firecracker decides it; -1 and e set with Firecracker's
 * words if not. */
int cpu_static_template_check(enum cpu_static_template t, const char vendor[12], uint32_t leaf1_eax,
			      ember_err *e);
/* Template t's modifiers. */
void cpu_static_template_get(enum cpu_static_template t, struct cpu_template *out);
/* This host's CPUID vendor string and leaf 1 EAX. */
void cpu_host_identity(char vendor[12], uint32_t *leaf1_eax);

/* One bitmap of at most `bits` bits; -1 and e set if malformed. */
int cpu_bitmap_parse(const char *s, unsigned bits, uint64_t *mask, uint64_t *value, ember_err *e);
/* A number as a string, "0x..." or "0b...", that fits in `bits` bits. */
int cpu_number_parse(const char *s, unsigned bits, uint64_t *out, ember_err *e);

/* The template object; on failure *out is unspecified and e names the field. */
int cpu_template_parse(json_t *j, struct cpu_template *out, ember_err *e);

/* Applies the CPUID modifiers to set (each leaf/subleaf must be in it, as
 * Firecracker requires). -1 and e set, set unchanged, if one is not. */
int cpu_template_apply_cpuid(const struct cpu_template *t, struct cpuid_set *set, ember_err *e);
/* The value an MSR modifier gives `addr`, from its current value; false if
 * the template does not touch it. */
bool cpu_template_msr(const struct cpu_template *t, uint32_t addr, uint64_t *value);

#endif
