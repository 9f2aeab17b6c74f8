/* The model-specific registers a vCPU starts with. */
#ifndef EMBER_X86_MSR_H
#define EMBER_X86_MSR_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* The most MSRs one call reads or writes. */
#define MSR_MAX_BATCH 256

int msr_setup_boot(int vcpu_fd, ember_err *e);
/* KVM_GET_MSRS / KVM_SET_MSRS of n (<= MSR_MAX_BATCH) MSRs; -1 and e set
 * naming the MSR KVM refused. */
int msr_get(int vcpu_fd, const uint32_t *index, uint64_t *value, size_t n, ember_err *e);
int msr_set(int vcpu_fd, const uint32_t *index, const uint64_t *value, size_t n, ember_err *e);

#endif
