/* libFuzzer target: the --config-file parser (config_parse_text()), which
 * reads every section with the same parsers as the API.
 *
 * Checked: a refusal says why; an accepted config, written back out in
 * GET /vm/config's shape, is accepted again and reads back to the same
 * JSON (so what was accepted was consistent); nothing leaks.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh config_fuzz (docs/fuzzing.md) */
#include <stdlib.h>
#include <string.h>

#include "fuzz_quiet.h"
#include "devices/device.h"
#include "devices/drive_config.h"
#include "devices/net_config.h"
#include "mmds/config.h"
#include "vmm/config.h"
#include "vmm/metrics.h"

static json_t *view(const struct vmm_config *c)
{
	json_t *j = json_object();
	json_object_set_new(j, "boot-source", config_boot_source_json(&c->boot_source));
	json_object_set_new(j, "machine-config", config_machine_json(&c->machine));
	json_object_set_new(j, "drives", drive_list_json(&c->drives));
	json_t *nets = json_array();
	for (size_t i = 0; i < c->nr_net; i++)
		json_array_append_new(nets, net_config_json(&c->net[i]));
	json_object_set_new(j, "network-interfaces", nets);
	if (c->has_logger)
		json_object_set_new(j, "logger", config_logger_json(&c->logger));
	if (c->has_metrics)
		json_object_set_new(j, "metrics", metrics_config_json(&c->metrics));
	if (c->has_mmds)
		json_object_set_new(j, "mmds-config", mmds_config_json(&c->mmds));
	for (size_t i = 0; i < c->nr_devices; i++) /* "entropy" and later kinds */
		json_object_set_new(j, c->devices[i].ops->config->key,
				    c->devices[i].ops->config->to_json(c->devices[i].cfg));
	return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	/* Its own buffer, so ASan sees a read past the end. */
	char *text = malloc(len ? len : 1);
	if (!text)
		abort();
	memcpy(text, in, len);
	struct vmm_config c;
	ember_err e = {{0}};
	config_init(&c);
	if (config_parse_text(text, len, &c, &e)) {
		if (!e.msg[0])
			abort();
	} else {
		json_t *j = view(&c);
		char *out = json_dumps(j, JSON_COMPACT);
		if (!out)
			abort();
		struct vmm_config again;
		config_init(&again);
		if (config_parse_text(out, strlen(out), &again, &e))
			abort(); /* our own view of an accepted config is refused */
		json_t *j2 = view(&again);
		if (!json_equal(j, j2))
			abort();
		json_decref(j2);
		config_free(&again);
		free(out);
		json_decref(j);
	}
	config_free(&c);
	free(text);
	return 0;
}
