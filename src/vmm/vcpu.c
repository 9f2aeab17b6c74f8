#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/msr.h"
#include "arch/x86/regs.h"
#include "seccomp/seccomp.h"
#include "util/log.h"
#include "util/thread_stack.h"

int vcpu_kick_signal(void)
{
	return SIGRTMIN;
}

static void kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

void vcpu_signals_init(void)
{
	struct sigaction sa = {.sa_handler = kick_handler};
	sigemptyset(&sa.sa_mask);
	sigaction(vcpu_kick_signal(), &sa, NULL); /* no SA_RESTART: KVM_RUN must return */
}

int vcpu_create(struct vcpu *v, struct vm *vm, unsigned index, ember_err *e)
{
	memset(v, 0, sizeof(*v));
	v->index = index;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0)
		return err_set(e, "KVM_CREATE_VCPU %u: %s", index, strerror(errno));
	v->run_size = (size_t)vm->run_size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return err_set(e, "mmap of vCPU %u run area: %s", index, strerror(errno));
	}
	return 0;
}

int vcpu_set_cpuid(struct vcpu *v, const struct cpuid_set *guest, const char brand[48],
		   unsigned count, bool smt, ember_err *e)
{
	struct cpuid_set cpuid = *guest;
	cpuid_normalize(&cpuid, v->index, count, smt, brand);
	if (cpuid_set_vcpu(v->fd, &cpuid, e))
		return err_prefix(e, "vCPU %u", v->index);
	return 0;
}

int vcpu_setup_boot(struct vcpu *v, uint64_t entry, bool pvh, ember_err *e)
{
	if (msr_setup_boot(v->fd, e) || regs_setup_boot(v->fd, entry, pvh, e) ||
	    regs_setup_lapic(v->fd, e))
		return err_prefix(e, "vCPU %u", v->index);
	return 0;
}

/* Handles one exit; returns false when the thread must stop. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	const struct vcpu_env *env = v->env;
	char why[128];

	switch (r->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)r + r->io.data_offset;
		/* String I/O repeats the access `count` times over the buffer. */
		for (uint32_t i = 0; i < r->io.count; i++, data += r->io.size) {
			if (env->metrics)
				metric_inc(r->io.direction == KVM_EXIT_IO_OUT
						   ? &env->metrics->exit_io_out
						   : &env->metrics->exit_io_in);
			if (r->io.direction == KVM_EXIT_IO_OUT)
				io_bus_write(env->pio, r->io.port, data, r->io.size);
			else
				io_bus_read(env->pio, r->io.port, data, r->io.size);
		}
		return true;
	}
	case KVM_EXIT_MMIO:
		if (env->metrics)
			metric_inc(r->mmio.is_write ? &env->metrics->exit_mmio_write
						    : &env->metrics->exit_mmio_read);
		if (r->mmio.is_write)
			io_bus_write(env->mmio, r->mmio.phys_addr, r->mmio.data, r->mmio.len);
		else
			io_bus_read(env->mmio, r->mmio.phys_addr, r->mmio.data, r->mmio.len);
		return true;
	case KVM_EXIT_SHUTDOWN: {
		/* A triple fault: Linux's last resort for reboot, as Firecracker
		 * treats it; but also how a guest crashing looks, so say so. No
		 * rip: on AMD, KVM has reset the vCPU before it reports this, so
		 * the registers show the reset vector, not the crash. */
		LOG_W("vCPU %u: triple fault (shutdown); ending the VM as a guest reset", v->index);
		env->on_exit(env->ctx, 0, "guest reset (triple fault)");
		return false;
	}
	case KVM_EXIT_SYSTEM_EVENT:
		env->on_exit(env->ctx, 0, r->system_event.type == KVM_SYSTEM_EVENT_RESET
						  ? "guest reset" : "guest shutdown");
		return false;
	case KVM_EXIT_HLT:
		env->on_exit(env->ctx, 0, "guest halted");
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why), "vCPU %u: KVM entry failed (hardware reason 0x%llx)",
			 v->index, (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
		if (env->metrics)
			metric_inc(&env->metrics->failures);
		env->on_exit(env->ctx, 1, why);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(why, sizeof(why), "vCPU %u: KVM internal error (suberror %u)", v->index,
			 r->internal.suberror);
		if (env->metrics)
			metric_inc(&env->metrics->failures);
		env->on_exit(env->ctx, 1, why);
		return false;
	default:
		snprintf(why, sizeof(why), "vCPU %u: unexpected KVM exit reason %u", v->index,
			 r->exit_reason);
		if (env->metrics)
			metric_inc(&env->metrics->failures);
		env->on_exit(env->ctx, 1, why);
		return false;
	}
}

/* An I/O exit just handled is only finished (an IN's value stored in the
 * registers) by the next KVM_RUN: before it parks, a vCPU runs with
 * immediate_exit, which completes it and returns EINTR, so that a paused
 * vCPU's state, as a snapshot saves it, is whole. An access KVM completes in
 * several exits (an MMIO split over pages) returns its next exit instead:
 * it is handled and the run repeated. False if the VM is to end. */
static bool complete_io(struct vcpu *v)
{
	for (int i = 0; i < 16; i++) {
		v->run->immediate_exit = 1;
		int r = ioctl(v->fd, KVM_RUN, 0);
		v->run->immediate_exit = 0;
		if (r < 0)
			return true; /* EINTR: nothing (more) was pending */
		if (!handle_exit(v))
			return false;
	}
	return true;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	snprintf(name, sizeof(name), "fc_vcpu %u", v->index);
	log_thread_name(name);
	pthread_setname_np(pthread_self(), name);

	/* Only vCPU threads take the kick signal. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, vcpu_kick_signal());
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	/* Before the first KVM_RUN, that is before any guest input. */
	ember_err e;
	if (seccomp_apply(SECCOMP_VCPU, &e)) {
		v->env->on_exit(v->env->ctx, 1, e.msg);
		return NULL;
	}

	while (!atomic_load(v->env->stop)) {
		struct vcpu_pause *p = v->env->pause;
		pthread_mutex_lock(&p->lock);
		if (p->requested) {
			pthread_mutex_unlock(&p->lock);
			if (!complete_io(v)) {
				/* The VM ends: wake a pause waiting for this vCPU
				 * (it sees `stop`). */
				pthread_mutex_lock(&p->lock);
				pthread_cond_broadcast(&p->cond);
				pthread_mutex_unlock(&p->lock);
				break;
			}
			pthread_mutex_lock(&p->lock);
			if (!p->requested) {
				pthread_mutex_unlock(&p->lock);
				continue;
			}
			p->parked++;
			pthread_cond_broadcast(&p->cond);
			while (p->requested && !atomic_load(v->env->stop))
				pthread_cond_wait(&p->cond, &p->lock);
			p->parked--;
			pthread_mutex_unlock(&p->lock);
			continue;
		}
		pthread_mutex_unlock(&p->lock);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				continue;
			}
			char why[128];
			snprintf(why, sizeof(why), "vCPU %u: KVM_RUN: %s", v->index, strerror(errno));
			v->env->on_exit(v->env->ctx, 1, why);
			break;
		}
		if (!handle_exit(v))
			break;
	}
	return NULL;
}

int vcpu_start(struct vcpu *v, const struct vcpu_env *env, ember_err *e)
{
	v->env = env;
	pthread_attr_t attr;
	int rc = pthread_attr_init(&attr);
	if (rc)
		return err_set(e, "vCPU %u: cannot start thread: %s", v->index, strerror(rc));
	rc = pthread_attr_setstacksize(&attr, EMBER_THREAD_STACK_SIZE);
	if (!rc)
		rc = pthread_create(&v->thread, &attr, vcpu_thread, v);
	pthread_attr_destroy(&attr);
	if (rc)
		return err_set(e, "vCPU %u: cannot start thread: %s", v->index, strerror(rc));
	v->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->started)
		return;
	/* immediate_exit covers a kick that lands just before KVM_RUN. */
	v->run->immediate_exit = 1;
	pthread_kill(v->thread, vcpu_kick_signal());
}

void vcpu_join(struct vcpu *v)
{
	if (v->started)
		pthread_join(v->thread, NULL);
	v->started = false;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, v->run_size);
	if (v->fd > 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}
