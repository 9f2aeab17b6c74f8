/* The model-specific registers a vCPU starts with. */
#ifndef EMBER_X86_MSR_H
#define EMBER_X86_MSR_H

#include "util/err.h"

int msr_setup_boot(int vcpu_fd, ember_err *e);

#endif
