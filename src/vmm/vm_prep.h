/* The KVM VM made ahead of InstanceStart, on a thread of its own: /dev/kvm,
 * KVM_CREATE_VM, the interrupt controllers, the PIT and the supported CPUID.
 * None of it depends on the configuration, and it is mostly waiting in the
 * kernel (SRCU grace periods, a kernel thread for the PIT: 3 to 15 ms on a
 * busy host), so the controller starts it once the API is up and InstanceStart
 * takes the result. An error is kept and reported by InstanceStart, as if the
 * VM had been made there. */
#ifndef EMBER_VM_PREP_H
#define EMBER_VM_PREP_H

#include <pthread.h>
#include <stdbool.h>

#include "arch/x86/cpuid.h"
#include "util/err.h"
#include "vmm/vm.h"

struct vm_prep {
	pthread_t thread;
	bool started; /* a thread was started and not yet joined */
	struct vm vm; /* only its fds and run_size */
	struct cpuid_set supported;
	int rc;
	ember_err err;
	double ms, cpu_ms; /* wall and CPU time the thread took */
};

/* An empty vm_prep (nothing started, nothing to close). */
void vm_prep_init(struct vm_prep *p);
/* Starts the thread; if it cannot be started, nothing is prepared and
 * vmm_build makes the VM itself. */
void vm_prep_start(struct vm_prep *p);
/* True if vm_prep_start started a thread whose result was not taken yet. */
bool vm_prep_pending(const struct vm_prep *p);
/* Waits for the thread and moves its VM fds into vm (whose other fields are
 * kept) and the CPUID into supported; -1 with e set if it failed. */
int vm_prep_take(struct vm_prep *p, struct vm *vm, struct cpuid_set *supported, ember_err *e);
/* Waits for the thread, if any, and closes what it made. */
void vm_prep_discard(struct vm_prep *p);

#endif
