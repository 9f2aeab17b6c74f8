#include "vmm/request.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

void vmm_request_free(struct vmm_request *r)
{
	boot_source_free(&r->boot_source);
	logger_config_free(&r->logger);
	free(r->serial_out_path);
	r->serial_out_path = NULL;
	if (r->device_req && r->device_req->free_arg)
		r->device_req->free_arg(r->device_arg);
	r->device_arg = NULL;
	metrics_config_free(&r->metrics);
	json_decref(r->mmds_data);
	r->mmds_data = NULL;
	mmds_config_free(&r->mmds_config);
	net_config_free(&r->net);
	net_patch_free(&r->net_patch);
	drive_config_free(&r->drive);
	drive_patch_free(&r->drive_patch);
	free(r->cpu_template);
	r->cpu_template = NULL;
	if (r->device_cfg)
		r->device_ops->config->free(r->device_cfg);
	r->device_cfg = NULL;
	snapshot_create_params_free(&r->snapshot_create);
	snapshot_load_params_free(&r->snapshot_load);
}

void vmm_response_json(struct vmm_response *r, int status, json_t *j)
{
	r->status = status;
	r->body = json_dumps(j, JSON_COMPACT);
	json_decref(j);
}

void vmm_response_fault(struct vmm_response *r, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* msg may quote a path or id that is not UTF-8, or be cut inside a
	 * character; JSON strings must be UTF-8, so such bytes become '?'. */
	json_t *s = json_string(msg);
	if (!s) {
		for (char *c = msg; *c; c++)
			if ((unsigned char)*c >= 0x80)
				*c = '?';
		s = json_string(msg);
	}
	vmm_response_json(r, status, json_pack("{s:o}", "fault_message", s));
}

int vmm_channel_init(struct vmm_channel *c, ember_err *e)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->done_cond, NULL);
	c->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->event_fd < 0)
		return err_set(e, "eventfd: %s", strerror(errno));
	return 0;
}

void vmm_channel_destroy(struct vmm_channel *c)
{
	if (c->event_fd >= 0)
		close(c->event_fd);
	c->event_fd = -1;
	pthread_cond_destroy(&c->done_cond);
	pthread_mutex_destroy(&c->lock);
}

void vmm_channel_call(struct vmm_channel *c, struct vmm_request *req, struct vmm_response *resp)
{
	pthread_mutex_lock(&c->lock);
	if (c->closed) {
		pthread_mutex_unlock(&c->lock);
		vmm_response_fault(resp, 400, "The microVM is shutting down");
		return;
	}
	c->req = req;
	c->resp = resp;
	c->done = false;
	uint64_t one = 1;
	ssize_t w = write(c->event_fd, &one, sizeof(one));
	(void)w;
	while (!c->done)
		pthread_cond_wait(&c->done_cond, &c->lock);
	c->req = NULL;
	c->resp = NULL;
	pthread_mutex_unlock(&c->lock);
}

struct vmm_request *vmm_channel_take(struct vmm_channel *c)
{
	uint64_t v;
	ssize_t r = read(c->event_fd, &v, sizeof(v));
	(void)r;
	pthread_mutex_lock(&c->lock);
	struct vmm_request *req = c->done ? NULL : c->req;
	pthread_mutex_unlock(&c->lock);
	return req;
}

void vmm_channel_answer(struct vmm_channel *c, const struct vmm_response *resp)
{
	pthread_mutex_lock(&c->lock);
	*c->resp = *resp;
	c->done = true;
	pthread_cond_signal(&c->done_cond);
	pthread_mutex_unlock(&c->lock);
}

void vmm_channel_close(struct vmm_channel *c)
{
	pthread_mutex_lock(&c->lock);
	c->closed = true;
	if (c->req && !c->done) {
		vmm_response_fault(c->resp, 400, "The microVM is shutting down");
		c->done = true;
		pthread_cond_signal(&c->done_cond);
	}
	pthread_mutex_unlock(&c->lock);
}
