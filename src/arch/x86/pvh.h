/* PVH direct boot (Xen's docs/misc/pvh.pandoc, as Firecracker boots a
 * kernel with the XEN_ELFNOTE_PHYS32_ENTRY note): instead of the Linux
 * zero page, the kernel gets an hvm_start_info with the command line, the
 * initrd as module 0, the memory map and the ACPI RSDP. */
#ifndef EMBER_X86_PVH_H
#define EMBER_X86_PVH_H

#include <asm/bootparam.h>
#include <stdint.h>

#include "arch/x86/boot_params.h"
#include "guest/guest_mem.h"
#include "util/err.h"

#define HVM_START_MAGIC 0x336ec578u

/* The structures of Xen's public/arch-x86/hvm/start_info.h (version 1). */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type; /* E820 types */
	uint32_t reserved;
};

/* Writes hvm_start_info at X86_PVH_INFO_ADDR, the initrd module and the
 * memory map, taken from bp's e820 table (boot_params_build's). */
int pvh_write_start_info(const struct guest_mem *gm, const struct boot_params *bp,
			 const struct boot_info *bi, ember_err *e);

#endif
