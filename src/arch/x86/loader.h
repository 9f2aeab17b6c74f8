/* Kernel and initrd loading. The parsers read the file's headers and
 * distrust every field: all offsets are checked against the file's length
 * and all destinations against guest memory. They do not copy: they plan,
 * and loader_run reads the file straight into guest memory (no copy of the
 * file in between), on two threads at once. */
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

/* An image to load: an open file, read with pread (a file that shrinks
 * meanwhile is an error, never a SIGBUS), or bytes in memory. */
struct loader_src {
	int fd;             /* used when buf is NULL */
	const uint8_t *buf;
	uint64_t len;
	const char *what;   /* for errors: "kernel_image_path" */
};

/* One piece of a load: len bytes of src from off to dst, a host pointer
 * into guest memory that gm_ptr checked; zeros if src is NULL. */
struct load_job {
	const struct loader_src *src;
	uint64_t off;
	uint8_t *dst;
	uint64_t len;
};

#define LOADER_JOBS_MAX 64

struct load_plan {
	struct load_job job[LOADER_JOBS_MAX];
	unsigned n;
	/* Guest memory was just mapped: all zeros and no pages yet. Zero
	 * pieces (an ELF bss) are then skipped, and each piece's pages are
	 * allocated in one call before the read. */
	bool fresh;
};

/* Plans the load of an ELF vmlinux (64-bit, x86_64, PT_LOAD segments at
 * physical addresses) or a bzImage (boot protocol >= 2.06 with a 64-bit
 * entry), filling *k. A vmlinux with the XEN_ELFNOTE_PHYS32_ENTRY note
 * boots through PVH. */
int loader_plan_kernel(const struct guest_mem *gm, const struct loader_src *img,
		       struct kernel_image *k, struct load_plan *plan, ember_err *e);

/* Plans the initrd page-aligned at the top of low memory, below the
 * kernel's initrd_addr_max and above the kernel; *addr gets its address. */
int loader_plan_initrd(const struct guest_mem *gm, const struct kernel_image *k,
		       const struct loader_src *img, uint64_t *addr, struct load_plan *plan,
		       ember_err *e);

/* Does the plan: in order on the calling thread, or with helper on a
 * second thread too (pieces that overlap are always done in order). The
 * sources must stay open until it returns. */
int loader_run(const struct load_plan *plan, bool helper, ember_err *e);

/* Plan and run at once, from memory (unit tests, fuzzing). */
int loader_load_kernel(const struct guest_mem *gm, const uint8_t *img, size_t len,
		       struct kernel_image *k, ember_err *e);
int loader_load_initrd(const struct guest_mem *gm, const struct kernel_image *k,
		       const uint8_t *data, size_t len, uint64_t *addr, ember_err *e);

/* Opens a regular file to load; src->len gets its size. Empty files and
 * anything but a regular file are an error. */
int loader_open_file(const char *path, const char *what, struct loader_src *src, ember_err *e);
void loader_close_file(struct loader_src *src);

#endif
