/* ACPI tables for x86_64 guests (see docs/acpi.md): RSDP, XSDT, a
 * hardware-reduced FADT, MADT (local APICs and the IOAPIC) and a DSDT that
 * lists the legacy UART and PS/2 controller and every virtio-mmio device. */
#ifndef EMBER_X86_ACPI_H
#define EMBER_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "guest/guest_mem.h"

/* The RSDP sits where Linux searches the BIOS area for it; the other tables
 * follow it, all below ACPI_TABLES_END. */
#define ACPI_RSDP_ADDR 0xe0000ULL
#define ACPI_TABLES_MAX 0x4000ULL
#define ACPI_TABLES_END (ACPI_RSDP_ADDR + ACPI_TABLES_MAX)

/* The KVM IOAPIC has 24 pins; each device needs one. */
#define ACPI_IOAPIC_PINS 24
#define ACPI_MAX_MMIO_DEVS ACPI_IOAPIC_PINS

struct acpi_mmio_dev {
	uint64_t addr, size;
	uint32_t gsi;
};

/* acpi_build flags. ACPI_NO_I8042 leaves the PS/2 controller out of the
 * DSDT (it is still emulated): Linux then does not probe it, as under
 * QEMU's microvm. Only for the nested-boot measurement (docs/reliability.md),
 * through EMBER_DEBUG_NO_ACPI_I8042=1. */
#define ACPI_NO_I8042 0x1u
/* The VM Generation ID (Firecracker's VMGenID, for snapshot clones): the
 * 16-byte ID lives at ACPI_VMGENID_ADDR, in the BIOS area above the
 * tables (not RAM in the e820 map); the DSDT's VGEN device (_HID
 * "VMGENCTR", _CID "VM_Gen_Counter") gives its address in ADDR, and a
 * Generic Event Device (ACPI0013) on `gsi` turns an interrupt into
 * Notify(VGEN, 0x80), after which the guest reads the new ID and reseeds
 * its RNG. */
#define ACPI_VMGENID_ADDR ACPI_TABLES_END
#define ACPI_VMGENID_SIZE 16
struct acpi_vmgenid {
	uint32_t gsi;
};

/* Writes all tables for vcpus CPUs (APIC ids 0..vcpus-1) and the ndev
 * virtio-mmio devices into guest memory from ACPI_RSDP_ADDR on. */
int acpi_build(const struct guest_mem *gm, unsigned vcpus, const struct acpi_mmio_dev *devs,
	       size_t ndev, unsigned flags, ember_err *e);
/* The same with a VM Generation ID device (vmgenid may be NULL). */
int acpi_build_with(const struct guest_mem *gm, unsigned vcpus, const struct acpi_mmio_dev *devs,
		    size_t ndev, unsigned flags, const struct acpi_vmgenid *vmgenid, ember_err *e);

#endif
