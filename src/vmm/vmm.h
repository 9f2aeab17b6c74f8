/* A microVM: the KVM VM, its vCPUs and devices, and the VMM thread's event
 * loop. builder.c turns a vmm_config into one; vmm.c runs and ends it. */
#ifndef EMBER_VMM_H
#define EMBER_VMM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <termios.h>

#include "devices/boot_timer.h"
#include "devices/i8042.h"
#include "vmm/virtio_devs.h"
#include "devices/serial.h"
#include "vmm/config.h"
#include "util/event_loop.h"
#include "guest/io_bus.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

struct vmm_options {
	bool boot_timer;
	int console_in;	 /* host fd feeding the guest's serial input, or -1 */
	int console_out; /* host fd receiving the guest's serial output */
	struct metrics *metrics; /* the process's, or NULL */
	struct mmds *mmds;	 /* the controller's MMDS data, or NULL */
};

struct vmm {
	struct vm vm;
	struct vcpu vcpus[MAX_VCPUS];
	unsigned nr_vcpus;
	struct io_bus pio, mmio;
	struct serial serial;
	struct i8042 i8042;
	struct boot_timer boot_timer;
	int serial_irq_fd, kbd_irq_fd;
	struct metrics *metrics; /* the process's, or NULL */
	struct virtio_devs virtio;

	struct event_loop loop;
	struct vcpu_env env;
	struct vcpu_pause pause;
	atomic_bool stop;
	atomic_flag exit_claimed; /* the first exit request wins */
	int exit_code;
	char exit_why[160];
	int exit_fd;  /* eventfd: someone asked the VM to end */
	int wake_fd;  /* eventfd: the serial FIFO has room for input again */
	int uffd;     /* a Uffd-backed restore's userfaultfd, or -1 */
	int vmgenid_irq_fd; /* the VM Generation ID's GED interrupt */

	int console_in;
	bool console_in_armed;
	int tty_fd; /* console_in while it is a terminal we put in raw mode */
	bool tty_raw;
	struct termios saved_tty;
};

/* Builds the VM from cfg: memory, kernel, initrd, boot tables, devices and
 * configured vCPUs. On failure the partial VM is torn down. */
int vmm_build(struct vmm *m, const struct vmm_config *cfg, const struct vmm_options *opt,
	      ember_err *e);
/* Rebuilds a VM from a snapshot: cfg is the config saved in it (with any
 * overrides applied), mem its memory (a file, or a page-fault handler), state its state file's
 * payload. The devices are created from cfg, then everything is set to the
 * saved state; on failure the partial VM is torn down. */
struct vmm_mem_source {
	int fd;		       /* File: the memory file, mapped privately */
	const char *uffd_path; /* Uffd (fd -1): the page-fault handler's socket */
	/* The KVM VM, started by the caller before it read the state file
	 * (vm.h); vmm_restore adopts it. NULL: made in line. */
	struct vm_early *early_vm;
};
int vmm_restore(struct vmm *m, const struct vmm_config *cfg, const struct vmm_options *opt,
		const struct vmm_mem_source *mem, json_t *state, ember_err *e);
/* A new VM Generation ID in guest memory, and the interrupt that tells the
 * guest (a restored clone: its kernel reseeds its RNG). */
int vmm_new_generation(struct vmm *m, bool notify, ember_err *e);
/* Starts the vCPUs (InstanceStart). The VM's own events are then served by
 * vmm_dispatch() whenever vmm_event_fd() (an epoll fd) is readable. */
int vmm_start(struct vmm *m, ember_err *e);
int vmm_event_fd(const struct vmm *m);
void vmm_dispatch(struct vmm *m);
/* Stops every vCPU (returns once all are parked) and lets them run again. */
void vmm_pause(struct vmm *m);
void vmm_resume(struct vmm *m);
/* True once the VM asked to end (guest reset, vCPU failure, request). */
bool vmm_ended(struct vmm *m);
/* Stops and joins the vCPUs; returns the exit status the VM ended with
 * (exit_why says why; e gets it too when the status is an error). */
int vmm_finish(struct vmm *m, ember_err *e);
/* Asks the VM to end with `code`; safe from any thread. */
void vmm_request_exit(struct vmm *m, int code, const char *why);
void vmm_destroy(struct vmm *m);

#endif
