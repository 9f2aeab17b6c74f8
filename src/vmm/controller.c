#include "vmm/controller.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "vmm/loader.h"
#include "vmm/log.h"

static const char *const state_names[] = {"Not started", "Running", "Paused"};

static void end_process(struct controller *c, int code, const char *why)
{
	if (c->exiting)
		return;
	c->exiting = true;
	c->exit_code = code;
	if (code)
		err_set(&c->exit_err, "%s", why);
	else
		LOG_I("exiting: %s", why);
}

static void on_signal(void *ctx, uint32_t events)
{
	struct controller *c = ctx;
	struct signalfd_siginfo si;
	(void)events;
	if (read(c->signal_fd, &si, sizeof(si)) != sizeof(si))
		return;
	char why[64];
	snprintf(why, sizeof(why), "received %s", strsignal((int)si.ssi_signo));
	end_process(c, 0, why);
}

static void on_vm_event(void *ctx, uint32_t events)
{
	struct controller *c = ctx;
	(void)events;
	vmm_dispatch(&c->vm);
}

/* ---- requests ---------------------------------------------------------- */

#define ERR_AFTER_START "The requested operation is not supported after starting the microVM."
#define ERR_BEFORE_START "The requested operation is not supported before starting the microVM."

static json_t *vm_config_json(const struct controller *c)
{
	json_t *j = json_object();
	if (c->cfg.has_boot_source)
		json_object_set_new(j, "boot-source", config_boot_source_json(&c->cfg.boot_source));
	json_object_set_new(j, "machine-config", config_machine_json(&c->cfg.machine));
	json_object_set_new(j, "drives", json_array());
	json_object_set_new(j, "network-interfaces", json_array());
	return j;
}

/* Firecracker checks at PUT time that the boot files can be opened; this
 * runs the loader's own checks (a regular, non-empty file it can map), so a
 * file PUT accepts is one InstanceStart can load. */
static int check_boot_file(const char *what, const char *path, struct vmm_response *r)
{
	const uint8_t *data;
	size_t len;
	ember_err e;
	if (!path)
		return 0;
	if (loader_map_file(path, what, &data, &len, &e)) {
		vmm_response_fault(r, 400, "%s", e.msg);
		return -1;
	}
	loader_unmap_file(data, len);
	return 0;
}

static void handle(struct controller *c, struct vmm_request *q, struct vmm_response *r)
{
	ember_err e = {{0}};
	bool started = c->state != VM_NOT_STARTED;
	*r = (struct vmm_response){.status = 204};

	switch (q->kind) {
	case REQ_GET_INFO:
		vmm_response_json(r, 200, json_pack("{s:s, s:s, s:s, s:s}", "id", c->id, "state",
						    state_names[c->state], "vmm_version",
						    EMBER_VERSION, "app_name", "Ember"));
		break;
	case REQ_GET_VERSION:
		vmm_response_json(r, 200, json_pack("{s:s}", "firecracker_version", EMBER_VERSION));
		break;
	case REQ_GET_VM_CONFIG:
		vmm_response_json(r, 200, vm_config_json(c));
		break;
	case REQ_GET_MACHINE_CONFIG:
		vmm_response_json(r, 200, config_machine_json(&c->cfg.machine));
		break;
	case REQ_PUT_MACHINE_CONFIG:
	case REQ_PATCH_MACHINE_CONFIG:
		if (started) {
			vmm_response_fault(r, 400, ERR_AFTER_START);
			break;
		}
		if (q->kind == REQ_PUT_MACHINE_CONFIG)
			c->cfg.machine = q->machine;
		else
			config_apply_machine_patch(&c->cfg.machine, &q->patch);
		break;
	case REQ_PUT_BOOT_SOURCE:
		if (started) {
			vmm_response_fault(r, 400, ERR_AFTER_START);
			break;
		}
		if (check_boot_file("kernel_image_path", q->boot_source.kernel_image_path, r) ||
		    check_boot_file("initrd_path", q->boot_source.initrd_path, r))
			break;
		boot_source_free(&c->cfg.boot_source);
		c->cfg.boot_source = q->boot_source;
		memset(&q->boot_source, 0, sizeof(q->boot_source)); /* moved */
		c->cfg.has_boot_source = true;
		break;
	case REQ_INSTANCE_START:
		if (started)
			vmm_response_fault(r, 400, ERR_AFTER_START);
		else if (!c->cfg.has_boot_source)
			vmm_response_fault(r, 400, "Cannot start microvm without kernel configuration.");
		else if (controller_start_vm(c, &e))
			vmm_response_fault(r, 400, "Start microvm error: %s", e.msg);
		break;
	case REQ_SEND_CTRL_ALT_DEL:
		vmm_response_fault(r, 400, started ? "SendCtrlAltDel is not supported by Ember yet"
						   : ERR_BEFORE_START);
		break;
	case REQ_PAUSE:
		if (!started) {
			vmm_response_fault(r, 400, ERR_BEFORE_START);
		} else if (c->state == VM_RUNNING) {
			vmm_pause(&c->vm);
			c->state = VM_PAUSED;
		}
		break;
	case REQ_RESUME:
		if (!started) {
			vmm_response_fault(r, 400, ERR_BEFORE_START);
		} else if (c->state == VM_PAUSED) {
			vmm_resume(&c->vm);
			c->state = VM_RUNNING;
		}
		break;
	}
}

static void on_request(void *ctx, uint32_t events)
{
	struct controller *c = ctx;
	(void)events;
	struct vmm_request *q = vmm_channel_take(c->chan);
	if (!q)
		return;
	struct vmm_response r;
	handle(c, q, &r);
	vmm_channel_answer(c->chan, &r);
}

/* ---- lifecycle --------------------------------------------------------- */

int controller_init(struct controller *c, const struct vmm_options *opt, const char *id,
		    struct vmm_channel *chan, ember_err *e)
{
	memset(c, 0, sizeof(*c));
	c->signal_fd = -1;
	c->opt = *opt;
	c->chan = chan;
	config_init(&c->cfg);
	snprintf(c->id, sizeof(c->id), "%s", id ? id : "anonymous-instance");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	c->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (c->signal_fd < 0)
		return err_set(e, "signalfd: %s", strerror(errno));
	if (event_loop_init(&c->loop, e))
		return -1;
	if (event_loop_add(&c->loop, c->signal_fd, EPOLLIN, on_signal, c) ||
	    (chan && event_loop_add(&c->loop, chan->event_fd, EPOLLIN, on_request, c)))
		return err_set(e, "epoll: %s", strerror(errno));
	return 0;
}

void controller_set_config(struct controller *c, struct vmm_config *cfg)
{
	config_free(&c->cfg);
	c->cfg = *cfg;
	config_init(cfg);
}

int controller_start_vm(struct controller *c, ember_err *e)
{
	e->msg[0] = 0;
	if (vmm_build(&c->vm, &c->cfg, &c->opt, e))
		return -1;
	if (vmm_start(&c->vm, e) ||
	    event_loop_add(&c->loop, vmm_event_fd(&c->vm), EPOLLIN, on_vm_event, c)) {
		if (!e->msg[0])
			err_set(e, "epoll: %s", strerror(errno));
		vmm_destroy(&c->vm);
		return -1;
	}
	c->state = VM_RUNNING;
	return 0;
}

int controller_run(struct controller *c, ember_err *e)
{
	while (!c->exiting) {
		if (event_loop_run_once(&c->loop, -1) < 0)
			end_process(c, 1, "epoll_wait failed");
		if (c->state != VM_NOT_STARTED && vmm_ended(&c->vm) && !c->exiting) {
			ember_err vm_err = {{0}};
			int code = vmm_finish(&c->vm, &vm_err);
			end_process(c, code, code ? vm_err.msg : c->vm.exit_why);
		}
	}
	if (c->chan)
		vmm_channel_close(c->chan);
	if (c->exit_code)
		*e = c->exit_err;
	return c->exit_code;
}

void controller_destroy(struct controller *c)
{
	if (c->state != VM_NOT_STARTED) {
		vmm_destroy(&c->vm); /* kicks and joins any vCPU still running */
		c->state = VM_NOT_STARTED;
	}
	event_loop_destroy(&c->loop);
	if (c->signal_fd >= 0)
		close(c->signal_fd);
	c->signal_fd = -1;
	config_free(&c->cfg);
}
