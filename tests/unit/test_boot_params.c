#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "arch/x86/boot_params.h"
#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "arch/x86/pvh.h"

static void e820_for_small_guest(void **state)
{
	(void)state;
	uint8_t *mem = calloc(1, 64 << 20);
	struct guest_mem gm;
	gm_init_from(&gm, mem, 64 << 20, X86_MMIO_GAP_START);
	struct kernel_image k = {.cmdline_max = X86_CMDLINE_MAX};
	struct boot_info bi = {0};
	struct boot_params bp;
	ember_err e = {{0}};

	assert_int_equal(boot_cmdline_write(&gm, &k, "console=ttyS0", &bi, &e), 0);
	assert_string_equal((char *)mem + X86_CMDLINE_ADDR, "console=ttyS0");
	bi.initrd_addr = 0x3000000;
	bi.initrd_size = 12345;
	assert_int_equal(boot_params_build(&bp, &k, &gm, &bi, &e), 0);

	assert_int_equal(bp.hdr.boot_flag, 0xaa55);
	assert_int_equal(bp.hdr.header, 0x53726448);
	assert_int_equal(bp.hdr.type_of_loader, 0xff);
	assert_int_equal(bp.hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
	assert_int_equal(bp.hdr.cmdline_size, strlen("console=ttyS0") + 1);
	assert_int_equal(bp.hdr.ramdisk_image, 0x3000000);
	assert_int_equal(bp.hdr.ramdisk_size, 12345);

	assert_int_equal(bp.e820_entries, 2);
	assert_int_equal(bp.e820_table[0].addr, 0);
	assert_int_equal(bp.e820_table[0].size, X86_EBDA_START);
	assert_int_equal(bp.e820_table[0].type, E820_RAM);
	assert_int_equal(bp.e820_table[1].addr, X86_HIMEM_START);
	assert_int_equal(bp.e820_table[1].addr + bp.e820_table[1].size, 64 << 20);
	free(mem);
}

static void e820_splits_at_gap(void **state)
{
	(void)state;
	/* Lay out a fake 4 GiB guest without backing it: only the layout is read. */
	static uint8_t dummy[1];
	struct guest_mem gm;
	gm_init_from(&gm, dummy, 4ULL << 30, X86_MMIO_GAP_START);
	struct kernel_image k = {.cmdline_max = X86_CMDLINE_MAX};
	struct boot_info bi = {.cmdline_addr = X86_CMDLINE_ADDR, .cmdline_size = 1};
	struct boot_params bp;
	assert_int_equal(boot_params_build(&bp, &k, &gm, &bi, NULL), 0);
	assert_int_equal(bp.e820_entries, 3);
	assert_int_equal(bp.e820_table[1].addr + bp.e820_table[1].size, X86_MMIO_GAP_START);
	assert_int_equal(bp.e820_table[2].addr, 1ULL << 32);
	assert_int_equal(bp.e820_table[2].size, (4ULL << 30) - X86_MMIO_GAP_START);
}

static void bzimage_header_is_kept(void **state)
{
	(void)state;
	uint8_t *mem = calloc(1, 8 << 20);
	struct guest_mem gm;
	gm_init_from(&gm, mem, 8 << 20, X86_MMIO_GAP_START);
	struct kernel_image k = {.is_bzimage = true, .cmdline_max = 256};
	k.hdr.version = 0x20f;
	k.hdr.setup_sects = 27;
	k.hdr.boot_flag = 0xaa55;
	k.hdr.header = 0x53726448;
	k.hdr.loadflags = LOADED_HIGH;
	k.hdr_len = sizeof(k.hdr);
	struct boot_info bi = {0};
	struct boot_params bp;
	ember_err e = {{0}};
	assert_int_equal(boot_cmdline_write(&gm, &k, "a", &bi, &e), 0);
	assert_int_equal(boot_params_build(&bp, &k, &gm, &bi, &e), 0);
	assert_int_equal(bp.hdr.version, 0x20f);
	assert_int_equal(bp.hdr.setup_sects, 27);
	assert_int_equal(bp.hdr.loadflags, LOADED_HIGH | CAN_USE_HEAP);
	assert_int_equal(bp.hdr.ramdisk_image, 0);

	/* The kernel's own command-line limit applies. */
	char long_args[300];
	memset(long_args, 'x', sizeof(long_args) - 1);
	long_args[sizeof(long_args) - 1] = 0;
	assert_int_equal(boot_cmdline_write(&gm, &k, long_args, &bi, &e), -1);
	assert_non_null(strstr(e.msg, "boot_args"));
	free(mem);
}

static void e820_table_full(void **state)
{
	(void)state;
	struct boot_params bp;
	memset(&bp, 0, sizeof(bp));
	for (int i = 0; i < E820_MAX_ENTRIES_ZEROPAGE; i++)
		assert_int_equal(e820_add(&bp, i * 4096ULL, 4096, E820_RAM), 0);
	assert_int_equal(e820_add(&bp, 0, 1, E820_RAM), -1);
}

/* PVH: hvm_start_info carries the same facts as boot_params. */
static void pvh_start_info(void **state)
{
	(void)state;
	uint8_t *mem = calloc(1, 64 << 20);
	struct guest_mem gm;
	gm_init_from(&gm, mem, 64 << 20, X86_MMIO_GAP_START);
	struct kernel_image k = {.cmdline_max = X86_CMDLINE_MAX, .pvh = true};
	struct boot_info bi = {0};
	struct boot_params bp;
	assert_int_equal(boot_cmdline_write(&gm, &k, "console=ttyS0", &bi, NULL), 0);
	bi.initrd_addr = 0x3000000;
	bi.initrd_size = 12345;
	assert_int_equal(boot_params_build(&bp, &k, &gm, &bi, NULL), 0);
	assert_int_equal(pvh_write_start_info(&gm, &bp, &bi, NULL), 0);

	struct hvm_start_info si;
	memcpy(&si, mem + X86_PVH_INFO_ADDR, sizeof(si));
	assert_int_equal(si.magic, 0x336ec578);
	assert_int_equal(si.version, 1);
	assert_int_equal(si.cmdline_paddr, X86_CMDLINE_ADDR);
	assert_int_equal(si.rsdp_paddr, ACPI_RSDP_ADDR);
	assert_int_equal(si.nr_modules, 1);
	struct hvm_modlist_entry mod;
	memcpy(&mod, mem + si.modlist_paddr, sizeof(mod));
	assert_int_equal(mod.paddr, 0x3000000);
	assert_int_equal(mod.size, 12345);
	assert_int_equal(si.memmap_entries, 2);
	struct hvm_memmap_table_entry mm[2];
	memcpy(mm, mem + si.memmap_paddr, sizeof(mm));
	assert_int_equal(mm[0].addr, 0);
	assert_int_equal(mm[0].size, X86_EBDA_START);
	assert_int_equal(mm[1].addr, X86_HIMEM_START);
	assert_int_equal(mm[1].size, (64 << 20) - X86_HIMEM_START);
	assert_int_equal(mm[1].type, E820_RAM);

	/* Without an initrd: no module list. */
	bi.initrd_size = 0;
	assert_int_equal(pvh_write_start_info(&gm, &bp, &bi, NULL), 0);
	memcpy(&si, mem + X86_PVH_INFO_ADDR, sizeof(si));
	assert_int_equal(si.nr_modules, 0);
	assert_int_equal(si.modlist_paddr, 0);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(e820_for_small_guest),
		cmocka_unit_test(e820_splits_at_gap),
		cmocka_unit_test(bzimage_header_is_kept),
		cmocka_unit_test(e820_table_full),
		cmocka_unit_test(pvh_start_info),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
