#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "arch/x86/layout.h"
#include "guest/guest_mem.h"

static uint8_t backing[1 << 20];

static void ptr_checks_bounds(void **state)
{
	(void)state;
	struct guest_mem gm;
	gm_init_from(&gm, backing, sizeof(backing), X86_MMIO_GAP_START);
	assert_int_equal(gm.nr_regions, 1);
	assert_ptr_equal(gm_ptr(&gm, 0, 1), backing);
	assert_ptr_equal(gm_ptr(&gm, sizeof(backing) - 4, 4), backing + sizeof(backing) - 4);
	assert_null(gm_ptr(&gm, sizeof(backing) - 4, 5));
	assert_null(gm_ptr(&gm, sizeof(backing), 1));
	/* Sums that would wrap around must not pass. */
	assert_null(gm_ptr(&gm, UINT64_MAX, 2));
	assert_null(gm_ptr(&gm, 16, UINT64_MAX));
	assert_null(gm_ptr(&gm, 16, UINT64_MAX - 15));
}

static void splits_around_gap(void **state)
{
	(void)state;
	struct guest_mem gm;
	/* 1 MiB of backing stands for a guest with a 512 KiB "gap start". */
	gm_init_from(&gm, backing, sizeof(backing), 512 * 1024);
	assert_int_equal(gm.nr_regions, 2);
	assert_int_equal(gm_lowmem_end(&gm), 512 * 1024);
	assert_int_equal(gm.region[1].gpa, 1ULL << 32);
	assert_int_equal(gm_total(&gm), sizeof(backing));
	assert_ptr_equal(gm_ptr(&gm, 1ULL << 32, 8), backing + 512 * 1024);
	/* The gap itself is not memory, and no access straddles it. */
	assert_null(gm_ptr(&gm, 512 * 1024, 1));
	assert_null(gm_ptr(&gm, 512 * 1024 - 4, 8));
	uint32_t v = 0xdeadbeef, r = 0;
	assert_int_equal(gm_write(&gm, (1ULL << 32) + 100, &v, 4), 0);
	assert_int_equal(gm_read(&gm, (1ULL << 32) + 100, &r, 4), 0);
	assert_int_equal(r, v);
	assert_int_equal(gm_write(&gm, (1ULL << 32) + 512 * 1024 - 2, &v, 4), -1);
}

/* Guest RAM on a 2 MiB boundary (huge pages for the guest), whole and
 * writable at both ends, for sizes that are and are not multiples of 2 MiB. */
static void create_aligns_to_2_mib(void **state)
{
	(void)state;
	static const uint64_t sizes[] = {128ULL << 20, (3ULL << 20) + 4096, 1ULL << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct guest_mem gm;
		assert_int_equal(gm_create(&gm, sizes[i], X86_MMIO_GAP_START, NULL), 0);
		assert_int_equal((uintptr_t)gm.mapping % (2U << 20), 0);
		assert_int_equal(gm.mapping_size, sizes[i]);
		uint8_t v = 0x5a;
		assert_int_equal(gm_write(&gm, 0, &v, 1), 0);
		assert_int_equal(gm_write(&gm, sizes[i] - 1, &v, 1), 0);
		assert_int_equal(gm_write(&gm, sizes[i], &v, 1), -1);
		gm_destroy(&gm);
	}
}

/* huge_pages "2M": a size that is not whole 2 MiB pages is refused before
 * any mapping; a mapping the pool cannot hold is an error naming the pool
 * (this host's pool is whatever it is: only a failure is checked). */
static void hugetlb_checks(void **state)
{
	(void)state;
	struct guest_mem gm;
	ember_err e = {{0}};
	assert_int_equal(gm_create_hugetlb(&gm, (3ULL << 20), X86_MMIO_GAP_START, &e), -1);
	assert_non_null(strstr(e.msg, "2 MiB pages"));
	/* 1 TiB: no test machine's pool holds that many. */
	assert_int_equal(gm_create_hugetlb(&gm, 1ULL << 40, X86_MMIO_GAP_START, &e), -1);
	assert_non_null(strstr(e.msg, "huge_pages 2M"));
}

/* gm_discard gives back whole discard units only: on 2 MiB-page memory a
 * 4 KiB range gives nothing back (and is no error), a range covering a
 * whole unit frees it. Anonymous base pages stand in for huge ones. */
static void discard_by_unit(void **state)
{
	(void)state;
	const size_t mib2 = 2u << 20, size = 4 * mib2;
	uint8_t *raw = mmap(NULL, size + mib2, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(raw != MAP_FAILED);
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + mib2 - 1) & ~(uintptr_t)(mib2 - 1));
	struct guest_mem gm;
	gm_init_from(&gm, p, size, size);
	gm.mapping = p;
	gm.discard_unit = mib2;
	memset(p, 0xab, size);
	assert_int_equal(gm_discard(&gm, 4096, 4096), 0);
	assert_int_equal(p[4096], 0xab); /* inside one unit: kept */
	assert_int_equal(gm_discard(&gm, mib2 - 4096, mib2 + 8192), 0);
	assert_int_equal(p[mib2], 0); /* the whole unit in the range: freed */
	assert_int_equal(p[mib2 - 4096], 0xab);
	assert_int_equal(p[2 * mib2], 0xab);
	gm.discard_unit = 0; /* base pages: exactly the range */
	assert_int_equal(gm_discard(&gm, 4096, 4096), 0);
	assert_int_equal(p[4096], 0);
	assert_int_equal(p[8192], 0xab);
	munmap(raw, size + mib2);
}

/* gm_ptr_w marks the 4 KiB pages a write covers, in the region it lies
 * in; gm_ptr and gm_read mark nothing; gm_take_written hands the bits over
 * and clears them. */
static void writes_are_tracked(void **state)
{
	(void)state;
	struct guest_mem gm;
	gm_init_from(&gm, backing, sizeof(backing), 512 * 1024);
	uint64_t bits[2][(512 * 1024 / 4096 + 63) / 64];
	uint32_t v = 1;
	assert_int_equal(gm_write(&gm, 0, &v, 4), 0); /* not tracked yet */
	assert_int_equal(gm_track_writes(&gm, NULL), 0);
	assert_non_null(gm_ptr_w(&gm, 4096 * 3 - 1, 2)); /* pages 2 and 3 */
	assert_int_equal(gm_write(&gm, (1ULL << 32) + 4096 * 64, &v, 4), 0);
	assert_null(gm_ptr_w(&gm, 512 * 1024 - 1, 2)); /* across the gap: nothing */
	assert_non_null(gm_ptr(&gm, 4096 * 9, 4096));
	assert_int_equal(gm_read(&gm, 4096 * 10, &v, 4), 0);
	memset(bits, 0, sizeof(bits));
	gm_take_written(&gm, 0, bits[0]);
	gm_take_written(&gm, 1, bits[1]);
	assert_int_equal(bits[0][0], 3ULL << 2);
	for (size_t w = 1; w < sizeof(bits[0]) / 8; w++)
		assert_int_equal(bits[0][w], 0);
	assert_int_equal(bits[1][0], 0);
	assert_int_equal(bits[1][1], 1);
	memset(bits, 0, sizeof(bits));
	gm_take_written(&gm, 0, bits[0]);
	assert_int_equal(bits[0][0], 0);
	for (int i = 0; i < gm.nr_regions; i++)
		free(gm.region[i].written);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ptr_checks_bounds),
		cmocka_unit_test(splits_around_gap),
		cmocka_unit_test(writes_are_tracked),
		cmocka_unit_test(create_aligns_to_2_mib),
		cmocka_unit_test(hugetlb_checks),
		cmocka_unit_test(discard_by_unit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
