/* The VMM thread: owns the microVM's configuration and, after
 * InstanceStart, the VM; executes API requests handed over by the API
 * thread; ends the process on guest reset, vCPU failure, SIGTERM or SIGINT. */
#ifndef EMBER_CONTROLLER_H
#define EMBER_CONTROLLER_H

#include "vmm/config.h"
#include "vmm/event_loop.h"
#include "vmm/request.h"
#include "vmm/vmm.h"

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED };

struct controller {
	struct event_loop loop;
	int signal_fd;
	struct vmm_channel *chan; /* NULL with --no-api */
	struct vmm_config cfg;
	struct vmm_options opt;
	enum vm_state state;
	struct vmm vm; /* valid once state != VM_NOT_STARTED */
	bool exiting;
	int exit_code;
	ember_err exit_err;
	char id[65];
};

int controller_init(struct controller *c, const struct vmm_options *opt, const char *id,
		    struct vmm_channel *chan, ember_err *e);
/* Adopts cfg (moved in: cfg is left empty). */
void controller_set_config(struct controller *c, struct vmm_config *cfg);
/* InstanceStart: builds the VM from the configuration and starts it. */
int controller_start_vm(struct controller *c, ember_err *e);
/* Serves events until the process should end; returns its exit status and
 * sets e when that status is an error. */
int controller_run(struct controller *c, ember_err *e);
void controller_destroy(struct controller *c);

#endif
