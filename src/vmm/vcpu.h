/* vCPUs: one thread each, running KVM_RUN and dispatching I/O exits to the
 * buses. A vCPU that stops the VM (guest reset, fatal exit) reports through
 * the owner's vcpu_exit_fn; the owner stops the others with vcpu_kick(). */
#ifndef EMBER_VCPU_H
#define EMBER_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "arch/x86/cpuid.h"
#include "util/err.h"
#include "guest/io_bus.h"
#include "vmm/metrics.h"
#include "vmm/vm.h"

/* code: the process exit status the event asks for (0 for a guest reset). */
typedef void (*vcpu_exit_fn)(void *ctx, int code, const char *why);

/* Pausing: the VMM sets `requested`, kicks every vCPU and waits until all
 * are parked; a parked vCPU waits on `cond` until resumed or stopped. */
struct vcpu_pause {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool requested;
	unsigned parked;
};

struct vcpu_env {
	const struct io_bus *pio;
	const struct io_bus *mmio;
	vcpu_exit_fn on_exit;
	void *ctx;
	atomic_bool *stop;
	struct vcpu_pause *pause;
	struct vcpu_metrics *metrics; /* NULL: not counted */
};

struct vcpu {
	unsigned index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool started;
	const struct vcpu_env *env;
};

int vcpu_create(struct vcpu *v, struct vm *vm, unsigned index, ember_err *e);
/* The guest's CPUID (a CPU template already applied), normalised for this
 * vCPU of `count`. Before any MSR: KVM decides which MSRs a vCPU has from
 * its CPUID. */
int vcpu_set_cpuid(struct vcpu *v, const struct cpuid_set *guest, const char brand[48],
		   unsigned count, bool smt, ember_err *e);
/* The boot MSRs, registers at `entry` (the PVH entry's 32-bit state if pvh)
 * and the LAPIC. */
int vcpu_setup_boot(struct vcpu *v, uint64_t entry, bool pvh, ember_err *e);
int vcpu_start(struct vcpu *v, const struct vcpu_env *env, ember_err *e);
/* Makes a running KVM_RUN return so the thread sees env->stop. */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);

/* Installs the no-op signal handler used for kicks; call once at start. */
void vcpu_signals_init(void);
int vcpu_kick_signal(void);

#endif
