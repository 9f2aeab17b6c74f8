#include "vmm/vm_prep.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/thread_stack.h"

static double now_ms(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void *prep_thread(void *arg)
{
	struct vm_prep *p = arg;
	double t0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_THREAD_CPUTIME_ID);
	p->rc = vm_open_kvm(&p->vm, &p->err);
	if (!p->rc)
		p->rc = cpuid_supported(p->vm.kvm_fd, &p->supported, &p->err);
	p->ms = now_ms(CLOCK_MONOTONIC) - t0;
	p->cpu_ms = now_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
	return NULL;
}

static void close_fds(struct vm *vm)
{
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
}

void vm_prep_init(struct vm_prep *p)
{
	memset(p, 0, sizeof(*p));
	p->vm.kvm_fd = p->vm.vm_fd = -1;
}

void vm_prep_start(struct vm_prep *p)
{
	vm_prep_init(p);
	pthread_attr_t attr;
	if (pthread_attr_init(&attr))
		return;
	int rc = pthread_attr_setstacksize(&attr, EMBER_THREAD_STACK_SIZE);
	if (!rc)
		rc = pthread_create(&p->thread, &attr, prep_thread, p);
	pthread_attr_destroy(&attr);
	p->started = rc == 0;
}

bool vm_prep_pending(const struct vm_prep *p)
{
	return p->started;
}

int vm_prep_take(struct vm_prep *p, struct vm *vm, struct cpuid_set *supported, ember_err *e)
{
	pthread_join(p->thread, NULL);
	p->started = false;
	if (p->rc) {
		close_fds(&p->vm);
		if (e)
			*e = p->err;
		return -1;
	}
	vm->kvm_fd = p->vm.kvm_fd;
	vm->vm_fd = p->vm.vm_fd;
	vm->run_size = p->vm.run_size;
	*supported = p->supported;
	p->vm.kvm_fd = p->vm.vm_fd = -1;
	return 0;
}

void vm_prep_discard(struct vm_prep *p)
{
	if (p->started)
		pthread_join(p->thread, NULL);
	p->started = false;
	close_fds(&p->vm);
}
