/* Kernel and initrd loading. The parsers work on an in-memory copy of the
 * file and distrust every header field: all offsets are checked against the
 * file's length and all destinations against guest memory. */
#ifndef EMBER_LOADER_H
#define EMBER_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

#include "util/err.h"
#include "guest/guest_mem.h"

struct kernel_image {
	uint64_t entry;      /* guest physical entry point: 64-bit, or PVH's 32-bit */
	bool pvh;            /* boot through the PVH entry (Xen's PHYS32_ENTRY note) */
	uint64_t load_start; /* guest range the kernel occupies, including */
	uint64_t load_end;   /* what a bzImage needs to decompress itself */
	bool is_bzimage;
	/* The bzImage's own setup header, to be copied into boot_params. */
	struct setup_header hdr;
	size_t hdr_len;
	uint32_t cmdline_max; /* the kernel's command-line limit incl. NUL */
	uint64_t initrd_addr_max;
};

/* Loads an ELF vmlinux (64-bit, x86_64, PT_LOAD segments at physical
 * addresses) or a bzImage (boot protocol >= 2.06 with a 64-bit entry). A
 * vmlinux with the XEN_ELFNOTE_PHYS32_ENTRY note boots through PVH. */
int loader_load_kernel(const struct guest_mem *gm, const uint8_t *img, size_t len,
		       struct kernel_image *k, ember_err *e);

/* Places an initrd page-aligned at the top of low memory, below the
 * kernel's initrd_addr_max and above the kernel. */
int loader_load_initrd(const struct guest_mem *gm, const struct kernel_image *k,
		       const uint8_t *data, size_t len, uint64_t *addr, ember_err *e);

/* Maps a whole file read-only; *len gets its size. Empty files are an error. */
int loader_map_file(const char *path, const char *what, const uint8_t **data, size_t *len,
		    ember_err *e);
void loader_unmap_file(const uint8_t *data, size_t len);

#endif
