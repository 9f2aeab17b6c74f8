/* A vCPU's register state at the 64-bit Linux entry point: long mode with an
 * identity-mapped first GiB, flat segments, RSI pointing at boot_params. */
#ifndef EMBER_X86_REGS_H
#define EMBER_X86_REGS_H

#include <stdint.h>

#include "util/err.h"
#include "vmm/guest_mem.h"

/* Writes the GDT, an empty IDT and the boot page tables into guest memory. */
int regs_write_boot_tables(const struct guest_mem *gm, ember_err *e);

/* Sets special, general and FPU registers of a vCPU for entry at `entry`. */
int regs_setup_boot(int vcpu_fd, uint64_t entry, ember_err *e);

/* Routes LINT0 to ExtINT (the PIC) and LINT1 to NMI. */
int regs_setup_lapic(int vcpu_fd, ember_err *e);

/* Encodes a GDT descriptor (flags as in the descriptor's bits 40..55). */
uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);

#endif
