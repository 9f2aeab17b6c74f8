/* The Linux x86 "zero page" (struct boot_params) and its e820 memory map. */
#ifndef EMBER_X86_BOOT_PARAMS_H
#define EMBER_X86_BOOT_PARAMS_H

#include <asm/bootparam.h>

#include "util/err.h"
#include "vmm/guest_mem.h"
#include "vmm/loader.h"

#define E820_RAM 1
#define E820_RESERVED 2

struct boot_info {
	uint64_t cmdline_addr;
	uint32_t cmdline_size; /* including the NUL */
	uint64_t initrd_addr;
	uint64_t initrd_size;
};

/* Appends one e820 entry; -1 if the table is full. */
int e820_add(struct boot_params *bp, uint64_t addr, uint64_t size, uint32_t type);

/* Fills bp for kernel k: the bzImage's own setup header (or a minimal one for
 * vmlinux), loader fields, command line, initrd and the e820 map of gm. */
int boot_params_build(struct boot_params *bp, const struct kernel_image *k,
		      const struct guest_mem *gm, const struct boot_info *bi, ember_err *e);

/* Writes the command line (with its NUL) at X86_CMDLINE_ADDR, checking the
 * kernel's limit. */
int boot_cmdline_write(const struct guest_mem *gm, const struct kernel_image *k,
		       const char *cmdline, struct boot_info *bi, ember_err *e);

#endif
