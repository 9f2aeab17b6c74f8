#include "arch/x86/msr.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_IA32_TSC 0x10
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_IA32_MISC_ENABLE_FAST_STRING 1
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MTRR_ENABLE (1 << 11)
#define MTRR_TYPE_WRBACK 6

int msr_setup_boot(int vcpu_fd, ember_err *e)
{
	/* Firecracker's boot MSRs: syscall state cleared, fast strings on, and
	 * MTRRs enabled with write-back as the default memory type (without it
	 * Linux maps all memory uncached and boots slowly). */
	static const uint32_t index[] = {
		MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP, MSR_STAR,
		MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_SYSCALL_MASK, MSR_LSTAR, MSR_IA32_TSC,
		MSR_IA32_MISC_ENABLE, MSR_MTRR_DEF_TYPE,
	};
	static const uint64_t value[] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, MSR_IA32_MISC_ENABLE_FAST_STRING,
		MTRR_ENABLE | MTRR_TYPE_WRBACK,
	};
	_Static_assert(sizeof(index) / sizeof(index[0]) == sizeof(value) / sizeof(value[0]),
		       "one value per boot MSR");
	return msr_set(vcpu_fd, index, value, sizeof(index) / sizeof(index[0]), e);
}

/* A struct kvm_msrs with room for MSR_MAX_BATCH entries (it ends in a
 * flexible array). */
union msr_batch {
	struct kvm_msrs hdr;
	uint8_t bytes[sizeof(struct kvm_msrs) + MSR_MAX_BATCH * sizeof(struct kvm_msr_entry)];
};

static int msr_ioctl(int vcpu_fd, unsigned long req, const char *name, union msr_batch *b,
		     size_t n, ember_err *e)
{
	int r = ioctl(vcpu_fd, req, &b->hdr);
	if (r < 0)
		return err_set(e, "%s: %s", name, strerror(errno));
	if ((size_t)r != n)
		return err_set(e, "%s: KVM refused MSR %#x", name, b->hdr.entries[r].index);
	return 0;
}

int msr_get(int vcpu_fd, const uint32_t *index, uint64_t *value, size_t n, ember_err *e)
{
	union msr_batch b; /* 4 KiB */
	if (n > MSR_MAX_BATCH)
		return err_set(e, "KVM_GET_MSRS: %zu MSRs, at most %d", n, MSR_MAX_BATCH);
	memset(&b, 0, sizeof(b));
	b.hdr.nmsrs = (uint32_t)n;
	for (size_t i = 0; i < n; i++)
		b.hdr.entries[i].index = index[i];
	int rc = msr_ioctl(vcpu_fd, KVM_GET_MSRS, "KVM_GET_MSRS", &b, n, e);
	for (size_t i = 0; !rc && i < n; i++)
		value[i] = b.hdr.entries[i].data;
	return rc;
}

int msr_set(int vcpu_fd, const uint32_t *index, const uint64_t *value, size_t n, ember_err *e)
{
	union msr_batch b;
	if (n > MSR_MAX_BATCH)
		return err_set(e, "KVM_SET_MSRS: %zu MSRs, at most %d", n, MSR_MAX_BATCH);
	memset(&b, 0, sizeof(b));
	b.hdr.nmsrs = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		b.hdr.entries[i].index = index[i];
		b.hdr.entries[i].data = value[i];
	}
	return msr_ioctl(vcpu_fd, KVM_SET_MSRS, "KVM_SET_MSRS", &b, n, e);
}
