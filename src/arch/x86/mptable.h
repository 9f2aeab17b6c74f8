/* Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI
 * learns its CPUs, its IOAPIC and how ISA interrupts are routed. */
#ifndef EMBER_X86_MPTABLE_H
#define EMBER_X86_MPTABLE_H

#include <stdint.h>

#include "util/err.h"
#include "vmm/guest_mem.h"

#define MPTABLE_IOAPIC_PINS 24

/* Writes the floating pointer and configuration table at X86_EBDA_START
 * for cpus processors (APIC ids 0..cpus-1) and one IOAPIC. */
int mptable_write(const struct guest_mem *gm, unsigned cpus, ember_err *e);

/* The byte sum that makes a table's checksum field correct. */
uint8_t mptable_checksum(const void *data, size_t len);

#endif
