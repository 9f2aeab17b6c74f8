/* KVM's state of an x86 VM and its vCPUs, to and from JSON (the VM state
 * file, vmm/snapshot_file.h). Each KVM structure is kept as a hex blob of
 * exactly its size (util/blob.h), so a restore either gets every byte KVM
 * gave or refuses the file; nothing is interpreted here but the lengths
 * and the MSR and CPUID entry counts. */
#ifndef EMBER_X86_KVM_STATE_H
#define EMBER_X86_KVM_STATE_H

#include <jansson.h>

#include "util/err.h"

/* Upper bounds on the variable parts (far above what KVM reports). */
#define KVM_STATE_MAX_MSRS 512
#define KVM_STATE_MAX_CPUID 256

/* A vCPU's whole state: CPUID, registers, special registers, XSAVE (FPU
 * and extended state), XCRs, every MSR KVM lists as saveable, the LAPIC,
 * MP state, pending events, debug registers and the TSC frequency. The
 * vCPU must not be running (paused, its pending I/O completed). */
int kvm_vcpu_save(int kvm_fd, int vcpu_fd, json_t **out, ember_err *e);
/* Sets a freshly created vCPU to the saved state, in the order KVM needs
 * (CPUID first; MSRs after the LAPIC; events last). */
int kvm_vcpu_restore(int vcpu_fd, json_t *state, ember_err *e);

/* The in-kernel PIC (master, slave), IOAPIC, PIT and KVM clock. */
int kvm_vm_save(int vm_fd, json_t **out, ember_err *e);
int kvm_vm_restore(int vm_fd, json_t *state, ember_err *e);

#endif
