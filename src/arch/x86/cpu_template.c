/* Custom CPU templates: parsing and applying (see cpu_template.h). */
#include "arch/x86/cpu_template.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <string.h>

#include "arch/x86/msr.h"
#include "util/json_strict.h"

int cpu_bitmap_parse(const char *s, unsigned bits, uint64_t *mask, uint64_t *value, ember_err *e)
{
	const char *digits = strncmp(s, "0b", 2) ? s : s + 2;
	size_t len = strlen(digits);
	unsigned bit = 0;
	*mask = *value = 0;
	/* From the right: the last character is bit 0. */
	for (size_t i = len; i-- > 0;) {
		char c = digits[i];
		if (c == '_')
			continue;
		if (bit == bits)
			return err_set(e, "Failed to parse string [%.80s] as a bitmap - string is too "
				       "long", s);
		if (c == '0' || c == '1') {
			*mask |= 1ULL << bit;
			if (c == '1')
				*value |= 1ULL << bit;
		} else if (c != 'x') {
			return err_set(e, "Failed to parse string [%.80s] as a bitmap - unknown "
				       "character: %c", s, c >= 0x20 && c < 0x7f ? c : '?');
		}
		bit++;
	}
	return 0;
}

int cpu_number_parse(const char *s, unsigned bits, uint64_t *out, ember_err *e)
{
	unsigned base = !strncmp(s, "0x", 2) ? 16 : !strncmp(s, "0b", 2) ? 2 : 0;
	if (!base)
		return err_set(e, "No supported number system prefix found in value [%.80s]. Make "
			       "sure to prefix the number with '0x' for hexadecimal numbers or '0b' "
			       "for binary numbers.", s);
	const char *p = s + 2;
	uint64_t v = 0, limit = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
	if (!*p)
		goto bad;
	for (; *p; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (*p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			goto bad;
		if (d >= base || v > (limit - d) / base)
			goto bad;
		v = v * base + d;
	}
	*out = v;
	return 0;
bad:
	return err_set(e, "Failed to parse string [%.80s] as a number for CPU template", s);
}

/* `what` names the field for messages. */
static const char *string_field(json_t *obj, const char *key, const char *what, ember_err *e)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		err_set(e, "%s: missing field `%s`", what, key);
		return NULL;
	}
	if (!json_is_string(v)) {
		err_set(e, "%s: %s: expected string, got %s", what, key, json_type_name(v));
		return NULL;
	}
	return json_string_value(v);
}

static int only_keys(json_t *obj, const char *what, const char *const *keys, ember_err *e)
{
	if (!json_is_object(obj))
		return err_set(e, "%s: expected an object, got %s", what, json_type_name(obj));
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		size_t i;
		for (i = 0; keys[i] && strcmp(keys[i], key); i++)
			;
		if (!keys[i])
			return err_set(e, "%s: unknown field `%s`", what, key);
	}
	return 0;
}

static json_t *array_field(json_t *obj, const char *key, size_t max, ember_err *e)
{
	json_t *a = json_object_get(obj, key);
	if (!a)
		return NULL;
	if (!json_is_array(a)) {
		err_set(e, "cpu-config: %s: expected array, got %s", key, json_type_name(a));
		return NULL;
	}
	if (json_array_size(a) > max) {
		err_set(e, "cpu-config: %s: at most %zu entries", key, max);
		return NULL;
	}
	return a;
}

static int parse_cpuid_modifier(json_t *j, struct cpuid_modifier *m, ember_err *e)
{
	static const char *const keys[] = {"leaf", "subleaf", "flags", "modifiers", NULL};
	static const char *const regs[] = {"eax", "ebx", "ecx", "edx"};
	const char *what = "cpu-config: cpuid_modifiers";
	if (only_keys(j, what, keys, e))
		return -1;
	const char *leaf = string_field(j, "leaf", what, e);
	const char *subleaf = leaf ? string_field(j, "subleaf", what, e) : NULL;
	uint64_t v;
	if (!subleaf)
		return -1;
	memset(m, 0, sizeof(*m));
	if (cpu_number_parse(leaf, 32, &v, e))
		return -1;
	m->leaf = (uint32_t)v;
	if (cpu_number_parse(subleaf, 32, &v, e))
		return -1;
	m->subleaf = (uint32_t)v;
	json_t *flags = json_object_get(j, "flags");
	if (!flags)
		return err_set(e, "%s: missing field `flags`", what);
	if (!json_is_integer(flags) || json_integer_value(flags) < 0 ||
	    json_integer_value(flags) > UINT32_MAX)
		return err_set(e, "%s: flags: expected an integer from 0 to 4294967295", what);
	m->flags = (uint32_t)json_integer_value(flags);
	json_t *mods = json_object_get(j, "modifiers");
	if (!mods)
		return err_set(e, "%s: missing field `modifiers`", what);
	if (!json_is_array(mods) || json_array_size(mods) > 4)
		return err_set(e, "%s: modifiers: expected an array of at most 4 registers", what);
	size_t i;
	json_t *r;
	json_array_foreach(mods, i, r) {
		static const char *const rkeys[] = {"register", "bitmap", NULL};
		if (only_keys(r, what, rkeys, e))
			return -1;
		const char *name = string_field(r, "register", what, e);
		const char *bitmap = name ? string_field(r, "bitmap", what, e) : NULL;
		if (!bitmap)
			return -1;
		unsigned k;
		for (k = 0; k < 4 && strcmp(name, regs[k]); k++)
			;
		if (k == 4)
			return err_set(e, "%s: register: unknown variant `%.16s`, expected one of "
				       "`eax`, `ebx`, `ecx`, `edx`", what, name);
		uint64_t mask, value;
		if (cpu_bitmap_parse(bitmap, 32, &mask, &value, e))
			return -1;
		m->has_reg[k] = true;
		m->reg[k] = (struct cpu_bits32){(uint32_t)mask, (uint32_t)value};
	}
	return 0;
}

int cpu_template_parse(json_t *j, struct cpu_template *out, ember_err *e)
{
	static const char *const keys[] = {"kvm_capabilities", "cpuid_modifiers", "msr_modifiers",
					   NULL};
	if (only_keys(j, "cpu-config", keys, e))
		return -1;
	memset(out, 0, sizeof(*out));
	json_t *a;
	size_t i;
	json_t *v;
	e->msg[0] = 0;
	if ((a = array_field(j, "kvm_capabilities", CPU_TEMPLATE_MAX_MODIFIERS, e))) {
		json_array_foreach(a, i, v) {
			const char *s = json_string_value(v);
			bool remove = s && s[0] == '!';
			char *end;
			if (!s || !s[remove] || s[remove] < '0' || s[remove] > '9')
				return err_set(e, "cpu-config: kvm_capabilities: \"N\" or \"!N\" with "
					       "N a decimal number");
			unsigned long long cap = strtoull(s + remove, &end, 10);
			if (*end || cap > UINT32_MAX)
				return err_set(e, "cpu-config: kvm_capabilities: \"%.20s\" is not a "
					       "capability number", s);
			out->caps[out->n_caps++] = remove ? -(int64_t)cap - 1 : (int64_t)cap;
		}
	} else if (e->msg[0]) {
		return -1;
	}
	if ((a = array_field(j, "cpuid_modifiers", CPU_TEMPLATE_MAX_MODIFIERS, e))) {
		json_array_foreach(a, i, v)
			if (parse_cpuid_modifier(v, &out->cpuid[out->n_cpuid++], e))
				return -1;
	} else if (e->msg[0]) {
		return -1;
	}
	if ((a = array_field(j, "msr_modifiers", CPU_TEMPLATE_MAX_MODIFIERS, e))) {
		static const char *const mkeys[] = {"addr", "bitmap", NULL};
		const char *what = "cpu-config: msr_modifiers";
		json_array_foreach(a, i, v) {
			if (only_keys(v, what, mkeys, e))
				return -1;
			const char *addr = string_field(v, "addr", what, e);
			const char *bitmap = addr ? string_field(v, "bitmap", what, e) : NULL;
			struct msr_modifier *m = &out->msr[out->n_msr++];
			uint64_t n;
			if (!bitmap || cpu_number_parse(addr, 32, &n, e) ||
			    cpu_bitmap_parse(bitmap, 64, &m->bits.mask, &m->bits.value, e))
				return -1;
			m->addr = (uint32_t)n;
		}
	} else if (e->msg[0]) {
		return -1;
	}
	return 0;
}

int cpu_template_apply_cpuid(const struct cpu_template *t, struct cpuid_set *set, ember_err *e)
{
	/* Check every leaf first, so that a failure changes nothing. */
	for (size_t i = 0; i < t->n_cpuid; i++)
		if (!cpuid_find(set, t->cpuid[i].leaf, t->cpuid[i].subleaf))
			return err_set(e, "cpu-config: CPUID leaf %#x subleaf %#x is not supported "
				       "by this host's KVM", t->cpuid[i].leaf, t->cpuid[i].subleaf);
	for (size_t i = 0; i < t->n_cpuid; i++) {
		const struct cpuid_modifier *m = &t->cpuid[i];
		struct kvm_cpuid_entry2 *entry = cpuid_find(set, m->leaf, m->subleaf);
		uint32_t *regs[4] = {&entry->eax, &entry->ebx, &entry->ecx, &entry->edx};
		entry->flags = m->flags;
		for (unsigned k = 0; k < 4; k++)
			if (m->has_reg[k])
				*regs[k] = (*regs[k] & ~m->reg[k].mask) | (m->reg[k].value & m->reg[k].mask);
	}
	return 0;
}

bool cpu_template_msr(const struct cpu_template *t, uint32_t addr, uint64_t *value)
{
	bool hit = false;
	for (size_t i = 0; i < t->n_msr; i++) /* in order: a later one builds on an earlier */
		if (t->msr[i].addr == addr) {
			const struct cpu_bits64 *b = &t->msr[i].bits;
			*value = (*value & ~b->mask) | (b->value & b->mask);
			hit = true;
		}
	return hit;
}

int cpu_template_check_caps(const struct cpu_template *t, int kvm_fd, ember_err *e)
{
	for (size_t i = 0; i < t->n_caps; i++) {
		if (t->caps[i] < 0)
			continue;
		int r = ioctl(kvm_fd, KVM_CHECK_EXTENSION, (unsigned long)t->caps[i]);
		if (r <= 0)
			return err_set(e, "cpu-config: this host's KVM lacks capability %lld, which "
				       "the CPU template requires", (long long)t->caps[i]);
	}
	return 0;
}

int cpu_template_apply_msrs(const struct cpu_template *t, const int *vcpu_fds, size_t n,
			    ember_err *e)
{
	uint32_t addr[CPU_TEMPLATE_MAX_MODIFIERS];
	uint64_t value[CPU_TEMPLATE_MAX_MODIFIERS];
	size_t k = 0;
	for (size_t i = 0; i < t->n_msr; i++) { /* each MSR once */
		size_t j = 0;
		while (j < k && addr[j] != t->msr[i].addr)
			j++;
		if (j == k)
			addr[k++] = t->msr[i].addr;
	}
	if (!k || !n)
		return 0;
	if (msr_get(vcpu_fds[0], addr, value, k, e))
		return err_prefix(e, "cpu-config: reading the template's MSRs");
	for (size_t j = 0; j < k; j++)
		cpu_template_msr(t, addr[j], &value[j]);
	for (size_t i = 0; i < n; i++)
		if (msr_set(vcpu_fds[i], addr, value, k, e))
			return err_prefix(e, "cpu-config: vCPU %zu: writing the template's MSRs", i);
	return 0;
}
