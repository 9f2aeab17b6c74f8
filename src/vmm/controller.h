/* The VMM thread: owns the microVM's configuration, the MMDS data store, the
 * metrics sink and, after InstanceStart, the VM; executes API requests handed
 * over by the API thread; ends the process on guest reset, vCPU failure,
 * SIGTERM or SIGINT. */
#ifndef EMBER_CONTROLLER_H
#define EMBER_CONTROLLER_H

#include "mmds/http.h"
#include "vmm/config.h"
#include "util/event_loop.h"
#include "vmm/metrics.h"
#include "vmm/request.h"
#include "vmm/vmm.h"

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED };

/* Firecracker writes metrics every 60 s once the microVM runs. */
#define METRICS_PERIOD_S 60

struct controller {
	struct event_loop loop;
	int signal_fd;
	int metrics_timer_fd;
	int serial_out_fd; /* PUT /serial's file once opened, or -1 */
	struct vmm_channel *chan; /* NULL with --no-api */
	struct vmm_config cfg;
	struct vmm_options opt;
	struct metrics *metrics; /* the process's; shared with API and vCPUs */
	struct metrics_sink sink;
	struct mmds mmds;
	bool mmds_put; /* a PUT /mmds happened (PATCH needs one first) */
	/* A boot-specific resource was configured: a snapshot can no longer
	 * be loaded (as Firecracker). */
	bool boot_configured;
	enum vm_state state;
	struct vmm vm; /* valid once state != VM_NOT_STARTED */
	bool exiting;
	int exit_code;
	ember_err exit_err;
	char id[65];
};

int controller_init(struct controller *c, const struct vmm_options *opt, const char *id,
		    struct vmm_channel *chan, struct metrics *metrics, size_t mmds_limit,
		    ember_err *e);
/* Adopts cfg (moved in: cfg is left empty) and applies its logger and
 * metrics sections. */
int controller_set_config(struct controller *c, struct vmm_config *cfg, ember_err *e);
/* InstanceStart: builds the VM from the configuration and starts it. */
int controller_start_vm(struct controller *c, ember_err *e);
/* Starts the vCPUs of the VM built (or restored) in c->vm, and serves its
 * events; paused: they wait for a resume. On failure the VM is destroyed. */
int controller_run_vm(struct controller *c, bool paused, ember_err *e);
/* GET /vm/config's body: every section of the VM's configuration. */
json_t *controller_vm_config_json(struct controller *c);
/* PUT /snapshot/create and /snapshot/load (controller_snapshot.c). */
void controller_snapshot_create(struct controller *c, const struct snapshot_create_params *p,
				struct vmm_response *r);
void controller_snapshot_load(struct controller *c, const struct snapshot_load_params *p,
			      struct vmm_response *r);
/* Writes one metrics line (if a sink is configured). */
int controller_flush_metrics(struct controller *c, ember_err *e);
/* Executes one API request (controller_api.c). */
void controller_handle(struct controller *c, struct vmm_request *q, struct vmm_response *r);
/* Serves events until the process should end; returns its exit status and
 * sets e when that status is an error. */
int controller_run(struct controller *c, ember_err *e);
void controller_destroy(struct controller *c);

#endif
