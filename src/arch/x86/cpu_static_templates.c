/* Firecracker's static CPU templates (machine-config "cpu_template": C3, T2,
 * T2S, T2CL, T2A) as data: each makes the guest's CPUID look like the EC2
 * instance family it is named after, by forcing the bits of each register
 * in `mask` to those of `value` (CPUID leaf 1 EAX: the family, model and
 * stepping shown; leaves 7, 0xd, 0x80000001 and 0x80000008: features
 * hidden). T2S and T2CL also set IA32_ARCH_CAPABILITIES (MSR 0x10a). The
 * bits are Firecracker's (src/vmm/src/cpu_config/x86_64/
 * static_cpu_templates/, where each one is annotated). */
#include "arch/x86/cpu_template.h"

#include <cpuid.h>
#include <string.h>

struct static_cpuid_bits {
	uint32_t leaf, subleaf, flags;
	enum cpuid_reg reg;
	uint32_t mask, value;
};

struct static_msr_bits {
	uint32_t addr;
	uint64_t mask, value;
};

static const struct static_cpuid_bits c3_cpuid[] = {
	{0x1, 0x0, 0, CPUID_EAX, 0x0fff3fff, 0x000306e4},
	{0x1, 0x0, 0, CPUID_ECX, 0x0040dd3c, 0x00000000},
	{0x1, 0x0, 0, CPUID_EDX, 0xa8641080, 0x00001080},
	{0x7, 0x0, 1, CPUID_EBX, 0xffafdd3c, 0x00000000},
	{0x7, 0x0, 1, CPUID_ECX, 0x4041481e, 0x00000000},
	{0x7, 0x0, 1, CPUID_EDX, 0x0000000c, 0x00000000},
	{0xd, 0x0, 1, CPUID_EAX, 0x000002f8, 0x00000000},
	{0xd, 0x1, 1, CPUID_EAX, 0x0000000e, 0x00000000},
	{0x80000001, 0x0, 0, CPUID_ECX, 0x00000120, 0x00000000},
	{0x80000001, 0x0, 0, CPUID_EDX, 0x04000000, 0x00000000},
};

/* Leaves 1, 7 and 0xd are the same in the four T2 templates; they differ
 * in the extended leaves. */
static const struct static_cpuid_bits t2_family_cpuid[] = {
	{0x1, 0x0, 0, CPUID_EAX, 0x0fff3fff, 0x000306f2},
	{0x1, 0x0, 0, CPUID_ECX, 0x0004cdfc, 0x00000000},
	{0x1, 0x0, 0, CPUID_EDX, 0xe8641080, 0x00001080},
	{0x7, 0x0, 1, CPUID_EBX, 0xffefda14, 0x00000200},
	{0x7, 0x0, 1, CPUID_ECX, 0x40415f5e, 0x00000000},
	{0x7, 0x0, 1, CPUID_EDX, 0x0000011c, 0x00000000},
	{0xd, 0x0, 1, CPUID_EAX, 0x000002f8, 0x00000000},
	{0xd, 0x1, 1, CPUID_EAX, 0x0000000e, 0x00000000},
};

static const struct static_cpuid_bits t2_cpuid[] = { /* T2 and T2S */
	{0x80000001, 0x0, 0, CPUID_ECX, 0x20000100, 0x00000000},
	{0x80000001, 0x0, 0, CPUID_EDX, 0x04000000, 0x00000000},
	{0x80000008, 0x0, 0, CPUID_EBX, 0x00000200, 0x00000000},
};

static const struct static_cpuid_bits t2cl_cpuid[] = {
	{0x80000001, 0x0, 0, CPUID_ECX, 0x200001c0, 0x00000000},
	{0x80000001, 0x0, 0, CPUID_EDX, 0x07c00000, 0x00000000},
	{0x80000008, 0x0, 0, CPUID_EBX, 0x00000200, 0x00000000},
};

static const struct static_cpuid_bits t2a_cpuid[] = {
	{0x80000001, 0x0, 0, CPUID_ECX, 0x200001c4, 0x00000000},
	{0x80000001, 0x0, 0, CPUID_EDX, 0x06400000, 0x00000000},
	{0x80000008, 0x0, 0, CPUID_EBX, 0x001c0205, 0x001c0004},
};

/* IA32_ARCH_CAPABILITIES: T2S sets it whole; T2CL clears what KVM does not
 * pass through and keeps the host's mitigation bits. */
static const struct static_msr_bits t2s_msr[] = {
	{0x10a, 0xffffffffffffffffULL, 0x000000000c0a0c4cULL},
};
static const struct static_msr_bits t2cl_msr[] = {
	{0x10a, 0xffffffffe2f51e00ULL, 0x0000000000000000ULL},
};

/* A processor's family/model/stepping as CPUID leaf 1 EAX shows them,
 * without the reserved and processor-type bits. */
#define FMS(eax) ((eax) & 0x0fff0fffu)
#define SKYLAKE FMS(0x00050654u)
#define CASCADE_LAKE FMS(0x00050657u)
#define ICE_LAKE FMS(0x000606a6u)
#define MILAN FMS(0x00a00f11u)

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A table and its length. */
#define PART(a) {a, N(a)}

struct cpuid_part {
	const struct static_cpuid_bits *bits;
	size_t n;
};

static const struct {
	const char *name;
	bool intel; /* the host vendor it runs on: Intel, or AMD */
	uint32_t models[3]; /* the host models it runs on; 0 ends */
	struct cpuid_part cpuid[2];
	const struct static_msr_bits *msr;
	size_t n_msr;
} templates[] = {
	[CPU_TEMPLATE_NONE] = {"None", false, {0}, {{0}}, NULL, 0},
	[CPU_TEMPLATE_C3] = {"C3", true, {SKYLAKE, CASCADE_LAKE, ICE_LAKE}, {PART(c3_cpuid)},
			     NULL, 0},
	[CPU_TEMPLATE_T2] = {"T2", true, {SKYLAKE, CASCADE_LAKE, ICE_LAKE},
			     {PART(t2_family_cpuid), PART(t2_cpuid)}, NULL, 0},
	[CPU_TEMPLATE_T2S] = {"T2S", true, {SKYLAKE, CASCADE_LAKE},
			      {PART(t2_family_cpuid), PART(t2_cpuid)}, t2s_msr, N(t2s_msr)},
	[CPU_TEMPLATE_T2CL] = {"T2CL", true, {CASCADE_LAKE, ICE_LAKE},
			       {PART(t2_family_cpuid), PART(t2cl_cpuid)}, t2cl_msr, N(t2cl_msr)},
	[CPU_TEMPLATE_T2A] = {"T2A", false, {MILAN}, {PART(t2_family_cpuid), PART(t2a_cpuid)},
			      NULL, 0},
};

int cpu_static_template_parse(const char *name, enum cpu_static_template *out)
{
	for (size_t i = 0; i < N(templates); i++)
		if (!strcmp(name, templates[i].name)) {
			*out = (enum cpu_static_template)i;
			return 0;
		}
	return -1;
}

const char *cpu_static_template_name(enum cpu_static_template t)
{
	return (size_t)t < N(templates) ? templates[t].name : "None";
}

int cpu_static_template_check(enum cpu_static_template t, const char vendor[12], uint32_t leaf1_eax,
			      ember_err *e)
{
	if (t == CPU_TEMPLATE_NONE || (size_t)t >= N(templates))
		return err_set(e, "Failed to get CPU template: Invalid static CPU template: None");
	bool intel = !memcmp(vendor, "GenuineIntel", 12);
	bool amd = !memcmp(vendor, "AuthenticAMD", 12);
	if (templates[t].intel ? !intel : !amd)
		return err_set(e, "Failed to get CPU template: CPU vendor mismatched between actual "
			       "CPU and CPU template.");
	for (size_t i = 0; i < N(templates[t].models) && templates[t].models[i]; i++)
		if (templates[t].models[i] == FMS(leaf1_eax))
			return 0;
	return err_set(e, "Failed to get CPU template: The current CPU model is not permitted to "
		       "apply the CPU template.");
}

/* Adds a table's bits: one modifier per leaf/subleaf, as a custom template
 * has them. */
static void add_cpuid_part(const struct cpuid_part *part, struct cpu_template *out)
{
	for (size_t i = 0; i < part->n; i++) {
		const struct static_cpuid_bits *b = &part->bits[i];
		struct cpuid_modifier *m = NULL;
		for (size_t k = 0; k < out->n_cpuid; k++)
			if (out->cpuid[k].leaf == b->leaf && out->cpuid[k].subleaf == b->subleaf)
				m = &out->cpuid[k];
		if (!m) {
			m = &out->cpuid[out->n_cpuid++];
			m->leaf = b->leaf;
			m->subleaf = b->subleaf;
			m->flags = b->flags;
		}
		m->has_reg[b->reg] = true;
		m->reg[b->reg] = (struct cpu_bits32){b->mask, b->value};
	}
}

void cpu_static_template_get(enum cpu_static_template t, struct cpu_template *out)
{
	memset(out, 0, sizeof(*out));
	if ((size_t)t >= N(templates))
		return;
	for (size_t p = 0; p < N(templates[t].cpuid); p++)
		add_cpuid_part(&templates[t].cpuid[p], out);
	for (size_t i = 0; i < templates[t].n_msr; i++) {
		const struct static_msr_bits *b = &templates[t].msr[i];
		out->msr[out->n_msr++] = (struct msr_modifier){b->addr, {b->mask, b->value}};
	}
}

void cpu_host_identity(char vendor[12], uint32_t *leaf1_eax)
{
	unsigned a, b, c, d;
	__cpuid(0, a, b, c, d);
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &d, 4);
	memcpy(vendor + 8, &c, 4);
	__cpuid(1, a, b, c, d);
	*leaf1_eax = a;
}
