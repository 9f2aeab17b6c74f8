#include "arch/x86/boot_params.h"

#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"

#define KERNEL_BOOT_FLAG 0xaa55
#define KERNEL_HDR_MAGIC 0x53726448
#define KERNEL_LOADER_OTHER 0xff
#define KERNEL_MIN_ALIGNMENT 0x01000000

int e820_add(struct boot_params *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	if (bp->e820_entries >= E820_MAX_ENTRIES_ZEROPAGE)
		return -1;
	struct boot_e820_entry *ent = &bp->e820_table[bp->e820_entries++];
	ent->addr = addr;
	ent->size = size;
	ent->type = type;
	return 0;
}

int boot_params_build(struct boot_params *bp, const struct kernel_image *k,
		      const struct guest_mem *gm, const struct boot_info *bi, ember_err *e)
{
	memset(bp, 0, sizeof(*bp));
	if (k->is_bzimage) {
		memcpy(&bp->hdr, &k->hdr, k->hdr_len);
	} else {
		bp->hdr.boot_flag = KERNEL_BOOT_FLAG;
		bp->hdr.header = KERNEL_HDR_MAGIC;
		bp->hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
	}
	bp->hdr.type_of_loader = KERNEL_LOADER_OTHER;
	/* Saves the kernel its scan for the RSDP (Linux >= 5.0 reads it). */
	bp->acpi_rsdp_addr = ACPI_RSDP_ADDR;
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.cmd_line_ptr = (uint32_t)bi->cmdline_addr;
	bp->ext_cmd_line_ptr = (uint32_t)(bi->cmdline_addr >> 32);
	bp->hdr.cmdline_size = bi->cmdline_size;
	if (bi->initrd_size) {
		bp->hdr.ramdisk_image = (uint32_t)bi->initrd_addr;
		bp->ext_ramdisk_image = (uint32_t)(bi->initrd_addr >> 32);
		bp->hdr.ramdisk_size = (uint32_t)bi->initrd_size;
		bp->ext_ramdisk_size = (uint32_t)(bi->initrd_size >> 32);
	}

	/* RAM below the EBDA, then from 1 MiB to the MMIO gap, then above 4 GiB. */
	const struct gm_region *low = &gm->region[0];
	if (low->size < X86_HIMEM_START)
		return err_set(e, "guest memory of %llu KiB is too small to boot",
			       (unsigned long long)(low->size >> 10));
	e820_add(bp, 0, X86_EBDA_START, E820_RAM);
	e820_add(bp, X86_HIMEM_START, low->size - X86_HIMEM_START, E820_RAM);
	for (int i = 1; i < gm->nr_regions; i++)
		e820_add(bp, gm->region[i].gpa, gm->region[i].size, E820_RAM);
	return 0;
}

int boot_cmdline_write(const struct guest_mem *gm, const struct kernel_image *k,
		       const char *cmdline, struct boot_info *bi, ember_err *e)
{
	size_t n = strlen(cmdline) + 1;
	if (n > k->cmdline_max)
		return err_set(e, "boot_args: kernel command line is %zu bytes, the limit is %u",
			       n - 1, k->cmdline_max - 1);
	if (gm_write(gm, X86_CMDLINE_ADDR, cmdline, n))
		return err_set(e, "boot_args: command line does not fit in guest memory");
	bi->cmdline_addr = X86_CMDLINE_ADDR;
	bi->cmdline_size = n;
	return 0;
}
