/* The x86_64 guest physical memory map, as Firecracker lays it out. */
#ifndef EMBER_X86_LAYOUT_H
#define EMBER_X86_LAYOUT_H

#define X86_GDT_ADDR 0x500ULL
#define X86_IDT_ADDR 0x520ULL
/* PVH boot (Firecracker's layout): hvm_start_info, the module list (the
 * initrd) and the memory map; the map takes the zero page's place, which a
 * PVH boot does not use. */
#define X86_PVH_INFO_ADDR 0x6000ULL
#define X86_PVH_MODLIST_ADDR 0x6040ULL
#define X86_PVH_MEMMAP_ADDR 0x7000ULL
#define X86_ZERO_PAGE_ADDR 0x7000ULL
#define X86_BOOT_STACK_POINTER 0x8ff0ULL
#define X86_PML4_ADDR 0x9000ULL
#define X86_PDPTE_ADDR 0xa000ULL
#define X86_PDE_ADDR 0xb000ULL
#define X86_CMDLINE_ADDR 0x20000ULL
/* Linux's x86 COMMAND_LINE_SIZE, including the terminating NUL. */
#define X86_CMDLINE_MAX 2048
/* The MP table lives in the EBDA, the last KiB below 640 KiB. */
#define X86_EBDA_START 0x9fc00ULL
#define X86_EBDA_END 0xa0000ULL
/* Kernels are loaded at 1 MiB; RAM below is e820 RAM up to the EBDA. */
#define X86_HIMEM_START 0x100000ULL

/* The 32-bit MMIO gap [3 GiB, 4 GiB): devices, IOAPIC, LAPIC. */
#define X86_MMIO_GAP_START 0xc0000000ULL
#define X86_MMIO_GAP_END 0x100000000ULL
/* Firecracker's boot-timer device: the first page of the MMIO gap. */
#define X86_BOOT_TIMER_ADDR 0xc0000000ULL
#define X86_BOOT_TIMER_SIZE 0x1000ULL
/* virtio-mmio devices follow, one 4 KiB window each. */
#define X86_VIRTIO_MMIO_START 0xc0001000ULL
#define X86_IOAPIC_ADDR 0xfec00000ULL
#define X86_LAPIC_ADDR 0xfee00000ULL
/* KVM needs three pages for the real-mode TSS and one for the EPT identity
 * map; both sit just below the BIOS area in the gap. */
#define X86_KVM_TSS_ADDR 0xfffbd000ULL
#define X86_KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

#define X86_MAX_VCPUS 32
/* The VM Generation ID's GED interrupt: after the virtio devices' 5..20. */
#define X86_VMGENID_GSI 21

#endif
