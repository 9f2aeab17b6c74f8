/* A KVM virtual machine: /dev/kvm, the VM fd, guest memory and its memslots,
 * the in-kernel interrupt controllers (PIC, IOAPIC, LAPICs) and PIT. */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/err.h"
#include "guest/guest_mem.h"

struct vm {
	int kvm_fd;
	int vm_fd;
	int run_size; /* size of each vCPU's kvm_run mapping */
	/* Set before vm_create_kvm: KVM logs the guest's writes to memory
	 * (machine-config track_dirty_pages, for diff snapshots). */
	bool dirty_log;
	/* Guest RAM is a private mapping of a snapshot's memory file (its
	 * untouched pages are the file's, not zero). */
	bool mem_from_file;
	struct guest_mem mem;
};

int vm_create(struct vm *vm, uint64_t mem_bytes, ember_err *e);
/* vm_create in two steps, so that a caller can fill guest memory while the
 * KVM side is made: vm_alloc_memory maps guest RAM (no KVM yet); then
 * vm_create_kvm opens /dev/kvm and creates the VM (unless vm already has
 * one, from vm_early_adopt), registers the memory with
 * KVM and creates the interrupt controllers and PIT. Most of vm_create_kvm's time
 * is spent waiting in the kernel, not computing (bench/README.md, "Creation"). */
int vm_alloc_memory(struct vm *vm, uint64_t mem_bytes, ember_err *e);
/* The same from 2 MiB hugetlbfs pages (huge_pages "2M"). */
int vm_alloc_hugetlb_memory(struct vm *vm, uint64_t mem_bytes, ember_err *e);
int vm_create_kvm(struct vm *vm, ember_err *e);
/* An empty KVM VM (no memory, interrupt controllers or PIT yet), made on a
 * thread of its own while the caller does other work: a snapshot load
 * reads and checks the state file meanwhile. KVM_CREATE_VM mostly sleeps
 * (15-25 ms in the nested test host on Linux 6.1, where KVM starts a
 * kernel thread per VM and moves it into the caller's cgroups; see
 * docs/snapshot-format.md). vm_early_adopt waits for it and hands it to vm,
 * whose guest memory is already mapped; vm_create_kvm then goes on from
 * there (a second adopt gets no VM: vm_create_kvm then makes one).
 * vm_early_discard waits for it and closes it unless adopted; both may be
 * called in any order, any number of times. */
struct vm_early {
	pthread_t thread;
	bool threaded, joined;
	int rc;
	double ms; /* its thread's wall time */
	struct vm shell; /* only the fds */
	ember_err err;
};
void vm_early_start(struct vm_early *v);
int vm_early_adopt(struct vm_early *v, struct vm *vm, ember_err *e);
void vm_early_discard(struct vm_early *v);
/* vm_alloc_memory for a restore: guest RAM is a private mapping of a
 * snapshot's memory file (fd), laid out the same way. */
int vm_map_memory_file(struct vm *vm, int fd, uint64_t mem_bytes, ember_err *e);
void vm_destroy(struct vm *vm);
/* Creates an eventfd whose writes inject an edge on `gsi`. */
int vm_irqfd(struct vm *vm, unsigned gsi, ember_err *e);
/* Creates an eventfd that a guest write of `datamatch` (len bytes) at MMIO
 * address addr signals, without leaving the kernel. */
int vm_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, uint64_t datamatch, ember_err *e);

#endif
