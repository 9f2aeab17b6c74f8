#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "arch/x86/layout.h"

static uint8_t mem[1 << 20];

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* ---- AML encodings ---- */

static void pkglen_sizes(void **state)
{
	(void)state;
	uint8_t b[4];
	/* One byte: up to 63 in all, its own byte included. */
	assert_int_equal(aml_pkglen_encode(0, b), 1);
	assert_int_equal(b[0], 0x01);
	assert_int_equal(aml_pkglen_encode(62, b), 1);
	assert_int_equal(b[0], 0x3f);
	/* Two bytes: 63 + 2 = 65 = 0x041, low nibble in the lead byte. */
	assert_int_equal(aml_pkglen_encode(63, b), 2);
	assert_int_equal(b[0], 0x41);
	assert_int_equal(b[1], 0x04);
	assert_int_equal(aml_pkglen_encode(0xfff - 2, b), 2);
	assert_int_equal(b[0], 0x4f);
	assert_int_equal(b[1], 0xff);
	/* Three bytes from a total of 0x1000 on. */
	assert_int_equal(aml_pkglen_encode(0xfff - 1, b), 3);
	assert_int_equal(b[0], 0x81);
	assert_int_equal(b[1], 0x00);
	assert_int_equal(b[2], 0x01);
	assert_int_equal(aml_pkglen_encode(0xfffff - 3, b), 3);
	assert_int_equal(b[0], 0x8f);
	/* Four bytes up to 2^28 - 1. */
	assert_int_equal(aml_pkglen_encode(0xfffff - 2, b), 4);
	assert_int_equal(b[0], 0xc1);
	assert_int_equal(b[1], 0x00);
	assert_int_equal(b[2], 0x00);
	assert_int_equal(b[3], 0x01);
	assert_int_equal(aml_pkglen_encode(AML_PKGLEN_MAX - 4, b), 4);
	assert_int_equal(b[0], 0xcf);
	assert_int_equal(b[3], 0xff);
	assert_int_equal(aml_pkglen_encode(AML_PKGLEN_MAX - 3, b), 0);
	assert_int_equal(aml_pkglen_encode(SIZE_MAX, b), 0);
}

static void expect(struct aml *a, const uint8_t *bytes, size_t n)
{
	assert_null(a->error);
	assert_int_equal(a->len, n);
	assert_memory_equal(a->data, bytes, n);
}

static void integers(void **state)
{
	(void)state;
	static const struct {
		uint64_t v;
		uint8_t enc[9];
		size_t n;
	} cases[] = {
		{0, {0x00}, 1},
		{1, {0x01}, 1},
		{2, {0x0a, 0x02}, 2},
		{0xff, {0x0a, 0xff}, 2},
		{0x100, {0x0b, 0x00, 0x01}, 3},
		{0xffff, {0x0b, 0xff, 0xff}, 3},
		{0x10000, {0x0c, 0x00, 0x00, 0x01, 0x00}, 5},
		{0xffffffff, {0x0c, 0xff, 0xff, 0xff, 0xff}, 5},
		{0x100000000, {0x0e, 0, 0, 0, 0, 1, 0, 0, 0}, 9},
		{UINT64_MAX, {0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[16];
		struct aml a;
		aml_init(&a, buf, sizeof(buf));
		aml_integer(&a, cases[i].v);
		expect(&a, cases[i].enc, cases[i].n);
	}
}

static void strings_and_names(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct aml a;

	aml_init(&a, buf, sizeof(buf));
	aml_string(&a, "LNRO0005");
	expect(&a, (const uint8_t *)"\x0dLNRO0005", 10);

	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP0501");
	expect(&a, (const uint8_t[]){0x0c, 0x41, 0xd0, 0x05, 0x01}, 5);

	aml_init(&a, buf, sizeof(buf));
	aml_name(&a, "_HID");
	expect(&a, (const uint8_t *)"\x08_HID", 5);

	/* Short segments are padded with '_'. */
	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "\\_SB");
	expect(&a, (const uint8_t *)"\\_SB_", 5);

	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "_SB_.COM1");
	expect(&a, (const uint8_t *)"\x2e_SB_COM1", 9);

	aml_init(&a, buf, sizeof(buf));
	aml_name_string(&a, "\\_SB.PCI0.S08");
	expect(&a, (const uint8_t *)"\\\x2f\x03_SB_PCI0S08_", 15);

	static const char *bad[] = {"", "\\", "abcd", "1ABC", "ABCDE", "A..B", "A.", "A-B"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_name_string(&a, bad[i]);
		assert_non_null(a.error);
	}
	static const char *bad_eisa[] = {"PNP050", "pnp0501", "PNP050G", "PNP05011"};
	for (size_t i = 0; i < sizeof(bad_eisa) / sizeof(bad_eisa[0]); i++) {
		aml_init(&a, buf, sizeof(buf));
		aml_eisaid(&a, bad_eisa[i]);
		assert_non_null(a.error);
	}
	aml_init(&a, buf, sizeof(buf));
	aml_string(&a, "caf\xc3\xa9");
	assert_non_null(a.error);
}

static void device_and_package(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct aml a;
	aml_init(&a, buf, sizeof(buf));
	size_t d = aml_device_open(&a, "V000");
	aml_name(&a, "_UID");
	aml_integer(&a, 0);
	aml_close(&a, d);
	/* DeviceOp, PkgLength 1 + 4 + 6 = 11, name, Name(_UID, Zero). */
	expect(&a, (const uint8_t *)"\x5b\x82\x0bV000\x08_UID\x00", 13);

	aml_init(&a, buf, sizeof(buf));
	size_t p = aml_package_open(&a, 2);
	aml_integer(&a, 5);
	aml_string(&a, "A");
	aml_close(&a, p);
	expect(&a, (const uint8_t[]){0x12, 0x07, 0x02, 0x0a, 0x05, 0x0d, 'A', 0}, 8);
}

/* A buffer big enough for a 3-byte PkgLength: the contents must move
 * intact behind the inserted length and BufferSize. */
static void long_buffer(void **state)
{
	(void)state;
	static uint8_t buf[8192];
	struct aml a;
	aml_init(&a, buf, sizeof(buf));
	size_t m = aml_buffer_open(&a);
	for (unsigned i = 0; i < 5000; i++) {
		uint8_t v = (uint8_t)(i * 7);
		aml_bytes(&a, &v, 1);
	}
	aml_buffer_close(&a, m);
	assert_null(a.error);
	/* BufferOp, PkgLength (3 bytes), WordPrefix 5000, the bytes. */
	assert_int_equal(a.len, 1 + 3 + 3 + 5000);
	assert_int_equal(buf[0], 0x11);
	uint32_t total = (uint32_t)(buf[1] & 0x0f) | ((uint32_t)buf[2] << 4) | ((uint32_t)buf[3] << 12);
	assert_int_equal(buf[1] >> 6, 2);
	assert_int_equal(total, 3 + 3 + 5000);
	assert_int_equal(buf[4], 0x0b);
	assert_int_equal(buf[5] | (buf[6] << 8), 5000);
	for (unsigned i = 0; i < 5000; i++)
		assert_int_equal(buf[7 + i], (uint8_t)(i * 7));
}

static void resource_template(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct aml a;
	aml_init(&a, buf, sizeof(buf));
	size_t m = aml_restemplate_open(&a);
	aml_res_memory32_fixed(&a, true, 0xc0001000, 0x1000);
	aml_res_interrupt(&a, true, false, false, 5);
	aml_restemplate_close(&a, m);
	static const uint8_t want[] = {
		0x11, 0x1a, 0x0a, 0x17,				 /* Buffer, PkgLength, size 23 */
		0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, /* Memory32Fixed RW */
		0x00, 0x10, 0x00, 0x00,
		0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, /* consumer, edge, high */
		0x79,						  /* End Tag, then checksum */
	};
	assert_null(a.error);
	assert_int_equal(a.len, sizeof(want) + 1);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(sum(buf + 4, 23), 0);

	aml_init(&a, buf, sizeof(buf));
	aml_res_io(&a, 0x3f8, 0x3f8, 1, 8);
	aml_res_interrupt(&a, false, true, true, 0x12345678);
	expect(&a, (const uint8_t[]){0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x89, 0x06,
				      0x00, 0x0d, 0x01, 0x78, 0x56, 0x34, 0x12},
	       17);
}

/* Writes that do not fit stop at the buffer's end and leave an error. */
static void bounds(void **state)
{
	(void)state;
	uint8_t buf[32];
	/* The whole thing takes 22 bytes. */
	for (size_t cap = 0; cap < 22; cap++) {
		memset(buf, 0xa5, sizeof(buf));
		struct aml a;
		aml_init(&a, buf, cap);
		size_t sb = aml_scope_open(&a, "\\_SB_");
		size_t d = aml_device_open(&a, "COM1");
		aml_name(&a, "_UID");
		aml_integer(&a, 0x1234);
		aml_close(&a, d);
		aml_close(&a, sb);
		assert_non_null(a.error);
		assert_true(a.len <= cap);
		for (size_t i = cap; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 0xa5);
	}
	/* A mark that was never handed out. */
	struct aml a;
	aml_init(&a, buf, sizeof(buf));
	aml_close(&a, 5);
	assert_non_null(a.error);
}

/* ---- The tables ---- */

struct tables {
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt;
};

static const uint8_t *table_at(uint64_t addr, const char *sig)
{
	assert_true(addr >= ACPI_RSDP_ADDR && addr + 36 <= ACPI_TABLES_END);
	const uint8_t *t = mem + addr;
	assert_memory_equal(t, sig, 4);
	uint32_t len = rd32(t + 4);
	assert_true(len >= 36 && addr + len <= ACPI_TABLES_END);
	assert_int_equal(sum(t, len), 0);
	assert_memory_equal(t + 10, "EMBER ", 6);
	return t;
}

static struct tables build_flags(unsigned vcpus, const struct acpi_mmio_dev *devs, size_t ndev,
				 unsigned flags)
{
	struct guest_mem gm;
	memset(mem, 0, sizeof(mem));
	gm_init_from(&gm, mem, sizeof(mem), X86_MMIO_GAP_START);
	ember_err e = {{0}};
	/* Always with the VM Generation ID device, as the VMM builds it, so
	 * that iasl and acpiexec below check its AML too. */
	const struct acpi_vmgenid vg = {.gsi = X86_VMGENID_GSI};
	assert_int_equal(acpi_build_with(&gm, vcpus, devs, ndev, flags, &vg, &e), 0);

	struct tables t;
	t.rsdp = mem + ACPI_RSDP_ADDR;
	assert_memory_equal(t.rsdp, "RSD PTR ", 8);
	assert_int_equal(sum(t.rsdp, 20), 0);
	assert_int_equal(t.rsdp[15], 2); /* revision */
	assert_int_equal(rd32(t.rsdp + 20), 36);
	assert_int_equal(sum(t.rsdp, 36), 0);

	t.xsdt = table_at(rd64(t.rsdp + 24), "XSDT");
	assert_int_equal(rd32(t.xsdt + 4), 36 + 2 * 8);
	t.fadt = table_at(rd64(t.xsdt + 36), "FACP");
	t.madt = table_at(rd64(t.xsdt + 44), "APIC");
	assert_int_equal(rd32(t.fadt + 4), 276);
	assert_int_equal(t.fadt[8], 6);			  /* revision */
	assert_int_equal(t.fadt[131], 5);		  /* minor version */
	assert_int_equal(rd32(t.fadt + 112) & (1u << 20), 1u << 20); /* HW_REDUCED_ACPI */
	assert_int_equal(rd32(t.fadt + 40), 0);		  /* 32-bit DSDT unused */
	/* IA-PC flags: no VGA, MSI, ASPM or CMOS RTC; no "8042" (in DSDT). */
	assert_int_equal(t.fadt[109] | (t.fadt[110] << 8), 0x3c);
	t.dsdt = table_at(rd64(t.fadt + 140), "DSDT");
	return t;
}

static struct tables build(unsigned vcpus, const struct acpi_mmio_dev *devs, size_t ndev)
{
	return build_flags(vcpus, devs, ndev, 0);
}

static void count_madt(const uint8_t *madt, unsigned *lapics, unsigned *ioapics)
{
	uint32_t len = rd32(madt + 4);
	assert_int_equal(rd32(madt + 36), X86_LAPIC_ADDR);
	*lapics = *ioapics = 0;
	for (uint32_t off = 44; off < len;) {
		const uint8_t *s = madt + off;
		assert_true(s[1] >= 2 && off + s[1] <= len);
		if (s[0] == 0) {
			assert_int_equal(s[1], 8);
			assert_int_equal(s[2], *lapics); /* processor UID */
			assert_int_equal(s[3], *lapics); /* APIC id */
			assert_int_equal(rd32(s + 4) & 1, 1);
			(*lapics)++;
		} else if (s[0] == 1) {
			assert_int_equal(s[1], 12);
			assert_int_equal(rd32(s + 4), X86_IOAPIC_ADDR);
			assert_int_equal(rd32(s + 8), 0);
			(*ioapics)++;
		}
		off += s[1];
	}
}

static void madt_for(unsigned vcpus)
{
	struct tables t = build(vcpus, NULL, 0);
	unsigned lapics, ioapics;
	count_madt(t.madt, &lapics, &ioapics);
	assert_int_equal(lapics, vcpus);
	assert_int_equal(ioapics, 1);
}

static void madt_1_2_32(void **state)
{
	(void)state;
	madt_for(1);
	madt_for(2);
	madt_for(X86_MAX_VCPUS);
}

static size_t count(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	size_t c = 0;
	for (size_t i = 0; i + m <= n; i++)
		if (!memcmp(hay + i, needle, m))
			c++;
	return c;
}

static void fill_devs(struct acpi_mmio_dev *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = (struct acpi_mmio_dev){.addr = X86_VIRTIO_MMIO_START + i * 0x1000,
					      .size = 0x1000, .gsi = (uint32_t)(5 + i % 19)};
}

static void dsdt_devices(void **state)
{
	(void)state;
	static const size_t counts[] = {0, 1, 3, ACPI_MAX_MMIO_DEVS};
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		size_t n = counts[c];
		struct acpi_mmio_dev devs[ACPI_MAX_MMIO_DEVS];
		fill_devs(devs, n);
		struct tables t = build(2, devs, n);
		uint32_t len = rd32(t.dsdt + 4);
		assert_int_equal(count(t.dsdt, len, "\x0dLNRO0005", 10), n);
		/* The UART and PS/2 controller are always there. */
		assert_int_equal(count(t.dsdt, len, "\x0c\x41\xd0\x05\x01", 5), 1);
		assert_int_equal(count(t.dsdt, len, "\x0c\x41\xd0\x03\x03", 5), 1);
		for (size_t i = 0; i < n; i++) {
			uint8_t mem32[12] = {0x86, 0x09, 0x00, 0x01};
			uint32_t base = (uint32_t)devs[i].addr, size = (uint32_t)devs[i].size;
			memcpy(mem32 + 4, &base, 4);
			memcpy(mem32 + 8, &size, 4);
			assert_int_equal(count(t.dsdt, len, mem32, sizeof(mem32)), 1);
			uint8_t irq[9] = {0x89, 0x06, 0x00, 0x03, 0x01};
			memcpy(irq + 5, &devs[i].gsi, 4);
			assert_true(count(t.dsdt, len, irq, sizeof(irq)) >= 1);
			char name[24];
			snprintf(name, sizeof(name), "V%03zu", i);
			assert_int_equal(count(t.dsdt, len, name, 4), 1);
		}
	}
}

/* ACPI_NO_I8042 (EMBER_DEBUG_NO_ACPI_I8042): the DSDT has no PS/2
 * controller (no PNP0303, no PS2_), everything else stays. */
static void dsdt_without_i8042(void **state)
{
	(void)state;
	struct acpi_mmio_dev devs[2];
	fill_devs(devs, 2);
	struct tables t = build_flags(2, devs, 2, ACPI_NO_I8042);
	uint32_t len = rd32(t.dsdt + 4);
	assert_int_equal(count(t.dsdt, len, "\x0c\x41\xd0\x03\x03", 5), 0);
	assert_int_equal(count(t.dsdt, len, "PS2_", 4), 0);
	assert_int_equal(count(t.dsdt, len, "\x0c\x41\xd0\x05\x01", 5), 1);
	assert_int_equal(count(t.dsdt, len, "\x0dLNRO0005", 10), 2);
	/* Still no "8042" flag in the FADT: Linux must not probe it. */
	assert_int_equal(t.fadt[109] & 0x2, 0);
}

/* VGEN with its ADDR package (the ID's address as two DWords), and the GED
 * on its interrupt with an _EVT method that notifies VGEN. */
static void dsdt_vmgenid(void **state)
{
	(void)state;
	struct tables t = build(1, NULL, 0);
	size_t n = rd32(t.dsdt + 4);
	assert_int_equal(count(t.dsdt, n, "VGEN", 4), 2); /* the device, Notify's target */
	assert_int_equal(count(t.dsdt, n, "VMGENCTR", 8), 1);
	assert_int_equal(count(t.dsdt, n, "VM_Gen_Counter", 14), 2);
	assert_int_equal(count(t.dsdt, n, "ACPI0013", 8), 1);
	assert_int_equal(count(t.dsdt, n, "_EVT", 4), 1);
	/* Package(2) { DWord 0xe4000, Zero } */
	static const uint8_t addr[] = {'A', 'D', 'D', 'R', 0x12, 0x08, 0x02, 0x0c, 0x00, 0x40, 0x0e,
				       0x00, 0x00};
	assert_int_equal(count(t.dsdt, n, addr, sizeof(addr)), 1);
	/* If (LEqual (Arg0, 21)) { Notify (\_SB_.VGEN, 0x80) } */
	static const uint8_t evt[] = {0x93, 0x68, 0x0a, X86_VMGENID_GSI, 0x86, '\\', 0x2e,
				      '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', 0x0a, 0x80};
	assert_int_equal(count(t.dsdt, n, evt, sizeof(evt)), 1);
}

static void rejects(void **state)
{
	(void)state;
	struct guest_mem gm;
	struct acpi_mmio_dev devs[ACPI_MAX_MMIO_DEVS + 1];
	fill_devs(devs, ACPI_MAX_MMIO_DEVS + 1);
	memset(mem, 0, sizeof(mem));
	gm_init_from(&gm, mem, sizeof(mem), X86_MMIO_GAP_START);
	ember_err e = {{0}};

	assert_int_equal(acpi_build(&gm, 2, devs, ACPI_MAX_MMIO_DEVS + 1, 0, &e), -1);
	assert_non_null(strstr(e.msg, "virtio-mmio devices"));
	assert_int_equal(acpi_build(&gm, 0, NULL, 0, 0, &e), -1);
	assert_int_equal(acpi_build(&gm, X86_MAX_VCPUS + 1, NULL, 0, 0, &e), -1);
	assert_int_equal(acpi_build(&gm, 1, NULL, 1, 0, &e), -1);

	struct acpi_mmio_dev bad = {.addr = 0xc0001000, .size = 0x1000, .gsi = ACPI_IOAPIC_PINS};
	assert_int_equal(acpi_build(&gm, 1, &bad, 1, 0, &e), -1);
	bad = (struct acpi_mmio_dev){.addr = 0xfffff000, .size = 0x2000, .gsi = 5};
	assert_int_equal(acpi_build(&gm, 1, &bad, 1, 0, &e), -1);
	bad = (struct acpi_mmio_dev){.addr = 0x100000000, .size = 0x1000, .gsi = 5};
	assert_int_equal(acpi_build(&gm, 1, &bad, 1, 0, &e), -1);
	bad = (struct acpi_mmio_dev){.addr = 0xc0001000, .size = 0, .gsi = 5};
	assert_int_equal(acpi_build(&gm, 1, &bad, 1, 0, &e), -1);
	bad = (struct acpi_mmio_dev){.addr = UINT64_MAX, .size = 2, .gsi = 5};
	assert_int_equal(acpi_build(&gm, 1, &bad, 1, 0, &e), -1);
	/* Nothing was written by the failed calls. */
	assert_int_equal(count(mem + ACPI_RSDP_ADDR, 0x20000, "RSD PTR ", 8), 0);

	/* Guest memory that ends before the tables do. */
	gm_init_from(&gm, mem, ACPI_RSDP_ADDR + 0x100, X86_MMIO_GAP_START);
	assert_int_equal(acpi_build(&gm, 1, NULL, 0, 0, &e), -1);
	assert_non_null(strstr(e.msg, "guest memory"));
}

/* ---- ACPICA's own tools (Debian acpica-tools), when installed ---- */

static int have(const char *tool)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

/* Runs cmd in dir with its output in dir/log; fails on a non-zero exit or
 * an output line that holds any of the words in bad[]. */
static void run_clean(const char *dir, const char *cmd, const char *log, const char *const *bad)
{
	char line[1024];
	snprintf(line, sizeof(line), "cd %s && %s >%s 2>&1", dir, cmd, log);
	int rc = system(line);
	char path[300];
	snprintf(path, sizeof(path), "%s/%s", dir, log);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int found = 0;
	while (fgets(line, sizeof(line), f))
		for (const char *const *w = bad; *w; w++)
			if (strstr(line, *w)) {
				fprintf(stderr, "%s: %s", cmd, line);
				found = 1;
			}
	fclose(f);
	if (rc != 0)
		fprintf(stderr, "%s: exit status %d\n", cmd, rc);
	assert_int_equal(rc, 0);
	assert_int_equal(found, 0);
}

static void save(const char *dir, const char *name, const uint8_t *t)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	size_t len = rd32(t + 4);
	assert_int_equal(fwrite(t, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static int make_dir(void **state)
{
	static char dir[] = "/tmp/ember-acpi-XXXXXX";
	memcpy(dir + sizeof(dir) - 7, "XXXXXX", 6);
	*state = mkdtemp(dir);
	return *state ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", (const char *)*state);
	return system(cmd) == 0 ? 0 : -1;
}

/* iasl disassembles every table (checking checksums and AML) without a
 * complaint, and the DSDT's disassembly compiles back cleanly. (iasl 2020
 * cannot read a bare RSDP, which the tests above check byte by byte.) */
static void iasl_disassembles(void **state)
{
	if (!have("iasl"))
		skip();
	const char *dir = *state;
	struct acpi_mmio_dev devs[ACPI_MAX_MMIO_DEVS];
	fill_devs(devs, ACPI_MAX_MMIO_DEVS);
	struct tables t = build(X86_MAX_VCPUS, devs, ACPI_MAX_MMIO_DEVS);
	static const char *const bad[] = {"Error", "Warning", "Invalid", "Incorrect", "AE_", NULL};
	static const char *const names[] = {"xsdt", "facp", "apic", "dsdt"};
	const uint8_t *tables[] = {t.xsdt, t.fadt, t.madt, t.dsdt};
	for (size_t i = 0; i < 4; i++) {
		char file[16], cmd[64], log[32];
		snprintf(file, sizeof(file), "%s.dat", names[i]);
		snprintf(cmd, sizeof(cmd), "iasl -d %s", file);
		snprintf(log, sizeof(log), "%s.log", names[i]);
		save(dir, file, tables[i]);
		run_clean(dir, cmd, log, bad);
	}
	/* Its summary says "0 Errors, 0 Warnings"; problems are "Error  nnnn". */
	static const char *const not_clean[] = {"Error ", "Warning ", NULL};
	/* Except error 6035, "_HID suffix must be all hex digits": the VM
	 * Generation ID's _HID is Firecracker's "VMGENCTR", which is what
	 * Linux's vmgenid driver matches, valid ACPI id or not. */
	run_clean(dir, "iasl -vw 6035 -p again dsdt.dsl", "again.log", not_clean);
}

/* ACPICA's interpreter, the code Linux runs, loads the namespace and
 * evaluates every device's _CRS without an exception. */
static void acpiexec_loads(void **state)
{
	if (!have("acpiexec"))
		skip();
	const char *dir = *state;
	struct acpi_mmio_dev devs[3];
	fill_devs(devs, 3);
	struct tables t = build(4, devs, 3);
	save(dir, "facp.dat", t.fadt);
	save(dir, "apic.dat", t.madt);
	save(dir, "dsdt.dat", t.dsdt);
	static const char *const bad[] = {"Error", "Exception", "AE_", "Warning", NULL};
	run_clean(dir,
		  "acpiexec -b 'Evaluate \\_SB.COM1._CRS; Evaluate \\_SB.PS2_._CRS; "
		  "Evaluate \\_SB.V000._CRS; Evaluate \\_SB.V002._HID' facp.dat apic.dat dsdt.dat",
		  "acpiexec.log", bad);
	char path[300], line[256];
	snprintf(path, sizeof(path), "%s/acpiexec.log", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int evaluated = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "returned object"))
			evaluated++;
	fclose(f);
	assert_int_equal(evaluated, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pkglen_sizes),
		cmocka_unit_test(integers),
		cmocka_unit_test(strings_and_names),
		cmocka_unit_test(device_and_package),
		cmocka_unit_test(long_buffer),
		cmocka_unit_test(resource_template),
		cmocka_unit_test(bounds),
		cmocka_unit_test(madt_1_2_32),
		cmocka_unit_test(dsdt_devices),
		cmocka_unit_test(dsdt_without_i8042),
		cmocka_unit_test(dsdt_vmgenid),
		cmocka_unit_test(rejects),
		cmocka_unit_test_setup_teardown(iasl_disassembles, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(acpiexec_loads, make_dir, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
