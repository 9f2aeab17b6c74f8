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
	free(c->serial_out_path);
	metrics_config_free(&c->metrics);
	mmds_config_free(&c->mmds);
	for (size_t i = 0; i < c->nr_net; i++)
		net_config_free(&c->net[i]);
	drive_list_free(&c->drives);
	free(c->cpu_custom);
	for (size_t i = 0; i < c->nr_devices; i++)
		c->devices[i].ops->config->free(c->devices[i].cfg);
	config_init(c);
}

void logger_config_free(struct logger_config *l)
{
	free(l->log_path);
	free(l->module);
	memset(l, 0, sizeof(*l));
}

int config_parse_serial(json_t *j, char **path, ember_err *e)
{
	struct {
		const char *serial_out_path;
		json_t *rate_limiter;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), serial_out_path, JF_STRING, false),
		JFIELD(__typeof__(v), rate_limiter, JF_OBJECT, false),
	};
	if (json_strict_parse("serial", j, f, 2, &v, e))
		return -1;
	/* Never a 2xx for a limit that would not be applied. */
	if (v.rate_limiter)
		return err_set(e, "serial: rate_limiter is not supported by Ember yet");
	if (v.serial_out_path && !*v.serial_out_path)
		return err_set(e, "serial: serial_out_path is empty");
	*path = dup_opt(v.serial_out_path);
	if (v.serial_out_path && !*path)
		return err_set(e, "serial: out of memory");
	return 0;
}

int config_parse_logger(json_t *j, struct logger_config *out, ember_err *e)
{
	struct {
		const char *log_path, *level;
		int show_level, show_log_origin;
		const char *module;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), log_path, JF_STRING, false),
		JFIELD(__typeof__(v), level, JF_STRING, false),
		JFIELD(__typeof__(v), show_level, JF_BOOL, false),
		JFIELD(__typeof__(v), show_log_origin, JF_BOOL, false),
		JFIELD(__typeof__(v), module, JF_STRING, false),
	};
	if (json_strict_parse("logger", j, f, 5, &v, e))
		return -1;
	const char *path = v.log_path, *level = v.level, *module = v.module;
	int show_level = v.show_level, show_origin = v.show_log_origin;
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

int config_check_device_count(const struct vmm_config *c, bool adding, ember_err *e)
{
	size_t n = c->drives.n + c->nr_net + c->nr_devices + (adding ? 1 : 0);
	if (n > MAX_VIRTIO_DEVICES)
		return err_set(e, "at most %d virtio devices: drives, network interfaces and "
				  "other devices together (%zu here)", MAX_VIRTIO_DEVICES, n);
	return 0;
}

struct device_config *config_find_device(struct vmm_config *c, const struct device_ops *ops)
{
	for (size_t i = 0; i < c->nr_devices; i++)
		if (c->devices[i].ops == ops)
			return &c->devices[i];
	return NULL;
}

int config_put_device(struct vmm_config *c, const struct device_ops *ops, void *cfg, ember_err *e)
{
	struct device_config *d = config_find_device(c, ops);
	if (d) {
		ops->config->free(d->cfg);
		d->cfg = cfg;
		return 0;
	}
	if (config_check_device_count(c, true, e)) {
		ops->config->free(cfg);
		return -1;
	}
	c->devices[c->nr_devices++] = (struct device_config){ops, cfg};
	return 0;
}

int config_check_devices_mem(const struct vmm_config *c, uint64_t mem_size_mib, bool mem_changed,
			     ember_err *e)
{
	for (size_t i = 0; i < c->nr_devices; i++) {
		const struct device_config_ops *o = c->devices[i].ops->config;
		if (o->check_mem && o->check_mem(c->devices[i].cfg, mem_size_mib, mem_changed, e))
			return -1;
	}
	return 0;
}

static int mmds_check_ifaces(const struct vmm_config *c, ember_err *e)
{
	const char *ids[MAX_NET_IFACES];
	for (size_t i = 0; i < c->nr_net; i++)
		ids[i] = c->net[i].iface_id;
	return mmds_config_check_ifaces(&c->mmds, ids, c->nr_net, e);
}

int config_parse_boot_source(json_t *j, struct boot_source_config *out, ember_err *e)
{
	struct {
		const char *kernel_image_path, *initrd_path, *boot_args;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), kernel_image_path, JF_STRING, true),
		JFIELD(__typeof__(v), initrd_path, JF_STRING, false),
		JFIELD(__typeof__(v), boot_args, JF_STRING, false),
	};
	if (json_strict_parse("boot-source", j, f, 3, &v, e))
		return -1;
	const char *kernel = v.kernel_image_path, *initrd = v.initrd_path, *args = v.boot_args;
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
	return h == HUGE_PAGES_2M ? "2M" : h == HUGE_PAGES_TRANSPARENT ? "Transparent" : "None";
}

int config_check_machine(const struct machine_config *m, ember_err *e)
{
	if (m->huge_pages != HUGE_PAGES_NONE && m->mem_size_mib % 2)
		return err_set(e, "machine-config: mem_size_mib %u: The memory size (MiB) is either "
			       "0, or not a multiple of the configured page size (huge_pages %s: "
			       "2 MiB).", m->mem_size_mib, huge_pages_name(m->huge_pages));
	return 0;
}

int config_parse_machine_patch(json_t *j, struct machine_patch *out, ember_err *e)
{
	struct {
		struct jint vcpu_count, mem_size_mib;
		int smt, track_dirty_pages;
		const char *cpu_template, *huge_pages;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), vcpu_count, JF_INT, false),
		JFIELD(__typeof__(v), mem_size_mib, JF_INT, false),
		JFIELD(__typeof__(v), smt, JF_BOOL, false),
		JFIELD(__typeof__(v), track_dirty_pages, JF_BOOL, false),
		JFIELD(__typeof__(v), cpu_template, JF_STRING, false),
		JFIELD(__typeof__(v), huge_pages, JF_STRING, false),
	};
	if (json_strict_parse("machine-config", j, f, 6, &v, e))
		return -1;
	json_int_t vcpus = v.vcpu_count.v, mem = v.mem_size_mib.v;
	int smt = v.smt, dirty = v.track_dirty_pages;
	const char *tmpl = v.cpu_template, *huge = v.huge_pages;
	memset(out, 0, sizeof(*out));
	if (v.vcpu_count.set) {
		if (vcpus < 1 || vcpus > MAX_VCPUS)
			return err_set(e, "machine-config: vcpu_count %lld: " VCPU_COUNT_RULE,
				       (long long)vcpus);
		out->has_vcpu_count = true;
		out->v.vcpu_count = (unsigned)vcpus;
	}
	if (v.mem_size_mib.set) {
		if (mem < 1 || mem > MAX_MEM_MIB)
			return err_set(e, "machine-config: mem_size_mib %lld: %s%d MiB", (long long)mem,
				       mem < 1 ? "The memory size (MiB) is either 0, or not a "
				       "multiple of the configured page size. Ember's limit: 1 to "
				       : "over Ember's limit of ", MAX_MEM_MIB);
		out->has_mem_size_mib = true;
		out->v.mem_size_mib = (unsigned)mem;
	}
	if (smt >= 0) {
		out->has_smt = true;
		out->v.smt = smt;
	}
	if (dirty >= 0) {
		out->has_track_dirty_pages = true;
		out->v.track_dirty_pages = dirty;
	}
	if (tmpl) {
		if (cpu_static_template_parse(tmpl, &out->v.cpu_template))
			return err_set(e, "machine-config: cpu_template: unknown variant `%.40s`, "
				       "expected one of `C3`, `T2`, `T2S`, `None`, `T2CL`, `T2A`",
				       tmpl);
		out->has_cpu_template = true;
	}
	if (huge) {
		if (!strcmp(huge, "None"))
			out->v.huge_pages = HUGE_PAGES_NONE;
		else if (!strcmp(huge, "Transparent"))
			out->v.huge_pages = HUGE_PAGES_TRANSPARENT;
		else if (!strcmp(huge, "2M"))
			out->v.huge_pages = HUGE_PAGES_2M;
		else
			return err_set(e, "machine-config: huge_pages must be None, Transparent or 2M "
					  "(got \"%s\")", huge);
		out->has_huge_pages = true;
	}
	return 0;
}

int config_update_machine(struct vmm_config *c, const struct machine_patch *p, ember_err *e)
{
	struct machine_config m = c->machine;
	if (p->has_vcpu_count)
		m.vcpu_count = p->v.vcpu_count;
	if (p->has_mem_size_mib)
		m.mem_size_mib = p->v.mem_size_mib;
	if (p->has_smt)
		m.smt = p->v.smt;
	if (p->has_track_dirty_pages)
		m.track_dirty_pages = p->v.track_dirty_pages;
	if (p->has_huge_pages)
		m.huge_pages = p->v.huge_pages;
	if (p->has_cpu_template)
		m.cpu_template = p->v.cpu_template;
	/* SMT makes vCPUs pairs of threads: one vCPU, or an even number. */
	if (m.smt && m.vcpu_count > 1 && m.vcpu_count % 2)
		return err_set(e, VCPU_COUNT_RULE);
	if (config_check_machine(&m, e) || config_check_devices_mem(c, m.mem_size_mib, true, e))
		return -1;
	c->machine = m;
	if (p->has_cpu_template) { /* "None" too: Firecracker drops a custom one */
		free(c->cpu_custom);
		c->cpu_custom = NULL;
	}
	return 0;
}

void config_set_cpu_custom(struct vmm_config *c, struct cpu_template *t)
{
	free(c->cpu_custom);
	c->cpu_custom = t;
	c->machine.cpu_template = CPU_TEMPLATE_NONE;
}

int config_parse_machine(json_t *j, struct machine_patch *out, ember_err *e)
{
	if (config_parse_machine_patch(j, out, e))
		return -1;
	if (!out->has_vcpu_count)
		return err_set(e, "machine-config: missing field `vcpu_count`");
	if (!out->has_mem_size_mib)
		return err_set(e, "machine-config: missing field `mem_size_mib`");
	/* A PUT sets every field: absent ones go back to their defaults. */
	struct machine_config d;
	config_machine_defaults(&d);
	if (!out->has_smt)
		out->v.smt = d.smt;
	if (!out->has_track_dirty_pages)
		out->v.track_dirty_pages = d.track_dirty_pages;
	if (!out->has_huge_pages)
		out->v.huge_pages = d.huge_pages;
	out->has_smt = out->has_track_dirty_pages = out->has_huge_pages = true;
	return 0;
}

json_t *config_machine_json(const struct machine_config *m)
{
	json_t *j = json_pack("{s:i, s:i, s:b, s:b, s:s}", "vcpu_count", (int)m->vcpu_count,
			      "mem_size_mib", (int)m->mem_size_mib, "smt", m->smt,
			      "track_dirty_pages", m->track_dirty_pages, "huge_pages",
			      huge_pages_name(m->huge_pages));
	/* As Firecracker: only a static template is shown. */
	if (j && m->cpu_template != CPU_TEMPLATE_NONE)
		json_object_set_new(j, "cpu_template",
				    json_string(cpu_static_template_name(m->cpu_template)));
	return j;
}

json_t *config_boot_source_json(const struct boot_source_config *b)
{
	/* As Firecracker: what was given, null where nothing was. */
	return json_pack("{s:s, s:o, s:o}", "kernel_image_path", b->kernel_image_path,
			 "initrd_path", b->initrd_path ? json_string(b->initrd_path) : json_null(),
			 "boot_args", b->boot_args ? json_string(b->boot_args) : json_null());
}

/* Sections of Firecracker's config file that Ember does not implement yet:
 * they are refused by name rather than silently ignored. Empty device lists
 * are accepted, since many configs carry them. */
static const char *const not_yet[] = {
	"memory-hotplug", "serial", "pmem",
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
	struct cpu_template *custom = NULL;
	if (!json_is_object(root)) {
		err_set(e, "config: the top level must be a JSON object");
		goto out;
	}
	json_object_foreach(root, key, val) {
		if (json_is_null(val))
			continue; /* as Firecracker's Option sections: null is absent */
		if (!strcmp(key, "boot-source")) {
			if (config_parse_boot_source(val, &out->boot_source, e))
				goto out;
			out->has_boot_source = true;
		} else if (!strcmp(key, "machine-config")) {
			struct machine_patch p;
			if (config_parse_machine(val, &p, e) || config_update_machine(out, &p, e))
				goto out;
		} else if (!strcmp(key, "cpu-config")) {
			if (config_parse_cpu_config(val, &custom, e))
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
		} else if (device_kind_by_key(key)) {
			const struct device_ops *ops = device_kind_by_key(key);
			void *cfg;
			if (ops->config->parse(val, &cfg, e) || config_put_device(out, ops, cfg, e))
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
	/* Firecracker applies machine-config before the devices, whatever
	 * the order of the file. */
	if ((out->has_mmds && mmds_check_ifaces(out, e)) ||
	    config_check_device_count(out, false, e) ||
	    config_check_devices_mem(out, out->machine.mem_size_mib, false, e))
		goto out;
	if (custom) { /* after machine-config, whatever the order, as Firecracker */
		config_set_cpu_custom(out, custom);
		custom = NULL;
	}
	rc = 0;
out:
	free(custom);
	json_decref(root);
	return rc;
}

/* Config files are small; bound them so a wrong path can't eat memory. */
#define MAX_CONFIG_FILE (1 << 20)

/* The whole of a small file (what names it in messages); NULL and e set. */
static char *read_small_file(const char *what, const char *path, size_t *len, ember_err *e)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		err_set(e, "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(MAX_CONFIG_FILE + 1);
	size_t n = buf ? fread(buf, 1, MAX_CONFIG_FILE + 1, f) : 0;
	int bad = ferror(f);
	fclose(f);
	if (!buf || bad)
		err_set(e, "%s %s: cannot read it", what, path);
	else if (n > MAX_CONFIG_FILE)
		err_set(e, "%s %s: larger than %d bytes", what, path, MAX_CONFIG_FILE);
	else {
		*len = n;
		return buf;
	}
	free(buf);
	return NULL;
}

int config_parse_cpu_config(json_t *j, struct cpu_template **out, ember_err *e)
{
	json_t *loaded = NULL;
	if (json_is_string(j)) { /* Firecracker's CustomCpuTemplateOrPath */
		const char *path = json_string_value(j);
		size_t n;
		char *text = read_small_file("cpu-config: template file", path, &n, e);
		if (!text)
			return -1;
		json_error_t je;
		loaded = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
		free(text);
		if (!loaded)
			return err_set(e, "cpu-config: template file %s: invalid JSON at line %d, "
				       "column %d: %s", path, je.line, je.column, je.text);
		j = loaded;
	}
	struct cpu_template *t = malloc(sizeof(*t));
	int rc = t ? cpu_template_parse(j, t, e) : err_set(e, "out of memory");
	json_decref(loaded);
	if (rc) {
		free(t);
		return -1;
	}
	*out = t;
	return 0;
}

int config_load_file(const char *path, struct vmm_config *out, ember_err *e)
{
	size_t n;
	char *buf = read_small_file("config file", path, &n, e);
	if (!buf)
		return -1;
	int rc = config_parse_text(buf, n, out, e);
	if (rc)
		err_prefix(e, "config file %s", path);
	free(buf);
	return rc;
}
