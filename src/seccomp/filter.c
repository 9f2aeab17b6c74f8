/* Ember's default allowlists. Every rule is here because a thread of that
 * kind makes the call (found by reading the code and by strace of the
 * integration suite); docs/seccomp.md explains each group. Anything else
 * traps (SIGSYS: logged, seccomp.num_faults, exit 148).
 *
 * A thread inherits the filters of its creator, and the kernel runs every
 * filter a thread has: the vCPU threads, started by the VMM thread after
 * it installed its filter, run under both the "vmm" and the "vcpu" filter.
 * So the "vmm" list also holds what a vCPU thread needs (KVM_RUN, the kick
 * signal's return) and what starting one takes (clone3, rseq,
 * set_robust_list, seccomp itself); the "vcpu" list is the narrower one
 * that actually bounds a vCPU thread. */
#include "seccomp/filter.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

#define ANY(sys) {.nr = SCMP_SYS(sys)}
/* One condition: argument i (the low 32 bits) equals v. */
#define EQ(sys, i, v) {.nr = SCMP_SYS(sys), .n = 1, .c = {{.index = (i), .op = SC_EQ, .val = (v)}}}
#define IOCTL(req) EQ(ioctl, 1, (uint32_t)(req))
#define FUTEX(op) EQ(futex, 1, (op))
#define FCNTL(cmd) EQ(fcntl, 1, (cmd))
/* Argument i has none of the bits of mask. */
#define NONE_OF(sys, i, bits) \
	{.nr = SCMP_SYS(sys), .n = 1, .c = {{.index = (i), .op = SC_MASKED_EQ, .mask = (bits), .val = 0}}}

/* What glibc's locks, condition variables and pthread_join use. */
#define FUTEX_RULES \
	FUTEX(FUTEX_WAIT), FUTEX(FUTEX_WAKE), FUTEX(FUTEX_WAIT_PRIVATE), FUTEX(FUTEX_WAKE_PRIVATE), \
	FUTEX(FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME), \
	FUTEX(FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME), \
	FUTEX(FUTEX_WAIT_BITSET_PRIVATE)

/* malloc, thread stacks, guest memory, mapped kernel files, io_uring rings
 * and the vCPU run areas: never executable. */
#define MEMORY_RULES \
	NONE_OF(mmap, 2, PROT_EXEC), NONE_OF(mprotect, 2, PROT_EXEC), ANY(munmap), ANY(mremap), \
	ANY(brk), ANY(madvise)

/* Every thread: logging, time, ending, the kick signal's return. */
#define COMMON_RULES \
	ANY(read), ANY(write), ANY(close), ANY(clock_gettime), ANY(gettid), ANY(getpid), \
	ANY(rt_sigprocmask), ANY(rt_sigreturn), ANY(sched_yield), ANY(restart_syscall), \
	ANY(exit), ANY(exit_group), ANY(getrandom), \
	/* abort(): raise SIGABRT, reset its handler, raise again */ \
	EQ(tgkill, 2, SIGABRT), EQ(rt_sigaction, 0, SIGABRT)

/* The KVM ioctls a vCPU thread makes, on the VMM thread's filter too. */
#define VCPU_KVM_RULES IOCTL(KVM_RUN)

static struct seccomp_rule vmm_rules[] = {
	COMMON_RULES,
	MEMORY_RULES,
	FUTEX_RULES,
	/* Files named by the config or the API: kernel, initrd, drives, log
	 * and metrics paths, /dev/kvm, /dev/net/tun. */
	ANY(openat), ANY(fstat), ANY(newfstatat), ANY(lseek), ANY(pread64),
	/* The block device's Sync engine; the TAP. */
	ANY(preadv), ANY(pwritev), ANY(fdatasync), ANY(fsync), ANY(readv), ANY(writev),
	FCNTL(F_GETFL), FCNTL(F_SETFL), FCNTL(F_GETFD), FCNTL(F_GETPIPE_SZ),
	IOCTL(FIONREAD), /* metrics FIFO: room left */
	/* An out_queue writer (console, stderr) waiting for room on a
	 * non-blocking fd: PUT /serial's file is opened O_NONBLOCK. */
	ANY(poll), ANY(ppoll),
	/* The event loop and its fds. */
	ANY(epoll_create1), ANY(epoll_ctl), ANY(epoll_wait), ANY(epoll_pwait), ANY(eventfd2),
	ANY(timerfd_create), ANY(timerfd_settime), ANY(timerfd_gettime),
	/* The block device's io_uring engine. */
	ANY(io_uring_setup), ANY(io_uring_enter), ANY(io_uring_register),
	/* Building and running the VM. */
	IOCTL(KVM_GET_API_VERSION), IOCTL(KVM_CHECK_EXTENSION), IOCTL(KVM_CREATE_VM),
	IOCTL(KVM_GET_VCPU_MMAP_SIZE), IOCTL(KVM_GET_SUPPORTED_CPUID), IOCTL(KVM_CREATE_IRQCHIP),
	IOCTL(KVM_CREATE_PIT2), IOCTL(KVM_SET_TSS_ADDR), IOCTL(KVM_SET_IDENTITY_MAP_ADDR),
	IOCTL(KVM_SET_USER_MEMORY_REGION), IOCTL(KVM_IRQFD), IOCTL(KVM_IOEVENTFD),
	IOCTL(KVM_CREATE_VCPU), IOCTL(KVM_SET_CPUID2), IOCTL(KVM_SET_MSRS), IOCTL(KVM_GET_SREGS),
	IOCTL(KVM_SET_SREGS), IOCTL(KVM_SET_REGS), IOCTL(KVM_SET_FPU), IOCTL(KVM_GET_LAPIC),
	IOCTL(KVM_SET_LAPIC),
	VCPU_KVM_RULES,
	/* Snapshots: saving a paused VM's KVM state, restoring it into a new
	 * one (arch/x86/kvm_state.c), and writing the memory and state files
	 * whole (a temporary file renamed over the target). */
	IOCTL(KVM_GET_REGS), IOCTL(KVM_GET_XSAVE), IOCTL(KVM_SET_XSAVE), IOCTL(KVM_GET_XCRS),
	IOCTL(KVM_SET_XCRS), IOCTL(KVM_GET_MP_STATE), IOCTL(KVM_SET_MP_STATE),
	IOCTL(KVM_GET_VCPU_EVENTS), IOCTL(KVM_SET_VCPU_EVENTS), IOCTL(KVM_GET_DEBUGREGS),
	IOCTL(KVM_SET_DEBUGREGS), IOCTL(KVM_GET_CPUID2), IOCTL(KVM_GET_MSR_INDEX_LIST),
	IOCTL(KVM_GET_MSRS), IOCTL(KVM_GET_TSC_KHZ), IOCTL(KVM_SET_TSC_KHZ),
	IOCTL(KVM_GET_IRQCHIP), IOCTL(KVM_SET_IRQCHIP), IOCTL(KVM_GET_PIT2), IOCTL(KVM_SET_PIT2),
	IOCTL(KVM_GET_CLOCK), IOCTL(KVM_SET_CLOCK), IOCTL(KVM_GET_DIRTY_LOG),
	ANY(pwrite64), ANY(ftruncate), ANY(rename), ANY(renameat), ANY(renameat2),
	/* A Uffd-backed load (vmm/uffd.c): the userfaultfd (or
	 * /dev/userfaultfd), its registration, and the handshake with the
	 * page-fault handler over its Unix socket (socket and connect: with
	 * vsock's, below). */
	ANY(userfaultfd), IOCTL(USERFAULTFD_IOC_NEW), IOCTL(UFFDIO_API), IOCTL(UFFDIO_REGISTER),
	ANY(sendmsg),
	/* TAP devices. */
	IOCTL(TUNSETIFF), IOCTL(TUNSETOFFLOAD), IOCTL(TUNSETVNETHDRSZ),
	/* The console in raw mode and back. */
	IOCTL(TCGETS), IOCTL(TCSETS), IOCTL(TCSETSW), IOCTL(TCSETSF),
	/* Stopping the API server at exit (on this thread): its sockets are
	 * shut down, its socket file removed. */
	ANY(shutdown), ANY(unlink),
	/* The vsock device's Unix sockets: its listener at uds_path (bound
	 * when the VM is built), host clients, and guest connections to
	 * "<uds_path>_<port>". */
	EQ(socket, 0, AF_UNIX), ANY(bind), ANY(listen), ANY(connect),
	EQ(accept4, 3, SOCK_CLOEXEC | SOCK_NONBLOCK),
	EQ(recvfrom, 3, MSG_PEEK), /* a host client's CONNECT line, looked at first */
	FCNTL(F_DUPFD_CLOEXEC), /* the device's copy of the listener PUT /vsock bound */
	/* Starting vCPU threads (pthread_create) and kicking them. */
	ANY(clone3), ANY(set_robust_list), ANY(rseq), EQ(tgkill, 2, 34 /* SIGRTMIN */),
	EQ(prctl, 0, PR_SET_NAME), /* names a thread: "fc_vcpu N" */
	/* A vCPU thread installs its own filter: a plain one, no flags. */
	{.nr = SCMP_SYS(seccomp), .n = 2, .c = {{.index = 0, .op = SC_EQ, .val = SECCOMP_SET_MODE_FILTER},
						{.index = 1, .op = SC_EQ, .val = 0}}},
	/* glibc's first pthread_create installs its SIGSETXID handler (33). */
	EQ(rt_sigaction, 0, 33),
};

static struct seccomp_rule api_rules[] = {
	COMMON_RULES,
	MEMORY_RULES,
	FUTEX_RULES,
	/* The API socket: connections, and its requests' bodies. */
	EQ(accept4, 3, SOCK_CLOEXEC | SOCK_NONBLOCK), EQ(accept4, 3, SOCK_CLOEXEC),
	ANY(recvfrom), ANY(recvmsg), ANY(sendto), ANY(sendmsg), ANY(readv), ANY(writev),
	ANY(shutdown), FCNTL(F_GETFL), FCNTL(F_SETFL), IOCTL(FIONBIO),
	ANY(epoll_create1), ANY(epoll_ctl), ANY(epoll_wait), ANY(epoll_pwait), ANY(poll),
	ANY(ppoll),
};

static struct seccomp_rule vcpu_rules[] = {
	COMMON_RULES,
	MEMORY_RULES,
	FUTEX_RULES,
	VCPU_KVM_RULES,
	/* What a guest's virtio-mmio register write runs on the vCPU thread:
	 * a net device's activation sets the TAP's offloads, a block device's
	 * reset drains its io_uring. Queue notifications are eventfd writes. */
	IOCTL(TUNSETOFFLOAD), ANY(io_uring_enter),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

int seccomp_default_policy(struct seccomp_policy *out, ember_err *e)
{
	static const struct {
		struct seccomp_rule *rules;
		size_t n;
	} lists[SECCOMP_THREAD_KINDS] = {
		[SECCOMP_VMM] = {vmm_rules, N(vmm_rules)},
		[SECCOMP_API] = {api_rules, N(api_rules)},
		[SECCOMP_VCPU] = {vcpu_rules, N(vcpu_rules)},
	};
	for (int k = 0; k < SECCOMP_THREAD_KINDS; k++) {
		for (size_t i = 0; i < lists[k].n; i++)
			if (lists[k].rules[i].nr < 0)
				return err_set(e, "seccomp: %s filter, rule %zu: a syscall libseccomp "
					       "does not know", seccomp_thread_name(k), i);
		out->f[k] = (struct seccomp_filter){
			.default_action = SCMP_ACT_TRAP,
			.filter_action = SCMP_ACT_ALLOW,
			.rules = lists[k].rules,
			.n = lists[k].n,
		};
	}
	return 0;
}
