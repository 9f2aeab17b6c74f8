#include "arch/x86/regs.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/layout.h"

#define X86_CR0_PE 0x1ULL
#define X86_CR0_ET 0x10ULL
#define X86_CR0_PG 0x80000000ULL
#define X86_CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL
#define PTE_PRESENT_RW 0x3ULL
#define PDE_HUGE 0x80ULL

enum { GDT_NULL, GDT_CODE, GDT_DATA, GDT_TSS, GDT_ENTRIES };

/* Flags: access byte in bits 0..7, G/DB/L/AVL nibble in bits 12..15. */
static const uint16_t gdt_flags[2][GDT_ENTRIES] = {
	[0] = {
		[GDT_CODE] = 0xa09b, /* 64-bit code, present, readable */
		[GDT_DATA] = 0xc093, /* 32-bit data, present, writable */
		[GDT_TSS] = 0x808b,  /* busy 64-bit TSS */
	},
	/* PVH (Xen's pvh.pandoc): 32-bit protected mode, flat 4 GiB code and
	 * data, a busy 32-bit TSS of 0x68 bytes. */
	[1] = {
		[GDT_CODE] = 0xc09b, /* 32-bit code, 4 KiB granularity */
		[GDT_DATA] = 0xc093,
		[GDT_TSS] = 0x008b,
	},
};

static uint32_t gdt_limit(bool pvh, int i)
{
	return pvh && i == GDT_TSS ? 0x67 : 0xfffff;
}

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
	       ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0x0000ffffu);
}

/* The KVM view of GDT entry `i` as it is written to guest memory. KVM wants
 * the limit in bytes: a granular (G) limit is scaled by 4 KiB. */
static struct kvm_segment segment(bool pvh, int i)
{
	uint16_t f = gdt_flags[pvh][i];
	uint32_t limit = gdt_limit(pvh, i);
	bool g = (f >> 15) & 1;
	return (struct kvm_segment){
		.base = 0,
		.limit = g ? (limit << 12) | 0xfff : limit,
		.selector = (uint16_t)(i * 8),
		.type = f & 0xf,
		.present = (f >> 7) & 1,
		.dpl = (f >> 5) & 3,
		.db = (f >> 14) & 1,
		.s = (f >> 4) & 1,
		.l = (f >> 13) & 1,
		.g = g,
	};
}

int regs_write_boot_tables(const struct guest_mem *gm, bool pvh, ember_err *e)
{
	uint64_t gdt[GDT_ENTRIES];
	for (int i = 0; i < GDT_ENTRIES; i++)
		gdt[i] = i == GDT_NULL ? 0 : gdt_entry(gdt_flags[pvh][i], 0, gdt_limit(pvh, i));
	uint64_t idt = 0;
	/* PML4[0] -> PDPT, PDPT[0] -> PD, PD maps the first GiB with 2 MiB pages. */
	uint64_t pml4e = X86_PDPTE_ADDR | PTE_PRESENT_RW;
	uint64_t pdpte = X86_PDE_ADDR | PTE_PRESENT_RW;
	uint64_t pd[512];
	for (uint64_t i = 0; i < 512; i++)
		pd[i] = (i << 21) | PTE_PRESENT_RW | PDE_HUGE;

	if (gm_write(gm, X86_GDT_ADDR, gdt, sizeof(gdt)) ||
	    gm_write(gm, X86_IDT_ADDR, &idt, sizeof(idt)) ||
	    gm_write(gm, X86_PML4_ADDR, &pml4e, sizeof(pml4e)) ||
	    gm_write(gm, X86_PDPTE_ADDR, &pdpte, sizeof(pdpte)) ||
	    gm_write(gm, X86_PDE_ADDR, pd, sizeof(pd)))
		return err_set(e, "guest memory too small for the boot page tables");
	return 0;
}

int regs_setup_boot(int vcpu_fd, uint64_t entry, bool pvh, ember_err *e)
{
	struct kvm_sregs sregs;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return err_set(e, "KVM_GET_SREGS: %s", strerror(errno));
	sregs.gdt.base = X86_GDT_ADDR;
	sregs.gdt.limit = GDT_ENTRIES * 8 - 1;
	sregs.idt.base = X86_IDT_ADDR;
	sregs.idt.limit = 7;
	sregs.cs = segment(pvh, GDT_CODE);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(pvh, GDT_DATA);
	sregs.tr = segment(pvh, GDT_TSS);
	if (pvh) {
		/* Protected mode, paging off, CR4 clear: the kernel builds
		 * its own page tables from here. */
		sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
		sregs.cr4 = 0;
		sregs.efer &= ~(EFER_LME | EFER_LMA);
	} else {
		sregs.cr3 = X86_PML4_ADDR;
		sregs.cr4 |= X86_CR4_PAE;
		sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
		sregs.efer |= EFER_LME | EFER_LMA;
	}
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return err_set(e, "KVM_SET_SREGS: %s", strerror(errno));

	/* Linux boot: RSI points at boot_params; PVH: EBX at hvm_start_info. */
	struct kvm_regs regs = {
		.rflags = 0x2, /* bit 1 is always set */
		.rip = entry,
	};
	if (pvh) {
		regs.rbx = X86_PVH_INFO_ADDR;
	} else {
		regs.rsp = regs.rbp = X86_BOOT_STACK_POINTER;
		regs.rsi = X86_ZERO_PAGE_ADDR;
	}
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return err_set(e, "KVM_SET_REGS: %s", strerror(errno));

	struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80}; /* the x87/SSE reset values */
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return err_set(e, "KVM_SET_FPU: %s", strerror(errno));
	return 0;
}

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

static void set_lvt_mode(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
	uint32_t v;
	memcpy(&v, &l->regs[reg], 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&l->regs[reg], &v, 4);
}

int regs_setup_lapic(int vcpu_fd, ember_err *e)
{
	struct kvm_lapic_state l;
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &l) < 0)
		return err_set(e, "KVM_GET_LAPIC: %s", strerror(errno));
	set_lvt_mode(&l, APIC_LVT0, APIC_MODE_EXTINT);
	set_lvt_mode(&l, APIC_LVT1, APIC_MODE_NMI);
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &l) < 0)
		return err_set(e, "KVM_SET_LAPIC: %s", strerror(errno));
	return 0;
}
