/* libFuzzer target: the kernel loader (ELF vmlinux and bzImage) and the
 * initrd placement, into a fake guest memory of 3 MiB at 0 and 1 MiB at
 * 4 GiB. The input is the kernel image; its last 1/8 is also loaded as an
 * initrd when the kernel loads.
 *
 * Checked: an accepted kernel's range starts and ends in guest memory and holds its
 * entry point; the initrd lands page-aligned above the kernel, below
 * initrd_addr_max and in memory; a refusal says why.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh loader_fuzz (docs/fuzzing.md) */
#include <stdlib.h>
#include <string.h>

#include "fuzz_quiet.h"
#include "guest/guest_mem.h"
#include "arch/x86/loader.h"

#define LOW (3ULL << 20)
#define HIGH (1ULL << 20)

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	/* Allocated once: the loader only writes guest memory, never reads it. */
	static uint8_t *host;
	if (!host && !(host = malloc(LOW + HIGH)))
		abort();
	struct guest_mem gm;
	gm_init_from(&gm, host, LOW + HIGH, LOW);
	/* Its own buffer, so ASan sees a read past the end of the file. */
	uint8_t *img = malloc(len ? len : 1);
	if (!img)
		abort();
	memcpy(img, in, len);
	struct kernel_image k;
	ember_err e = {{0}};
	if (loader_load_kernel(&gm, img, len, &k, &e)) {
		if (!e.msg[0])
			abort();
	} else {
		/* Segments may sit on both sides of the MMIO gap: check the ends
		 * (an empty segment may end the range at the start of a region). */
		if (k.load_end <= k.load_start || !gm_ptr(&gm, k.load_start, 0) ||
		    !(gm_ptr(&gm, k.load_end - 1, 1) || gm_ptr(&gm, k.load_end, 0)))
			abort();
		if (k.entry < k.load_start || k.entry >= k.load_end || !k.cmdline_max)
			abort();
		if (k.is_bzimage && k.hdr_len > sizeof(k.hdr))
			abort();
		size_t ilen = len / 8;
		uint64_t at;
		if (ilen && !loader_load_initrd(&gm, &k, img + len - ilen, ilen, &at, &e)) {
			if (at & 4095 || at < k.load_end || at + ilen - 1 > k.initrd_addr_max ||
			    !gm_ptr(&gm, at, ilen) || memcmp(gm_ptr(&gm, at, ilen), img + len - ilen, ilen))
				abort();
		}
	}
	free(img);
	return 0;
}
