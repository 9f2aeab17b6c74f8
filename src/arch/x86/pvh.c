#include "arch/x86/pvh.h"

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"

_Static_assert(sizeof(struct hvm_start_info) == 56, "Xen's start_info v1 layout");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "Xen's modlist layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "Xen's memmap layout");
/* The module list sits between start_info and the memory map. */
_Static_assert(X86_PVH_INFO_ADDR + sizeof(struct hvm_start_info) <= X86_PVH_MODLIST_ADDR,
	       "start_info overlaps the module list");
_Static_assert(X86_PVH_MODLIST_ADDR + sizeof(struct hvm_modlist_entry) <= X86_PVH_MEMMAP_ADDR,
	       "the module list overlaps the memory map");
_Static_assert(X86_PVH_MEMMAP_ADDR + E820_MAX_ENTRIES_ZEROPAGE *
	       sizeof(struct hvm_memmap_table_entry) <= X86_BOOT_STACK_POINTER - 0x100,
	       "the memory map runs into the boot stack");

int pvh_write_start_info(const struct guest_mem *gm, const struct boot_params *bp,
			 const struct boot_info *bi, ember_err *e)
{
	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = bi->cmdline_addr,
		.rsdp_paddr = ACPI_RSDP_ADDR,
		.memmap_paddr = X86_PVH_MEMMAP_ADDR,
		.memmap_entries = bp->e820_entries,
	};
	if (bi->initrd_size) {
		struct hvm_modlist_entry mod = {.paddr = bi->initrd_addr, .size = bi->initrd_size};
		if (gm_write(gm, X86_PVH_MODLIST_ADDR, &mod, sizeof(mod)))
			return err_set(e, "guest memory too small for the PVH module list");
		si.nr_modules = 1;
		si.modlist_paddr = X86_PVH_MODLIST_ADDR;
	}
	for (unsigned i = 0; i < bp->e820_entries && i < E820_MAX_ENTRIES_ZEROPAGE; i++) {
		struct hvm_memmap_table_entry m = {
			.addr = bp->e820_table[i].addr,
			.size = bp->e820_table[i].size,
			.type = bp->e820_table[i].type,
		};
		if (gm_write(gm, X86_PVH_MEMMAP_ADDR + i * sizeof(m), &m, sizeof(m)))
			return err_set(e, "guest memory too small for the PVH memory map");
	}
	if (gm_write(gm, X86_PVH_INFO_ADDR, &si, sizeof(si)))
		return err_set(e, "guest memory too small for the PVH start info");
	return 0;
}
