#include "vmm/controller.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "util/log.h"
#include "vmm/seccomp_report.h"

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

static void on_request(void *ctx, uint32_t events)
{
	struct controller *c = ctx;
	(void)events;
	struct vmm_request *q = vmm_channel_take(c->chan);
	if (!q)
		return;
	struct vmm_response r;
	controller_handle(c, q, &r);
	vmm_channel_answer(c->chan, &r);
}

/* ---- lifecycle --------------------------------------------------------- */

static void on_metrics_timer(void *ctx, uint32_t events)
{
	struct controller *c = ctx;
	uint64_t ticks;
	ember_err e;
	(void)events;
	if (read(c->metrics_timer_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	if (controller_flush_metrics(c, &e))
		LOG_W("metrics: %s", e.msg);
}

int controller_flush_metrics(struct controller *c, ember_err *e)
{
	metric_inc_set_total(&c->metrics->logger.missed_log_count, log_lost_lines());
	return metrics_write(c->metrics, &c->sink, metrics_utc_ms(), e);
}

int controller_init(struct controller *c, const struct vmm_options *opt, const char *id,
		    struct vmm_channel *chan, struct metrics *metrics, size_t mmds_limit,
		    ember_err *e)
{
	memset(c, 0, sizeof(*c));
	c->signal_fd = c->metrics_timer_fd = c->serial_out_fd = -1;
	c->opt = *opt;
	c->chan = chan;
	c->metrics = metrics;
	for (size_t i = 0; metrics && device_kinds[i]; i++)
		if (metrics_devices_add_kind(&metrics->devices, device_kinds[i]->metrics_group, e))
			return -1;
	metrics_sink_init(&c->sink);
	seccomp_report_to(metrics, &c->sink); /* a bad syscall flushes num_faults here */
	mmds_init(&c->mmds, mmds_limit);
	c->opt.mmds = &c->mmds; /* the guest's side, through the net devices */
	config_init(&c->cfg);
	snprintf(c->id, sizeof(c->id), "%s", id ? id : "anonymous-instance");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	c->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (c->signal_fd < 0)
		return err_set(e, "signalfd: %s", strerror(errno));
	c->metrics_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (c->metrics_timer_fd < 0)
		return err_set(e, "timerfd: %s", strerror(errno));
	if (event_loop_init(&c->loop, e))
		return -1;
	if (event_loop_add(&c->loop, c->signal_fd, EPOLLIN, on_signal, c) ||
	    event_loop_add(&c->loop, c->metrics_timer_fd, EPOLLIN, on_metrics_timer, c) ||
	    (chan && event_loop_add(&c->loop, chan->event_fd, EPOLLIN, on_request, c)))
		return err_set(e, "epoll: %s", strerror(errno));
	return 0;
}

int controller_set_config(struct controller *c, struct vmm_config *cfg, ember_err *e)
{
	config_free(&c->cfg);
	c->cfg = *cfg;
	config_init(cfg);
	if (c->cfg.has_logger && config_apply_logger(&c->cfg.logger, e))
		return -1;
	if (c->cfg.has_metrics) {
		if (metrics_sink_open(&c->sink, c->cfg.metrics.metrics_path, e))
			return err_prefix(e, "metrics");
		metrics_apply_config(c->metrics, &c->cfg.metrics, c->id);
	}
	if (c->cfg.has_mmds)
		mmds_configure(&c->mmds, &c->cfg.mmds);
	return 0;
}

/* PUT /serial's file, opened at InstanceStart as Firecracker does: created
 * if absent, neither truncated nor appended to, O_NONBLOCK so a FIFO with
 * no reader never stops the VMM thread (the console's out_queue writer
 * waits for room). The guest's input then comes from nowhere, as in
 * Firecracker. The fd stays open until the process ends: a writer thread
 * out_queue_destroy left behind may still be using it, and a closed and
 * reused number would get the console's bytes. */
static int open_serial_out(struct controller *c, ember_err *e)
{
	if (!c->cfg.serial_out_path || c->serial_out_fd >= 0)
		return 0;
	int fd = open(c->cfg.serial_out_path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
	if (fd < 0)
		return err_set(e, "Error creating the serial device: %s (os error %d): "
				  "serial_out_path %s", strerror(errno), errno,
			       c->cfg.serial_out_path);
	c->serial_out_fd = fd;
	c->opt.console_out = fd;
	c->opt.console_in = -1;
	return 0;
}

int controller_start_vm(struct controller *c, ember_err *e)
{
	e->msg[0] = 0;
	if (open_serial_out(c, e) || vmm_build(&c->vm, &c->cfg, &c->opt, e))
		return -1;
	return controller_run_vm(c, false, e);
}

int controller_run_vm(struct controller *c, bool paused, ember_err *e)
{
	e->msg[0] = 0;
	/* Paused: the vCPU threads park before their first KVM_RUN. */
	c->vm.pause.requested = paused;
	if (vmm_start(&c->vm, e) ||
	    event_loop_add(&c->loop, vmm_event_fd(&c->vm), EPOLLIN, on_vm_event, c)) {
		if (!e->msg[0])
			err_set(e, "epoll: %s", strerror(errno));
		vmm_destroy(&c->vm);
		return -1;
	}
	c->state = paused ? VM_PAUSED : VM_RUNNING;
	/* Firecracker writes metrics when the microVM starts, then
	 * periodically. */
	ember_err me;
	if (controller_flush_metrics(c, &me))
		LOG_W("metrics: %s", me.msg);
	struct itimerspec period = {{METRICS_PERIOD_S, 0}, {METRICS_PERIOD_S, 0}};
	timerfd_settime(c->metrics_timer_fd, 0, &period, NULL);
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
	ember_err me;
	if (controller_flush_metrics(c, &me))
		LOG_W("metrics: %s", me.msg);
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
	if (c->metrics_timer_fd >= 0)
		close(c->metrics_timer_fd);
	c->signal_fd = c->metrics_timer_fd = -1;
	metrics_sink_close(&c->sink);
	mmds_free(&c->mmds);
	config_free(&c->cfg);
}
