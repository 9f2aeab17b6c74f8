/* libFuzzer target: the API's router and every body parser (api_parse(),
 * vmm/routes.c), as the API thread calls them after the HTTP layer. The
 * input is text: "METHOD PATH\n" then the body (any bytes).
 *
 * Checked: a refusal is a 400 whose body is JSON with a fault_message; an
 * acceptance leaves no answer and a request of the route's kind; accepted
 * drives, network interfaces, machine configs and boot sources read back
 * through their GET /vm/config view to the same JSON; nothing leaks.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh api_parse_fuzz (docs/fuzzing.md) */
#include <stdlib.h>
#include <string.h>

#include "fuzz_quiet.h"
#include "api/parse.h"
#include "devices/drive_config.h"
#include "devices/net_config.h"
#include "vmm/routes.h"

/* The view j (consumed) of an accepted object must parse back, through the
 * same parser, into something whose view is j again. */
#define ROUND_TRIP(type, view, parse, release, obj)                                        \
	do {                                                                               \
		json_t *j_ = view(obj);                                                    \
		type back_;                                                                \
		ember_err e_;                                                              \
		memset(&back_, 0, sizeof(back_));                                          \
		if (!j_ || parse(j_, &back_, &e_))                                         \
			abort();                                                           \
		json_t *again_ = view(&back_);                                             \
		if (!json_equal(j_, again_))                                               \
			abort();                                                           \
		json_decref(again_);                                                       \
		json_decref(j_);                                                           \
		release(&back_);                                                           \
	} while (0)

/* A machine-config PUT is an update: applied to a fresh VM's config, its
 * view must parse and apply to the same config again. (An update the
 * combined rules refuse, such as SMT with an odd vCPU count, is not
 * viewed.) */
static void machine_round_trip(const struct machine_patch *p)
{
	struct vmm_config a, b;
	ember_err e;
	config_init(&a);
	config_init(&b);
	if (config_update_machine(&a, p, &e) == 0) {
		json_t *j = config_machine_json(&a.machine);
		struct machine_patch back;
		if (!j || config_parse_machine(j, &back, &e) || config_update_machine(&b, &back, &e))
			abort();
		json_t *again = config_machine_json(&b.machine);
		if (!json_equal(j, again))
			abort();
		json_decref(again);
		json_decref(j);
	}
	config_free(&a);
	config_free(&b);
}

static void check_accepted(const struct vmm_request *req)
{
	switch (req->kind) {
	case REQ_PUT_DRIVE:
		if (!req->drive.drive_id || !req->drive.path_on_host)
			abort();
		ROUND_TRIP(struct drive_config, drive_config_json, drive_config_parse,
			   drive_config_free, &req->drive);
		break;
	case REQ_PUT_NET:
		if (!req->net.iface_id || !req->net.host_dev_name)
			abort();
		ROUND_TRIP(struct net_config, net_config_json, net_config_parse, net_config_free,
			   &req->net);
		break;
	case REQ_PUT_MACHINE_CONFIG:
		machine_round_trip(&req->patch);
		break;
	case REQ_PUT_BOOT_SOURCE:
		if (!req->boot_source.kernel_image_path)
			abort();
		ROUND_TRIP(struct boot_source_config, config_boot_source_json,
			   config_parse_boot_source, boot_source_free, &req->boot_source);
		break;
	case REQ_PUT_MMDS:
	case REQ_PATCH_MMDS:
		if (!req->mmds_data)
			abort();
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	const uint8_t *nl = memchr(in, '\n', len);
	size_t line = nl ? (size_t)(nl - in) : len;
	char *head = malloc(line + 1);
	if (!head)
		abort();
	memcpy(head, in, line);
	head[line] = '\0';
	if (strlen(head) != line) { /* the HTTP layer never passes a NUL here */
		free(head);
		return 0;
	}
	char *sp = strchr(head, ' ');
	const char *method = head, *path = "";
	if (sp) {
		*sp = '\0';
		path = sp + 1;
	}
	/* The body in its own buffer, so ASan sees a read past its end. */
	size_t blen = nl ? len - line - 1 : 0;
	char *body = malloc(blen ? blen : 1);
	if (!body)
		abort();
	if (blen)
		memcpy(body, nl + 1, blen);

	struct vmm_request req;
	struct vmm_response resp = {0};
	int rc = api_parse(method, path, blen ? body : NULL, blen, &req, &resp);
	if (rc == 0) {
		if (resp.status || resp.body)
			abort();
		const char *id;
		const struct api_route *r = api_route_find(api_method_parse(method), path, &id);
		if (!r || r->missing)
			abort();
		/* A body parser may refine the kind (PATCH /vm: pause or resume). */
		if (r->kind != req.kind && !(r->kind == REQ_PAUSE && req.kind == REQ_RESUME) &&
		    !(r->kind == REQ_INSTANCE_START && (req.kind == REQ_SEND_CTRL_ALT_DEL ||
							  req.kind == REQ_FLUSH_METRICS)))
			abort();
		check_accepted(&req);
		vmm_request_free(&req);
	} else {
		if (rc != -1 || resp.status != 400 || !resp.body)
			abort();
		json_t *j = json_loads(resp.body, 0, NULL);
		if (!j || !json_is_string(json_object_get(j, "fault_message")))
			abort();
		json_decref(j);
	}
	free(resp.body);
	free(body);
	free(head);
	return 0;
}
