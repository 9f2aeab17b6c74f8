/* A vCPU's register state at the kernel's entry point: for the 64-bit Linux
 * boot protocol, long mode with an identity-mapped first GiB, flat
 * segments, RSI pointing at boot_params; for PVH, 32-bit protected mode
 * without paging, EBX pointing at hvm_start_info. */
#ifndef EMBER_X86_REGS_H
#define EMBER_X86_REGS_H

#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"
#include "guest/guest_mem.h"

/* Writes the GDT (64-bit, or 32-bit for PVH), an empty IDT and the boot page
 * tables into guest memory. */
int regs_write_boot_tables(const struct guest_mem *gm, bool pvh, ember_err *e);

/* Sets special, general and FPU registers of a vCPU for entry at `entry`,
 * through the PVH entry point if pvh. */
int regs_setup_boot(int vcpu_fd, uint64_t entry, bool pvh, ember_err *e);

/* Routes LINT0 to ExtINT (the PIC) and LINT1 to NMI. */
int regs_setup_lapic(int vcpu_fd, ember_err *e);

/* Encodes a GDT descriptor (flags as in the descriptor's bits 40..55). */
uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);

#endif
