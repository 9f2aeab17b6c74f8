/* What the API thread asks of the VMM thread, and the answer. The API thread
 * parses and validates a request into a vmm_request (plain data, no KVM),
 * hands it over a vmm_channel and waits; the VMM thread executes it. */
#ifndef EMBER_REQUEST_H
#define EMBER_REQUEST_H

#include <pthread.h>
#include <stdbool.h>

#include "vmm/snapshot_params.h"
#include "vmm/config.h"
#include "util/err.h"

enum vmm_req_kind {
	REQ_GET_INFO,
	REQ_GET_VERSION,
	REQ_GET_VM_CONFIG,
	REQ_GET_MACHINE_CONFIG,
	REQ_PUT_MACHINE_CONFIG,
	REQ_PATCH_MACHINE_CONFIG,
	REQ_PUT_BOOT_SOURCE,
	REQ_INSTANCE_START,
	REQ_SEND_CTRL_ALT_DEL,
	REQ_FLUSH_METRICS,
	REQ_PAUSE,
	REQ_RESUME,
	REQ_PUT_LOGGER,
	REQ_PUT_METRICS,
	REQ_GET_MMDS,
	REQ_PUT_MMDS,
	REQ_PATCH_MMDS,
	REQ_PUT_MMDS_CONFIG,
	REQ_PUT_NET,
	REQ_PATCH_NET,
	REQ_PUT_DRIVE,
	REQ_PATCH_DRIVE,
	REQ_PUT_SERIAL,
	REQ_DEVICE_REQUEST, /* a kind's own request (device_config_ops.requests) */
	REQ_PUT_DEVICE, /* PUT /<key> of a kind with its own config (device_ops.config) */
	REQ_PUT_CPU_CONFIG,
	REQ_SNAPSHOT_CREATE,
	REQ_SNAPSHOT_LOAD,
};

/* The parsed body of each kind; everything owned is freed with the request
 * unless the VMM thread moved it out (and zeroed it). */
struct vmm_request {
	enum vmm_req_kind kind;
	/* Firecracker's words for a deprecated field or value the request
	 * used (a static string), or NULL: the answer then carries
	 * "Deprecation: true" and the call is counted and logged. */
	const char *deprecation;
	struct machine_patch patch; /* PUT and PATCH /machine-config */
	struct cpu_template *cpu_template; /* PUT /cpu-config, owned */
	struct boot_source_config boot_source;
	struct logger_config logger;
	struct metrics_config metrics;
	json_t *mmds_data; /* PUT/PATCH /mmds */
	struct mmds_config mmds_config;
	struct net_config net;
	struct net_patch net_patch;
	struct drive_config drive;
	struct drive_patch drive_patch;
	char *serial_out_path; /* PUT /serial */
	const struct device_ops *device_ops; /* REQ_PUT_DEVICE: the kind */
	void *device_cfg;		     /* and its config, owned */
	const struct device_request *device_req; /* REQ_DEVICE_REQUEST */
	void *device_arg;			 /* and its parsed body, owned */
	struct snapshot_create_params snapshot_create;
	struct snapshot_load_params snapshot_load;
};

struct vmm_response {
	int status;  /* HTTP status */
	char *body;  /* JSON text (malloc'd) or NULL for 204 */
	bool deprecated; /* send "Deprecation: true" */
};

void vmm_request_free(struct vmm_request *r);
/* Fills r with status and {"fault_message": msg}. */
void vmm_response_fault(struct vmm_response *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Takes ownership of j (decref'd). */
void vmm_response_json(struct vmm_response *r, int status, json_t *j);

/* One request at a time from the API thread to the VMM thread. */
struct vmm_channel {
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	int event_fd; /* readable when a request waits */
	struct vmm_request *req;
	struct vmm_response *resp;
	bool done;
	bool closed; /* the VMM is going away: answer at once */
};

int vmm_channel_init(struct vmm_channel *c, ember_err *e);
void vmm_channel_destroy(struct vmm_channel *c);
/* API thread: hands req over and blocks until the VMM thread answers. */
void vmm_channel_call(struct vmm_channel *c, struct vmm_request *req, struct vmm_response *resp);
/* VMM thread: the waiting request, or NULL. */
struct vmm_request *vmm_channel_take(struct vmm_channel *c);
/* VMM thread: answers the request taken. */
void vmm_channel_answer(struct vmm_channel *c, const struct vmm_response *resp);
/* VMM thread, at exit: fails the waiting request and all later ones. */
void vmm_channel_close(struct vmm_channel *c);

#endif
