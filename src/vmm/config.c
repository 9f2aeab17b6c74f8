#include "vmm/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

void config_init(struct vmm_config *c)
{
	memset(c, 0, sizeof(*c));
	config_machine_defaults(&c->machine);
}

void boot_source_free(struct boot_source_config *b)
{
	free(b->kernel_image_path);
	free(b->initrd_path);
	free(b->boot_args);
	memset(b, 0, sizeof(*b));
}

void config_free(struct vmm_config *c)
{
	boot_source_free(&c->boot_source);
	logger_config_free(&c->logger);
	metrics_config_free(&c->metrics);
	mmds_config_free(&c->mmds);
	for (size_t i = 0; i < c->nr_net; i++)
		net_config_free(&c->net[i]);
	drive_list_free(&c->drives);
	config_init(c);
}

void logger_config_free(struct logger_config *l)
{
	free(l->log_path);
	free(l->module);
	memset(l, 0, sizeof(*l));
}

int config_parse_logger(json_t *j, struct logger_config *out, ember_err *e)
{
	const char *path = NULL, *level = NULL, *module = NULL;
	int show_level = -1, show_origin = -1;
	json_error_t je;
	if (json_unpack_ex(j, &je, JSON_STRICT, "{s?s, s?s, s?b, s?b, s?s}", "log_path", &path,
			   "level", &level, "show_level", &show_level, "show_log_origin",
			   &show_origin, "module", &module)) {
		static const struct field_spec spec[] = {
			{"log_path", JSON_STRING, false},   {"level", JSON_STRING, false},
			{"show_level", JSON_TRUE, false},   {"show_log_origin", JSON_TRUE, false},
			{"module", JSON_STRING, false},
		};
		return config_unpack_error("logger", j, spec, 5, &je, e);
	}
	struct logger_config l = {0};
	if (level) {
		if (log_level_parse(level, &l.level))
			return err_set(e, "logger: level \"%s\" is not one of Error, Warning, Info, "
					  "Debug, Trace, Off", level);
		l.has_level = true;
	}
	if (path && !*path)
		return err_set(e, "logger: log_path is empty");
	l.has_show_level = show_level >= 0;
	l.show_level = show_level == 1;
	l.has_show_log_origin = show_origin >= 0;
	l.show_log_origin = show_origin == 1;
	l.log_path = dup_opt(path);
	l.module = dup_opt(module);
	logger_config_free(out);
	*out = l;
	return 0;
}

json_t *config_logger_json(const struct logger_config *l)
{
	static const char *const names[] = {"Off", "Error", "Warning", "Info", "Debug", "Trace"};
	json_t *j = json_object();
	if (l->log_path)
		json_object_set_new(j, "log_path", json_string(l->log_path));
	if (l->has_level)
		json_object_set_new(j, "level", json_string(names[l->level]));
	if (l->has_show_level)
		json_object_set_new(j, "show_level", json_boolean(l->show_level));
	if (l->has_show_log_origin)
		json_object_set_new(j, "show_log_origin", json_boolean(l->show_log_origin));
	if (l->module)
		json_object_set_new(j, "module", json_string(l->module));
	return j;
}

json_t *metrics_config_json(const struct metrics_config *m)
{
	json_t *j = json_pack("{s:s}", "metrics_path", m->metrics_path);
	if (m->emit_id)
		json_object_set_new(j, "emit_id", json_true());
	if (m->properties)
		json_object_set(j, "properties", m->properties);
	return j;
}

int config_apply_logger(const struct logger_config *l, ember_err *e)
{
	if (l->log_path && log_set_path(l->log_path))
		return err_set(e, "Logger error: Failed to open target file: %s (os error %d): "
			       "log_path %s", strerror(errno), errno, l->log_path);
	if (l->has_level)
		log_set_level(l->level);
	if (l->has_show_level || l->has_show_log_origin)
		log_set_options(l->has_show_level ? l->show_level : log_show_level(),
				l->has_show_log_origin ? l->show_log_origin : log_show_origin());
	if (l->module)
		log_set_module(l->module);
	return 0;
}

int config_find_net(const struct vmm_config *c, const char *iface_id)
{
	for (size_t i = 0; i < c->nr_net; i++)
		if (!strcmp(c->net[i].iface_id, iface_id))
			return (int)i;
	return -1;
}

int config_put_net(struct vmm_config *c, struct net_config *n, ember_err *e)
{
	int at = config_find_net(c, n->iface_id);
	for (size_t i = 0; i < c->nr_net; i++) {
		if ((int)i == at)
			continue;
		if (!strcmp(c->net[i].host_dev_name, n->host_dev_name))
			return err_set(e, "network-interfaces: Could not create the network device: "
					  "host_dev_name %s is already used by interface %s",
				       n->host_dev_name, c->net[i].iface_id);
		if (n->has_guest_mac && c->net[i].has_guest_mac &&
		    !memcmp(c->net[i].guest_mac, n->guest_mac, 6))
			return err_set(e, "network-interfaces: The MAC address is already in use: "
					  "%02x:%02x:%02x:%02x:%02x:%02x", n->guest_mac[0],
				       n->guest_mac[1], n->guest_mac[2], n->guest_mac[3],
				       n->guest_mac[4], n->guest_mac[5]);
	}
	if (at < 0) {
		if (c->nr_net == MAX_NET_IFACES)
			return err_set(e, "network-interfaces: at most %d interfaces",
				       MAX_NET_IFACES);
		at = (int)c->nr_net++;
	} else {
		net_config_free(&c->net[at]);
	}
	c->net[at] = *n;
	memset(n, 0, sizeof(*n));
	return 0;
}

static int mmds_check_ifaces(const struct vmm_config *c, ember_err *e)
{
	const char *ids[MAX_NET_IFACES];
	for (size_t i = 0; i < c->nr_net; i++)
		ids[i] = c->net[i].iface_id;
	return mmds_config_check_ifaces(&c->mmds, ids, c->nr_net, e);
}

const char *json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

static bool type_ok(const json_t *v, json_type want)
{
	if (want == JSON_TRUE)
		return json_is_boolean(v);
	if (want == JSON_OBJECT) /* optional sub-objects may be null */
		return json_is_object(v) || json_is_null(v);
	return json_typeof(v) == want;
}

int config_unpack_error(const char *what, json_t *j, const struct field_spec *spec, size_t n,
			const json_error_t *je, ember_err *e)
{
	if (!json_is_object(j))
		return err_set(e, "%s: expected an object, got %s", what, json_type_name(j));
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v) {
		size_t i;
		for (i = 0; i < n && strcmp(key, spec[i].name); i++)
			;
		if (i == n)
			return err_set(e, "%s: unknown field `%s`", what, key);
		if (!type_ok(v, spec[i].type))
			return err_set(e, "%s: %s: expected %s, got %s", what, key,
				       spec[i].type == JSON_INTEGER ? "integer"
				       : spec[i].type == JSON_STRING ? "string"
				       : spec[i].type == JSON_OBJECT ? "object"
				       : spec[i].type == JSON_ARRAY ? "array" : "boolean",
				       json_type_name(v));
	}
	for (size_t i = 0; i < n; i++)
		if (spec[i].required && !json_object_get(j, spec[i].name))
			return err_set(e, "%s: missing field `%s`", what, spec[i].name);
	return err_set(e, "%s: %s", what, je->text);
}

int config_parse_boot_source(json_t *j, struct boot_source_config *out, ember_err *e)
{
	const char *kernel = NULL, *initrd = NULL, *args = NULL;
	json_error_t je;
	if (json_unpack_ex(j, &je, JSON_STRICT, "{s:s, s?s, s?s}", "kernel_image_path", &kernel,
			   "initrd_path", &initrd, "boot_args", &args))
	{
		static const struct field_spec spec[] = {
			{"kernel_image_path", JSON_STRING, true},
			{"initrd_path", JSON_STRING, false},
			{"boot_args", JSON_STRING, false},
		};
		return config_unpack_error("boot-source", j, spec, 3, &je, e);
	}
	if (!*kernel)
		return err_set(e, "boot-source: kernel_image_path is empty");
	struct boot_source_config b = {
		.kernel_image_path = strdup(kernel),
		.initrd_path = dup_opt(initrd),
		.boot_args = dup_opt(args),
	};
	boot_source_free(out);
	*out = b;
	return 0;
}

void config_machine_defaults(struct machine_config *m)
{
	*m = (struct machine_config){.vcpu_count = DEFAULT_VCPUS, .mem_size_mib = DEFAULT_MEM_MIB};
}

const char *huge_pages_name(enum huge_pages h)
{
	return h == HUGE_PAGES_TRANSPARENT ? "Transparent" : "None";
}

int config_parse_machine_patch(json_t *j, struct machine_patch *out, ember_err *e)
{
	json_int_t vcpus = -1, mem = -1;
	int smt = -1, dirty = -1;
	const char *tmpl = NULL, *huge = NULL;
	json_error_t je;
	if (json_unpack_ex(j, &je, JSON_STRICT, "{s?I, s?I, s?b, s?b, s?s, s?s}", "vcpu_count",
			   &vcpus, "mem_size_mib", &mem, "smt", &smt, "track_dirty_pages", &dirty,
			   "cpu_template", &tmpl, "huge_pages", &huge)) {
		static const struct field_spec spec[] = {
			{"vcpu_count", JSON_INTEGER, false},	{"mem_size_mib", JSON_INTEGER, false},
			{"smt", JSON_TRUE, false},		{"track_dirty_pages", JSON_TRUE, false},
			{"cpu_template", JSON_STRING, false},	{"huge_pages", JSON_STRING, false},
		};
		return config_unpack_error("machine-config", j, spec, 6, &je, e);
	}
	memset(out, 0, sizeof(*out));
	if (json_object_get(j, "vcpu_count")) {
		if (vcpus < 1 || vcpus > MAX_VCPUS)
			return err_set(e, "machine-config: vcpu_count %lld: The number of vCPUs "
					  "must be greater than 0, less than %d and must be 1 or an "
					  "even number if SMT is enabled.", (long long)vcpus, MAX_VCPUS);
		out->has_vcpu_count = true;
		out->v.vcpu_count = (unsigned)vcpus;
	}
	if (json_object_get(j, "mem_size_mib")) {
		if (mem < 1 || mem > MAX_MEM_MIB)
			return err_set(e, "machine-config: mem_size_mib %lld: %s%d MiB", (long long)mem,
				       mem < 1 ? "The memory size (MiB) is either 0, or not a "
				       "multiple of the configured page size. Ember's limit: 1 to "
				       : "over Ember's limit of ", MAX_MEM_MIB);
		out->has_mem_size_mib = true;
		out->v.mem_size_mib = (unsigned)mem;
	}
	if (smt == 1)
		return err_set(e, "machine-config: smt is not supported by Ember yet");
	out->has_smt = smt == 0;
	if (dirty >= 0) {
		out->has_track_dirty_pages = true;
		out->v.track_dirty_pages = dirty;
	}
	if (tmpl && strcmp(tmpl, "None"))
		return err_set(e, "machine-config: cpu_template \"%s\" is not supported by Ember yet",
			       tmpl);
	if (huge) {
		if (!strcmp(huge, "None"))
			out->v.huge_pages = HUGE_PAGES_NONE;
		else if (!strcmp(huge, "Transparent"))
			out->v.huge_pages = HUGE_PAGES_TRANSPARENT;
		else if (!strcmp(huge, "2M"))
			return err_set(e, "machine-config: huge_pages \"2M\" is not supported by Ember "
					  "yet");
		else
			return err_set(e, "machine-config: huge_pages must be None, Transparent or 2M "
					  "(got \"%s\")", huge);
		out->has_huge_pages = true;
	}
	return 0;
}

void config_apply_machine_patch(struct machine_config *m, const struct machine_patch *p)
{
	if (p->has_vcpu_count)
		m->vcpu_count = p->v.vcpu_count;
	if (p->has_mem_size_mib)
		m->mem_size_mib = p->v.mem_size_mib;
	if (p->has_smt)
		m->smt = p->v.smt;
	if (p->has_track_dirty_pages)
		m->track_dirty_pages = p->v.track_dirty_pages;
	if (p->has_huge_pages)
		m->huge_pages = p->v.huge_pages;
}

int config_parse_machine(json_t *j, struct machine_config *out, ember_err *e)
{
	struct machine_patch p;
	if (config_parse_machine_patch(j, &p, e))
		return -1;
	if (!p.has_vcpu_count)
		return err_set(e, "machine-config: missing field `vcpu_count`");
	if (!p.has_mem_size_mib)
		return err_set(e, "machine-config: missing field `mem_size_mib`");
	config_machine_defaults(out);
	config_apply_machine_patch(out, &p);
	return 0;
}

json_t *config_machine_json(const struct machine_config *m)
{
	return json_pack("{s:i, s:i, s:b, s:b, s:s}", "vcpu_count", (int)m->vcpu_count,
			 "mem_size_mib", (int)m->mem_size_mib, "smt", m->smt, "track_dirty_pages",
			 m->track_dirty_pages, "huge_pages", huge_pages_name(m->huge_pages));
}

json_t *config_boot_source_json(const struct boot_source_config *b)
{
	json_t *j = json_pack("{s:s}", "kernel_image_path", b->kernel_image_path);
	if (b->initrd_path)
		json_object_set_new(j, "initrd_path", json_string(b->initrd_path));
	json_object_set_new(j, "boot_args", json_string(b->boot_args ? b->boot_args
								: DEFAULT_BOOT_ARGS));
	return j;
}

/* Sections of Firecracker's config file that Ember does not implement yet:
 * they are refused by name rather than silently ignored. Empty device lists
 * are accepted, since many configs carry them. */
static const char *const not_yet[] = {
	"balloon", "vsock", "entropy", "cpu-config", "memory-hotplug", "serial",
};

static int parse_drive_list(json_t *list, struct vmm_config *out, ember_err *e)
{
	if (!json_is_array(list))
		return err_set(e, "drives: expected an array");
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		struct drive_config d = {0};
		if (drive_config_parse(v, &d, e))
			return -1;
		if (drive_list_find(&out->drives, d.drive_id)) {
			err_set(e, "drives: drive_id %s appears twice", d.drive_id);
			drive_config_free(&d);
			return -1;
		}
		if (drive_list_put(&out->drives, &d, e)) {
			drive_config_free(&d);
			return -1;
		}
	}
	return 0;
}

static int parse_net_list(json_t *list, struct vmm_config *out, ember_err *e)
{
	if (!json_is_array(list))
		return err_set(e, "network-interfaces: expected an array");
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		struct net_config n = {0};
		if (net_config_parse(v, &n, e))
			return -1;
		if (config_find_net(out, n.iface_id) >= 0) {
			err_set(e, "network-interfaces: iface_id %s appears twice", n.iface_id);
			net_config_free(&n);
			return -1;
		}
		if (config_put_net(out, &n, e)) {
			net_config_free(&n);
			return -1;
		}
	}
	return 0;
}

static bool is_not_yet(const char *key)
{
	for (size_t i = 0; i < sizeof(not_yet) / sizeof(not_yet[0]); i++)
		if (!strcmp(key, not_yet[i]))
			return true;
	return false;
}

int config_parse_text(const char *text, size_t len, struct vmm_config *out, ember_err *e)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return err_set(e, "invalid JSON at line %d, column %d: %s", je.line, je.column,
			       je.text);
	int rc = -1;
	const char *key;
	json_t *val;
	if (!json_is_object(root)) {
		err_set(e, "config: the top level must be a JSON object");
		goto out;
	}
	json_object_foreach(root, key, val) {
		if (!strcmp(key, "boot-source")) {
			if (config_parse_boot_source(val, &out->boot_source, e))
				goto out;
			out->has_boot_source = true;
		} else if (!strcmp(key, "machine-config")) {
			if (config_parse_machine(val, &out->machine, e))
				goto out;
		} else if (!strcmp(key, "logger")) {
			if (config_parse_logger(val, &out->logger, e))
				goto out;
			out->has_logger = true;
		} else if (!strcmp(key, "metrics")) {
			if (metrics_config_parse(val, &out->metrics, e))
				goto out;
			out->has_metrics = true;
		} else if (!strcmp(key, "mmds-config")) {
			if (mmds_config_parse(val, &out->mmds, e))
				goto out;
			out->has_mmds = true;
		} else if (!strcmp(key, "drives")) {
			if (parse_drive_list(val, out, e))
				goto out;
		} else if (!strcmp(key, "network-interfaces")) {
			if (parse_net_list(val, out, e))
				goto out;
		} else if (is_not_yet(key)) {
			if (json_is_array(val) && json_array_size(val) == 0)
				continue;
			err_set(e, "config: \"%s\" is not supported by Ember yet", key);
			goto out;
		} else {
			err_set(e, "config: unknown key \"%s\"", key);
			goto out;
		}
	}
	if (!out->has_boot_source) {
		err_set(e, "config: \"boot-source\" is missing");
		goto out;
	}
	if (out->has_mmds && mmds_check_ifaces(out, e))
		goto out;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int config_load_file(const char *path, struct vmm_config *out, ember_err *e)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return err_set(e, "config file %s: %s", path, strerror(errno));
	/* Config files are small; bound them so a wrong path can't eat memory. */
	enum { MAX_CONFIG = 1 << 20 };
	char *buf = malloc(MAX_CONFIG + 1);
	size_t n = buf ? fread(buf, 1, MAX_CONFIG + 1, f) : 0;
	int bad = ferror(f);
	fclose(f);
	int rc;
	if (!buf || bad)
		rc = err_set(e, "config file %s: cannot read it", path);
	else if (n > MAX_CONFIG)
		rc = err_set(e, "config file %s: larger than %d bytes", path, MAX_CONFIG);
	else if ((rc = config_parse_text(buf, n, out, e)))
		err_prefix(e, "config file %s", path);
	free(buf);
	return rc;
}
