#include "arch/x86/acpi.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "devices/i8042.h"
#include "devices/serial.h"

/* Layouts from the ACPI specification, version 6.5, chapter 5. */
struct rsdp {
	char signature[8]; /* "RSD PTR " */
	uint8_t checksum;  /* of the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_addr;
	uint32_t length;
	uint64_t xsdt_addr;
	uint8_t ext_checksum; /* of all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));

struct sdt_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

/* Generic Address Structure; all zero means "not implemented". */
struct gas {
	uint8_t space_id, bit_width, bit_offset, access_size;
	uint64_t address;
} __attribute__((packed));

struct fadt {
	struct sdt_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	/* From here to century: fixed hardware, ignored when hardware-reduced. */
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct gas sleep_control_reg, sleep_status_reg;
	char hypervisor_vendor_id[8];
} __attribute__((packed));

struct madt {
	struct sdt_header h;
	uint32_t lapic_addr;
	uint32_t flags;
} __attribute__((packed));

struct madt_lapic {
	uint8_t type, length, processor_uid, apic_id;
	uint32_t flags;
} __attribute__((packed));

struct madt_ioapic {
	uint8_t type, length, ioapic_id, reserved;
	uint32_t addr;
	uint32_t gsi_base;
} __attribute__((packed));

_Static_assert(sizeof(struct rsdp) == 36, "RSDP is 36 bytes");
_Static_assert(sizeof(struct sdt_header) == 36, "SDT header is 36 bytes");
_Static_assert(sizeof(struct fadt) == 276, "FADT revision 6 is 276 bytes");
_Static_assert(sizeof(struct madt) == 44, "MADT header is 44 bytes");

#define OEM_ID "EMBER "
#define OEM_TABLE_ID "EMBERVM "
#define OEM_REVISION 1
#define CREATOR_ID "EMBR"
#define CREATOR_REVISION 1
#define HYPERVISOR_VENDOR_ID "EMBERVMM"

#define RSDP_REVISION 2 /* ACPI 2.0+: has the XSDT pointer */
#define XSDT_REVISION 1
#define FADT_REVISION 6
#define FADT_MINOR_VERSION 5 /* FADT 6.5 */
#define MADT_REVISION 6
#define DSDT_REVISION 6 /* 2 or more: 64-bit AML integers */

/* FADT flags (ACPI 6.5, table 5.10). The button flags say there are no
 * fixed-feature power or sleep buttons. */
#define FADT_F_PWR_BUTTON (1u << 4)
#define FADT_F_SLP_BUTTON (1u << 5)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)
/* IA-PC boot architecture flags (table 5.11). "8042" stays clear: the PS/2
 * controller is described in the DSDT instead, as Firecracker does. Unlike
 * Firecracker we say there is no CMOS RTC (there is none), which spares
 * Linux probing ports 0x70/0x71 and warning "rtc_cmos: not accessible". */
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED (1u << 3)
#define IAPC_PCIE_ASPM_CONTROLS (1u << 4)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

enum { MADT_LAPIC = 0, MADT_IOAPIC = 1 };
#define MADT_LAPIC_ENABLED 1
/* The KVM IOAPIC's ID register resets to 0; the table agrees with it. */
#define MADT_IOAPIC_ID 0

#define XSDT_ENTRIES 2 /* FADT, MADT */
#define TABLE_ALIGN 16

/* virtio-mmio over ACPI: the _HID Linux's virtio_mmio driver matches. */
#define VIRTIO_MMIO_HID "LNRO0005"
#define GIB_4 (1ULL << 32)

static size_t align_up(size_t v)
{
	return (v + TABLE_ALIGN - 1) & ~(size_t)(TABLE_ALIGN - 1);
}

static void header(struct sdt_header *h, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, OEM_ID, 6);
	memcpy(h->oem_table_id, OEM_TABLE_ID, 8);
	h->oem_revision = OEM_REVISION;
	memcpy(h->creator_id, CREATOR_ID, 4);
	h->creator_revision = CREATOR_REVISION;
}

/* Sets the checksum of the len-byte table at t once all its bytes are in. */
static void seal(uint8_t *t, size_t len)
{
	t[offsetof(struct sdt_header, checksum)] = 0;
	t[offsetof(struct sdt_header, checksum)] = mptable_checksum(t, len);
}

static void crs_interrupt(struct aml *a, uint32_t gsi)
{
	/* Edge-triggered, active high, not shared: what an irqfd pulse on
	 * the in-kernel IOAPIC delivers, and ISA's default for GSIs < 16. */
	aml_res_interrupt(a, true, false, false, gsi);
}

/* The UART and the PS/2 controller. In hardware-reduced mode Linux sets up
 * no legacy ISA interrupts by itself, so they are described here. */
static void dsdt_legacy(struct aml *a, unsigned flags)
{
	size_t dev = aml_device_open(a, "COM1");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_CRS");
	size_t crs = aml_restemplate_open(a);
	aml_res_io(a, SERIAL_COM1_BASE, SERIAL_COM1_BASE, 1, SERIAL_PORTS);
	crs_interrupt(a, SERIAL_COM1_IRQ);
	aml_restemplate_close(a, crs);
	aml_close(a, dev);
	if (flags & ACPI_NO_I8042)
		return;

	/* Data port 0x60 and command/status port 0x64, as Linux's i8042
	 * driver takes them from the first two I/O resources. */
	dev = aml_device_open(a, "PS2_");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0303");
	aml_name(a, "_CRS");
	crs = aml_restemplate_open(a);
	aml_res_io(a, I8042_BASE, I8042_BASE, 1, 1);
	aml_res_io(a, I8042_BASE + 4, I8042_BASE + 4, 1, 1);
	crs_interrupt(a, I8042_KBD_IRQ);
	aml_restemplate_close(a, crs);
	aml_close(a, dev);
}

static void dsdt_virtio(struct aml *a, unsigned index, const struct acpi_mmio_dev *d)
{
	char name[8];
	snprintf(name, sizeof(name), "V%03u", index);
	size_t dev = aml_device_open(a, name);
	aml_name(a, "_HID");
	aml_string(a, VIRTIO_MMIO_HID);
	aml_name(a, "_UID");
	aml_integer(a, index);
	/* DMA is cache-coherent (x86 assumes it; stated as the spec asks). */
	aml_name(a, "_CCA");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	size_t crs = aml_restemplate_open(a);
	aml_res_memory32_fixed(a, true, (uint32_t)d->addr, (uint32_t)d->size);
	crs_interrupt(a, d->gsi);
	aml_restemplate_close(a, crs);
	aml_close(a, dev);
}

/* VGEN, and the GED whose interrupt notifies it (Firecracker's layout). */
static void dsdt_vmgenid(struct aml *a, const struct acpi_vmgenid *vg)
{
	size_t dev = aml_device_open(a, "VGEN");
	aml_name(a, "_HID");
	aml_string(a, "VMGENCTR");
	aml_name(a, "_CID");
	aml_string(a, "VM_Gen_Counter");
	aml_name(a, "_DDN");
	aml_string(a, "VM_Gen_Counter");
	aml_name(a, "ADDR");
	size_t pkg = aml_package_open(a, 2);
	aml_integer(a, (uint32_t)ACPI_VMGENID_ADDR);
	aml_integer(a, (uint32_t)(ACPI_VMGENID_ADDR >> 32));
	aml_close(a, pkg);
	aml_close(a, dev);

	dev = aml_device_open(a, "GED_");
	aml_name(a, "_HID");
	aml_string(a, "ACPI0013");
	aml_name(a, "_CRS");
	size_t crs = aml_restemplate_open(a);
	crs_interrupt(a, vg->gsi);
	aml_restemplate_close(a, crs);
	size_t m = aml_method_open(a, "_EVT", 1);
	size_t cond = aml_if_arg0_equals_open(a, vg->gsi);
	aml_notify(a, "\\_SB_.VGEN", 0x80);
	aml_close(a, cond);
	aml_close(a, m);
	aml_close(a, dev);
}

static int check_devs(const struct acpi_mmio_dev *devs, size_t ndev, ember_err *e)
{
	if (ndev > ACPI_MAX_MMIO_DEVS)
		return err_set(e, "acpi: %zu virtio-mmio devices, at most %d fit", ndev,
			       ACPI_MAX_MMIO_DEVS);
	if (ndev && !devs)
		return err_set(e, "acpi: no device list");
	for (size_t i = 0; i < ndev; i++) {
		const struct acpi_mmio_dev *d = &devs[i];
		/* Memory32Fixed: the whole window below 4 GiB. */
		if (d->size == 0 || d->addr >= GIB_4 || d->size > GIB_4 - d->addr)
			return err_set(e, "acpi: device %zu window 0x%llx+0x%llx is not below 4 GiB",
				       i, (unsigned long long)d->addr, (unsigned long long)d->size);
		if (d->gsi >= ACPI_IOAPIC_PINS)
			return err_set(e, "acpi: device %zu GSI %u is not an IOAPIC pin", i, d->gsi);
	}
	return 0;
}

/* The DSDT at t, at most cap bytes; returns its length, 0 on error. */
static size_t write_dsdt(uint8_t *t, size_t cap, const struct acpi_mmio_dev *devs, size_t ndev,
			 unsigned flags, const struct acpi_vmgenid *vg, ember_err *e)
{
	struct aml a;
	struct sdt_header h;
	if (cap < sizeof(h)) {
		err_set(e, "acpi: no room for the DSDT");
		return 0;
	}
	aml_init(&a, t + sizeof(h), cap - sizeof(h));
	size_t sb = aml_scope_open(&a, "\\_SB_");
	dsdt_legacy(&a, flags);
	for (size_t i = 0; i < ndev; i++)
		dsdt_virtio(&a, (unsigned)i, &devs[i]);
	if (vg)
		dsdt_vmgenid(&a, vg);
	aml_close(&a, sb);
	if (a.error) {
		err_set(e, "acpi: DSDT: %s", a.error);
		return 0;
	}

	size_t len = sizeof(h) + a.len;
	memset(&h, 0, sizeof(h));
	header(&h, "DSDT", (uint32_t)len, DSDT_REVISION);
	memcpy(t, &h, sizeof(h));
	seal(t, len);
	return len;
}

static void write_madt(uint8_t *t, size_t len, unsigned vcpus)
{
	struct madt madt = {.lapic_addr = (uint32_t)X86_LAPIC_ADDR};
	header(&madt.h, "APIC", (uint32_t)len, MADT_REVISION);
	memcpy(t, &madt, sizeof(madt));
	t += sizeof(madt);
	struct madt_ioapic io = {.type = MADT_IOAPIC, .length = sizeof(io),
				 .ioapic_id = MADT_IOAPIC_ID, .addr = (uint32_t)X86_IOAPIC_ADDR};
	memcpy(t, &io, sizeof(io));
	t += sizeof(io);
	for (unsigned i = 0; i < vcpus; i++) {
		struct madt_lapic l = {.type = MADT_LAPIC, .length = sizeof(l),
				       .processor_uid = (uint8_t)i, .apic_id = (uint8_t)i,
				       .flags = MADT_LAPIC_ENABLED};
		memcpy(t, &l, sizeof(l));
		t += sizeof(l);
	}
	seal(t - len, len);
}

static void write_fadt(uint8_t *t, uint64_t dsdt_addr)
{
	struct fadt fadt = {
		.flags = FADT_F_HW_REDUCED_ACPI | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON,
		.iapc_boot_arch = IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED |
				  IAPC_PCIE_ASPM_CONTROLS | IAPC_CMOS_RTC_NOT_PRESENT,
		.minor_version = FADT_MINOR_VERSION,
		/* Only the 64-bit pointer: the spec wants DSDT zero when X_DSDT
		 * is set. No FACS: hardware-reduced platforms need none. */
		.x_dsdt = dsdt_addr,
	};
	header(&fadt.h, "FACP", sizeof(fadt), FADT_REVISION);
	memcpy(fadt.hypervisor_vendor_id, HYPERVISOR_VENDOR_ID, 8);
	memcpy(t, &fadt, sizeof(fadt));
	seal(t, sizeof(fadt));
}

static void write_xsdt(uint8_t *t, const uint64_t entries[XSDT_ENTRIES])
{
	struct sdt_header h;
	size_t len = sizeof(h) + XSDT_ENTRIES * sizeof(uint64_t);
	memset(&h, 0, sizeof(h));
	header(&h, "XSDT", (uint32_t)len, XSDT_REVISION);
	memcpy(t, &h, sizeof(h));
	memcpy(t + sizeof(h), entries, XSDT_ENTRIES * sizeof(uint64_t));
	seal(t, len);
}

static void write_rsdp(uint8_t *t, uint64_t xsdt_addr)
{
	struct rsdp rsdp = {.revision = RSDP_REVISION, .length = sizeof(rsdp),
			    .xsdt_addr = xsdt_addr};
	memcpy(rsdp.signature, "RSD PTR ", 8);
	memcpy(rsdp.oem_id, OEM_ID, 6);
	rsdp.checksum = mptable_checksum(&rsdp, 20);
	rsdp.ext_checksum = mptable_checksum(&rsdp, sizeof(rsdp));
	memcpy(t, &rsdp, sizeof(rsdp));
}

int acpi_build(const struct guest_mem *gm, unsigned vcpus, const struct acpi_mmio_dev *devs,
	       size_t ndev, unsigned flags, ember_err *e)
{
	return acpi_build_with(gm, vcpus, devs, ndev, flags, NULL, e);
}

int acpi_build_with(const struct guest_mem *gm, unsigned vcpus, const struct acpi_mmio_dev *devs,
		    size_t ndev, unsigned flags, const struct acpi_vmgenid *vg, ember_err *e)
{
	if (vcpus == 0 || vcpus > X86_MAX_VCPUS)
		return err_set(e, "acpi: %u vCPUs is out of range", vcpus);
	if (check_devs(devs, ndev, e))
		return -1;

	/* Laid out in a local buffer, then copied in one checked write:
	 * RSDP, XSDT, FADT, MADT, then the DSDT whose size only its AML knows. */
	uint8_t buf[ACPI_TABLES_MAX];
	memset(buf, 0, sizeof(buf));
	size_t xsdt_off = align_up(sizeof(struct rsdp));
	size_t fadt_off = align_up(xsdt_off + sizeof(struct sdt_header) +
				   XSDT_ENTRIES * sizeof(uint64_t));
	size_t madt_off = align_up(fadt_off + sizeof(struct fadt));
	size_t madt_len = sizeof(struct madt) + sizeof(struct madt_ioapic) +
			  vcpus * sizeof(struct madt_lapic);
	size_t dsdt_off = align_up(madt_off + madt_len);

	if (vg && vg->gsi >= ACPI_IOAPIC_PINS)
		return err_set(e, "acpi: VMGenID GSI %u is not an IOAPIC pin", vg->gsi);
	size_t dsdt_len = write_dsdt(buf + dsdt_off, sizeof(buf) - dsdt_off, devs, ndev, flags, vg, e);
	if (dsdt_len == 0)
		return -1;
	write_madt(buf + madt_off, madt_len, vcpus);
	write_fadt(buf + fadt_off, ACPI_RSDP_ADDR + dsdt_off);
	const uint64_t entries[XSDT_ENTRIES] = {ACPI_RSDP_ADDR + fadt_off, ACPI_RSDP_ADDR + madt_off};
	write_xsdt(buf + xsdt_off, entries);
	write_rsdp(buf, ACPI_RSDP_ADDR + xsdt_off);

	size_t end = dsdt_off + dsdt_len;
	if (gm_write(gm, ACPI_RSDP_ADDR, buf, end))
		return err_set(e, "acpi: guest memory does not cover 0x%llx..0x%llx",
			       (unsigned long long)ACPI_RSDP_ADDR,
			       (unsigned long long)(ACPI_RSDP_ADDR + end));
	return 0;
}
