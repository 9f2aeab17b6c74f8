#include "arch/x86/kvm_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "util/blob.h"
#include "util/log.h"

/* The fixed-size structures, each with its get and set ioctl. */
#define FIXED_STATES(X)                                                         \
	X(regs, struct kvm_regs, KVM_GET_REGS, KVM_SET_REGS)                    \
	X(sregs, struct kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS)                \
	X(xsave, struct kvm_xsave, KVM_GET_XSAVE, KVM_SET_XSAVE)                \
	X(xcrs, struct kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS)                    \
	X(lapic, struct kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC)          \
	X(mp_state, struct kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE)    \
	X(events, struct kvm_vcpu_events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS) \
	X(debugregs, struct kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS)

static int put_blob(json_t *o, const char *key, const void *p, size_t n, ember_err *e)
{
	json_t *b = blob_json(p, n);
	if (!b || json_object_set_new(o, key, b))
		return err_set(e, "out of memory saving %s", key);
	return 0;
}

static int get_fixed(int fd, unsigned long req, const char *name, json_t *o, size_t size,
		     ember_err *e)
{
	void *buf = calloc(1, size);
	if (!buf)
		return err_set(e, "out of memory");
	int rc = 0;
	if (ioctl(fd, req, buf) < 0)
		rc = err_set(e, "KVM_GET_%s: %s", name, strerror(errno));
	else
		rc = put_blob(o, name, buf, size, e);
	free(buf);
	return rc;
}

static int set_fixed(int fd, unsigned long req, const char *name, json_t *o, size_t size,
		     ember_err *e)
{
	void *buf = calloc(1, size);
	if (!buf)
		return err_set(e, "out of memory");
	int rc = blob_get(o, name, buf, size, e);
	if (!rc && ioctl(fd, req, buf) < 0)
		rc = err_set(e, "KVM_SET_%s: %s", name, strerror(errno));
	free(buf);
	return rc;
}

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* As Firecracker: a TSC deadline of 0 (disarmed, or just fired and not yet
 * re-armed) becomes the current TSC, so that a timer interrupt lost at the
 * snapshot fires at once after the restore instead of never. */
static void fix_tsc_deadline(struct kvm_msr_entry *m, size_t n)
{
	uint64_t tsc = 0;
	bool have_tsc = false;
	for (size_t i = 0; i < n; i++)
		if (m[i].index == MSR_IA32_TSC) {
			tsc = m[i].data;
			have_tsc = true;
		}
	for (size_t i = 0; i < n && have_tsc; i++)
		if (m[i].index == MSR_IA32_TSC_DEADLINE && m[i].data == 0)
			m[i].data = tsc;
}

static struct kvm_msrs *msrs_alloc(void)
{
	return calloc(1, sizeof(struct kvm_msrs) + KVM_STATE_MAX_MSRS * sizeof(struct kvm_msr_entry));
}

/* MSRs KVM says it saves and restores (KVM_GET_MSR_INDEX_LIST); those a
 * read refuses on this vCPU are left out. */
static int save_msrs(int kvm_fd, int vcpu_fd, json_t *o, ember_err *e)
{
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + KVM_STATE_MAX_MSRS * sizeof(uint32_t));
	struct kvm_msrs *batch = msrs_alloc();
	struct kvm_msr_entry *kept = calloc(KVM_STATE_MAX_MSRS, sizeof(*kept));
	int rc = 0;
	size_t nkept = 0;
	if (!list || !batch || !kept) {
		rc = err_set(e, "out of memory");
		goto out;
	}
	list->nmsrs = KVM_STATE_MAX_MSRS;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		rc = err_set(e, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		goto out;
	}
	size_t n = list->nmsrs;
	/* KVM_GET_MSRS stops at the first MSR it cannot read: keep what came
	 * before it, skip it, and go on from the next. */
	for (size_t i = 0; i < n;) {
		size_t want = n - i;
		for (size_t k = 0; k < want; k++)
			batch->entries[k] = (struct kvm_msr_entry){.index = list->indices[i + k]};
		batch->nmsrs = (uint32_t)want;
		int r = ioctl(vcpu_fd, KVM_GET_MSRS, batch);
		if (r < 0) {
			rc = err_set(e, "KVM_GET_MSRS: %s", strerror(errno));
			goto out;
		}
		memcpy(&kept[nkept], batch->entries, (size_t)r * sizeof(*kept));
		nkept += (size_t)r;
		i += (size_t)r + ((size_t)r < want);
	}
	fix_tsc_deadline(kept, nkept);
	rc = put_blob(o, "msrs", kept, nkept * sizeof(*kept), e);
out:
	free(list);
	free(batch);
	free(kept);
	return rc;
}

static int restore_msrs(int vcpu_fd, json_t *o, ember_err *e)
{
	struct kvm_msrs *b = msrs_alloc();
	struct kvm_msr_entry *all = calloc(KVM_STATE_MAX_MSRS, sizeof(*all));
	size_t len = 0;
	int rc = b && all ? 0 : err_set(e, "out of memory");
	if (!rc)
		rc = blob_get_var(o, "msrs", all, KVM_STATE_MAX_MSRS * sizeof(*all), &len, e);
	if (!rc && len % sizeof(struct kvm_msr_entry))
		rc = err_set(e, "msrs: %zu bytes, not a whole number of entries", len);
	/* KVM_SET_MSRS stops at the first MSR it refuses: that one is logged
	 * and left at its reset value, and the rest set. Every MSR here was
	 * read from this kind of host's KVM; one it will not take back (a
	 * quirk of a nested or older host) is no reason to refuse the VM. */
	size_t n = rc ? 0 : len / sizeof(struct kvm_msr_entry);
	for (size_t i = 0; !rc && i < n;) {
		b->nmsrs = (uint32_t)(n - i);
		memcpy(b->entries, all + i, (n - i) * sizeof(*all));
		int r = ioctl(vcpu_fd, KVM_SET_MSRS, b);
		if (r < 0) {
			rc = err_set(e, "KVM_SET_MSRS: %s", strerror(errno));
			break;
		}
		i += (size_t)r;
		if (i < n) {
			LOG_W("snapshot restore: KVM refused MSR 0x%x (value 0x%llx); left as reset",
			      all[i].index, (unsigned long long)all[i].data);
			i++;
		}
	}
	free(all);
	free(b);
	return rc;
}

/* A host without XSAVE has no XCRs: KVM_GET_XCRS says none, and
 * KVM_SET_XCRS refuses even an empty list, so there is nothing to set. */
static int restore_xcrs(int vcpu_fd, json_t *o, ember_err *e)
{
	struct kvm_xcrs x;
	if (blob_get(o, "xcrs", &x, sizeof(x), e))
		return -1;
	if (x.nr_xcrs == 0)
		return 0;
	if (ioctl(vcpu_fd, KVM_SET_XCRS, &x) < 0)
		return err_set(e, "KVM_SET_xcrs: %s", strerror(errno));
	return 0;
}

static struct kvm_cpuid2 *cpuid_alloc(void)
{
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + KVM_STATE_MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	if (c)
		c->nent = KVM_STATE_MAX_CPUID;
	return c;
}

int kvm_vcpu_save(int kvm_fd, int vcpu_fd, json_t **out, ember_err *e)
{
	json_t *o = json_object();
	*out = NULL;
	if (!o)
		return err_set(e, "out of memory");
	struct kvm_cpuid2 *cb = cpuid_alloc();
	if (!cb) {
		json_decref(o);
		return err_set(e, "out of memory");
	}
	int rc = 0;
	if (ioctl(vcpu_fd, KVM_GET_CPUID2, cb) < 0)
		rc = err_set(e, "KVM_GET_CPUID2: %s", strerror(errno));
	else
		rc = put_blob(o, "cpuid", cb->entries, cb->nent * sizeof(cb->entries[0]), e);
	free(cb);
#define X(name, type, get, set) \
	if (!rc)                \
		rc = get_fixed(vcpu_fd, get, #name, o, sizeof(type), e);
	FIXED_STATES(X)
#undef X
	if (!rc)
		rc = save_msrs(kvm_fd, vcpu_fd, o, e);
	if (!rc) {
		int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
		json_object_set_new(o, "tsc_khz", json_integer(khz > 0 ? khz : 0));
	}
	if (rc) {
		json_decref(o);
		return -1;
	}
	*out = o;
	return 0;
}

int kvm_vcpu_restore(int vcpu_fd, json_t *o, ember_err *e)
{
	if (!json_is_object(o))
		return err_set(e, "vCPU state is not an object");
	struct kvm_cpuid2 *cb = cpuid_alloc();
	if (!cb)
		return err_set(e, "out of memory");
	size_t len;
	int rc = blob_get_var(o, "cpuid", cb->entries, KVM_STATE_MAX_CPUID * sizeof(cb->entries[0]),
			     &len, e);
	if (!rc && (len % sizeof(cb->entries[0]) || !len))
		rc = err_set(e, "cpuid: %zu bytes, not a whole number of entries", len);
	if (!rc) {
		cb->nent = (uint32_t)(len / sizeof(cb->entries[0]));
		if (ioctl(vcpu_fd, KVM_SET_CPUID2, cb) < 0)
			rc = err_set(e, "KVM_SET_CPUID2: %s", strerror(errno));
	}
	free(cb);
	if (rc)
		return -1;
	uint64_t khz;
	if (json_get_u64(o, "tsc_khz", UINT32_MAX, &khz, e))
		return -1;
	int cur = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	/* A host with another TSC frequency: scale the guest's, as Firecracker. */
	if (khz && cur > 0 && (uint64_t)cur != khz &&
	    ioctl(vcpu_fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0)
		return err_set(e, "KVM_SET_TSC_KHZ %llu: %s", (unsigned long long)khz,
			       strerror(errno));
	/* MP state before the registers (KVM resets some state for INIT/SIPI
	 * states); the LAPIC before the MSRs (TSC deadline); events last. */
	if (set_fixed(vcpu_fd, KVM_SET_MP_STATE, "mp_state", o, sizeof(struct kvm_mp_state), e) ||
	    set_fixed(vcpu_fd, KVM_SET_REGS, "regs", o, sizeof(struct kvm_regs), e) ||
	    set_fixed(vcpu_fd, KVM_SET_SREGS, "sregs", o, sizeof(struct kvm_sregs), e) ||
	    set_fixed(vcpu_fd, KVM_SET_XSAVE, "xsave", o, sizeof(struct kvm_xsave), e) ||
	    restore_xcrs(vcpu_fd, o, e) ||
	    set_fixed(vcpu_fd, KVM_SET_DEBUGREGS, "debugregs", o, sizeof(struct kvm_debugregs), e) ||
	    set_fixed(vcpu_fd, KVM_SET_LAPIC, "lapic", o, sizeof(struct kvm_lapic_state), e) ||
	    restore_msrs(vcpu_fd, o, e) ||
	    set_fixed(vcpu_fd, KVM_SET_VCPU_EVENTS, "events", o, sizeof(struct kvm_vcpu_events), e))
		return -1;
	return 0;
}

static const struct {
	const char *name;
	uint32_t chip_id;
} chips[] = {{"pic_master", KVM_IRQCHIP_PIC_MASTER},
	     {"pic_slave", KVM_IRQCHIP_PIC_SLAVE},
	     {"ioapic", KVM_IRQCHIP_IOAPIC}};

int kvm_vm_save(int vm_fd, json_t **out, ember_err *e)
{
	json_t *o = json_object();
	*out = NULL;
	if (!o)
		return err_set(e, "out of memory");
	int rc = 0;
	for (size_t i = 0; i < sizeof(chips) / sizeof(chips[0]) && !rc; i++) {
		struct kvm_irqchip c = {.chip_id = chips[i].chip_id};
		if (ioctl(vm_fd, KVM_GET_IRQCHIP, &c) < 0)
			rc = err_set(e, "KVM_GET_IRQCHIP %s: %s", chips[i].name, strerror(errno));
		else
			rc = put_blob(o, chips[i].name, &c, sizeof(c), e);
	}
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock = {0};
	if (!rc && ioctl(vm_fd, KVM_GET_PIT2, &pit) < 0)
		rc = err_set(e, "KVM_GET_PIT2: %s", strerror(errno));
	if (!rc)
		rc = put_blob(o, "pit", &pit, sizeof(pit), e);
	if (!rc && ioctl(vm_fd, KVM_GET_CLOCK, &clock) < 0)
		rc = err_set(e, "KVM_GET_CLOCK: %s", strerror(errno));
	if (!rc)
		rc = put_blob(o, "clock", &clock, sizeof(clock), e);
	if (rc) {
		json_decref(o);
		return -1;
	}
	*out = o;
	return 0;
}

int kvm_vm_restore(int vm_fd, json_t *o, ember_err *e)
{
	if (!json_is_object(o))
		return err_set(e, "VM state is not an object");
	for (size_t i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
		struct kvm_irqchip c;
		if (blob_get(o, chips[i].name, &c, sizeof(c), e))
			return -1;
		if (c.chip_id != chips[i].chip_id)
			return err_set(e, "%s: wrong chip id %u", chips[i].name, c.chip_id);
		if (ioctl(vm_fd, KVM_SET_IRQCHIP, &c) < 0)
			return err_set(e, "KVM_SET_IRQCHIP %s: %s", chips[i].name, strerror(errno));
	}
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	if (blob_get(o, "pit", &pit, sizeof(pit), e) || blob_get(o, "clock", &clock, sizeof(clock), e))
		return -1;
	if (ioctl(vm_fd, KVM_SET_PIT2, &pit) < 0)
		return err_set(e, "KVM_SET_PIT2: %s", strerror(errno));
	/* The guest's clock goes on from where it stopped: no realtime
	 * adjustment, and only flags KVM_SET_CLOCK takes. */
	clock.flags = 0;
	memset(clock.pad, 0, sizeof(clock.pad));
	if (ioctl(vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return err_set(e, "KVM_SET_CLOCK: %s", strerror(errno));
	return 0;
}
