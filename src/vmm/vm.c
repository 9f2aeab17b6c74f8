#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "util/thread_stack.h"

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{KVM_CAP_IRQCHIP, "IRQCHIP"},	      {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
	{KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"}, {KVM_CAP_PIT2, "PIT2"},
	{KVM_CAP_IRQFD, "IRQFD"},	      {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
	{KVM_CAP_EXT_CPUID, "EXT_CPUID"},
};

static int open_kvm(struct vm *vm, ember_err *e)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return err_set(e, "/dev/kvm: %s", strerror(errno));
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION)
		return err_set(e, "/dev/kvm: KVM API version %d, need %d", api, KVM_API_VERSION);
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0)
			return err_set(e, "/dev/kvm: KVM lacks KVM_CAP_%s", required_caps[i].name);
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		return err_set(e, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	return 0;
}

int vm_alloc_memory(struct vm *vm, uint64_t mem_bytes, ember_err *e)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	return gm_create(&vm->mem, mem_bytes, X86_MMIO_GAP_START, e);
}

int vm_alloc_hugetlb_memory(struct vm *vm, uint64_t mem_bytes, ember_err *e)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	return gm_create_hugetlb(&vm->mem, mem_bytes, X86_MMIO_GAP_START, e);
}

int vm_map_memory_file(struct vm *vm, int fd, uint64_t mem_bytes, ember_err *e)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem_from_file = true;
	return gm_create_from_file(&vm->mem, fd, mem_bytes, X86_MMIO_GAP_START, e);
}

/* /dev/kvm and an empty VM: what needs no guest memory. On failure the
 * fds made so far stay in vm for the caller to close. */
static int make_empty_vm(struct vm *vm, ember_err *e)
{
	if (open_kvm(vm, e))
		return -1;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return err_set(e, "KVM_CREATE_VM: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_KVM_TSS_ADDR) < 0)
		return err_set(e, "KVM_SET_TSS_ADDR: %s", strerror(errno));
	uint64_t idmap = X86_KVM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return err_set(e, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	return 0;
}

static void close_fds(struct vm *vm)
{
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
}

static void *early_thread(void *arg)
{
	struct vm_early *v = arg;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	v->rc = make_empty_vm(&v->shell, &v->err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	v->ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	return NULL;
}

void vm_early_start(struct vm_early *v)
{
	memset(v, 0, sizeof(*v));
	v->shell.kvm_fd = v->shell.vm_fd = -1;
	pthread_attr_t attr;
	if (pthread_attr_init(&attr))
		return;
	if (!pthread_attr_setstacksize(&attr, EMBER_THREAD_STACK_SIZE))
		v->threaded = pthread_create(&v->thread, &attr, early_thread, v) == 0;
	pthread_attr_destroy(&attr);
}

/* Its thread's result; made here if no thread could be started. */
static void early_join(struct vm_early *v)
{
	if (v->joined)
		return;
	v->joined = true;
	if (v->threaded)
		pthread_join(v->thread, NULL);
	else
		early_thread(v);
}

int vm_early_adopt(struct vm_early *v, struct vm *vm, ember_err *e)
{
	early_join(v);
	if (v->rc) {
		if (e)
			*e = v->err;
		return -1;
	}
	/* The fds move to vm: the shell no longer owns them. */
	vm->kvm_fd = v->shell.kvm_fd;
	vm->vm_fd = v->shell.vm_fd;
	vm->run_size = v->shell.run_size;
	v->shell.kvm_fd = v->shell.vm_fd = -1;
	return 0;
}

void vm_early_discard(struct vm_early *v)
{
	early_join(v);
	close_fds(&v->shell);
}

int vm_create_kvm(struct vm *vm, ember_err *e)
{
	if (vm->vm_fd < 0 && make_empty_vm(vm, e))
		return -1;
	/* Guest memory before the interrupt controllers and the PIT (KVM
	 * needs no order): measured on Linux 6.18, a memslot registered after
	 * them waits 5-15 ms on a busy host (an SRCU grace period, seemingly
	 * one their I/O-bus registration left in flight), registered first
	 * ~0.3 ms, and the irqchip and PIT stay ~0.1 ms (bench/README.md). */
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct gm_region *r = &vm->mem.region[i];
		struct kvm_userspace_memory_region slot = {
			.slot = (uint32_t)i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
			.flags = vm->dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			return err_set(e, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return err_set(e, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
	/* The dummy speaker makes KVM handle port 0x61 itself. */
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return err_set(e, "KVM_CREATE_PIT2: %s", strerror(errno));

	return 0;
}

int vm_create(struct vm *vm, uint64_t mem_bytes, ember_err *e)
{
	if (vm_alloc_memory(vm, mem_bytes, e))
		return -1;
	return vm_create_kvm(vm, e);
}

void vm_destroy(struct vm *vm)
{
	gm_destroy(&vm->mem);
	close_fds(vm);
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, ember_err *e)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return err_set(e, "eventfd: %s", strerror(errno));
	struct kvm_ioeventfd io = {
		.datamatch = datamatch, .addr = addr, .len = len, .fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
	};
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
		close(fd);
		return err_set(e, "KVM_IOEVENTFD at 0x%llx: %s", (unsigned long long)addr,
			       strerror(errno));
	}
	return fd;
}

int vm_irqfd(struct vm *vm, unsigned gsi, ember_err *e)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return err_set(e, "eventfd: %s", strerror(errno));
	struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		close(fd);
		return err_set(e, "KVM_IRQFD for GSI %u: %s", gsi, strerror(errno));
	}
	return fd;
}
