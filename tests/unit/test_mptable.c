#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"

static uint8_t mem[1 << 20];

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

static void check_tables(unsigned cpus)
{
	struct guest_mem gm;
	memset(mem, 0, sizeof(mem));
	gm_init_from(&gm, mem, sizeof(mem), X86_MMIO_GAP_START);
	assert_int_equal(mptable_write(&gm, cpus, NULL), 0);

	const uint8_t *mpf = mem + X86_EBDA_START;
	assert_memory_equal(mpf, "_MP_", 4);
	assert_int_equal(sum(mpf, 16), 0);
	uint32_t physptr;
	memcpy(&physptr, mpf + 4, 4);
	assert_int_equal(physptr, X86_EBDA_START + 16);

	const uint8_t *mpc = mem + physptr;
	assert_memory_equal(mpc, "PCMP", 4);
	uint16_t len;
	memcpy(&len, mpc + 4, 2);
	assert_true(physptr + len <= X86_EBDA_END);
	assert_int_equal(sum(mpc, len), 0);

	/* Count processor entries (type 0, 20 bytes) and check the BSP flag. */
	const uint8_t *p = mpc + 44;
	unsigned procs = 0, ioapics = 0, intsrc = 0;
	while (p < mpc + len) {
		switch (p[0]) {
		case 0:
			assert_int_equal(p[1], procs); /* APIC id */
			assert_int_equal(p[3] & 2, procs == 0 ? 2 : 0);
			procs++;
			p += 20;
			break;
		case 2:
			assert_int_equal(p[1], cpus + 1);
			ioapics++;
			p += 8;
			break;
		case 3:
			intsrc++;
			p += 8;
			break;
		default:
			p += 8;
			break;
		}
	}
	assert_int_equal(procs, cpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(intsrc, MPTABLE_IOAPIC_PINS);
}

static void tables_for_1_to_32_cpus(void **state)
{
	(void)state;
	for (unsigned n = 1; n <= X86_MAX_VCPUS; n++)
		check_tables(n);
}

static void rejects_bad_counts(void **state)
{
	(void)state;
	struct guest_mem gm;
	gm_init_from(&gm, mem, sizeof(mem), X86_MMIO_GAP_START);
	assert_int_equal(mptable_write(&gm, 0, NULL), -1);
	assert_int_equal(mptable_write(&gm, X86_MAX_VCPUS + 1, NULL), -1);
	/* Guest memory too small to hold the EBDA. */
	gm_init_from(&gm, mem, 0x9fc00, X86_MMIO_GAP_START);
	assert_int_equal(mptable_write(&gm, 1, NULL), -1);
}

static void checksum_balances(void **state)
{
	(void)state;
	uint8_t buf[8] = {1, 2, 3, 4, 5, 6, 7, 0};
	buf[7] = mptable_checksum(buf, 7);
	assert_int_equal(sum(buf, 8), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tables_for_1_to_32_cpus),
		cmocka_unit_test(rejects_bad_counts),
		cmocka_unit_test(checksum_balances),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
