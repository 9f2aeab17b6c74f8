/* ember: command-line entry point, in Firecracker's form. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/server.h"
#include "seccomp/seccomp.h"
#include "vmm/config.h"
#include "vmm/controller.h"
#include "util/log.h"
#include "vmm/metrics.h"
#include "vmm/snapshot_file.h"
#include "vmm/vcpu.h"
#include "vmm/vmm.h"

/* Firecracker's exit codes for the failures Ember shares with it. */
enum { EXIT_GENERIC = 1, EXIT_BAD_CONFIGURATION = 152, EXIT_ARG_PARSING = 153 };

#define MAX_ID_LEN 64
#define DEFAULT_API_SOCK "/run/firecracker.socket"

struct cli {
	const char *config_file;
	const char *log_path;
	const char *level;
	const char *id;
	const char *api_sock;
	const char *metrics_path;
	const char *module;
	const char *metadata;
	const char *seccomp_filter;
	size_t max_payload;
	size_t mmds_limit;
	bool no_api;
	bool no_seccomp;
	bool boot_timer;
	bool show_level, show_origin;
};

static const char usage[] =
	"Usage: ember [--api-sock PATH] [--config-file FILE] [options]\n"
	"       ember --no-api --config-file FILE [options]\n"
	"\n"
	"Ember is a microVM monitor with Firecracker's interface.\n"
	"\n"
	"Options:\n"
	"  --api-sock PATH      serve Firecracker's API on this Unix socket\n"
	"                       (default " DEFAULT_API_SOCK ")\n"
	"  --config-file FILE   start a microVM from a Firecracker JSON config file\n"
	"  --no-api             do not serve the API (requires --config-file)\n"
	"  --http-api-max-payload-size BYTES\n"
	"                       largest API request body accepted (default 51200)\n"
	"  --mmds-size-limit BYTES\n"
	"                       largest MMDS data store (default: the max payload size)\n"
	"  --boot-timer         log the guest boot time when the guest signals it\n"
	"  --level LEVEL        log level: Off, Error, Warning, Info, Debug, Trace\n"
	"  --log-path PATH      write the log to PATH (a file or FIFO) instead of stderr\n"
	"  --show-level         show each log line's level\n"
	"  --show-log-origin    show each log line's source file and line\n"
	"  --module MODULE      log only lines from this module (e.g. api, vmm/vcpu)\n"
	"  --metrics-path PATH  write metrics to PATH (a file or FIFO) from the start\n"
	"  --metadata FILE      start with FILE's JSON as the MMDS contents\n"
	"  --id ID              the microVM's id (letters, digits and '-', 1 to 64)\n"
	"  --seccomp-filter FILE\n"
	"                       per-thread seccomp filters in seccompiler's JSON format\n"
	"                       instead of Ember's default ones (docs/seccomp.md)\n"
	"  --no-seccomp         install no seccomp filter (not for production)\n"
	"  --version            print the version and exit\n"
	"  --help               print this help and exit\n"
	"\n"
	"  --snapshot-version   print the snapshot data format version and exit\n"
	"  --describe-snapshot FILE\n"
	"                       print the data format version of a snapshot state file\n"
	"\n"
	"Firecracker's --enable-pci is refused with the reason: Ember has no PCI.\n";

static int fail(int code, const char *fmt, const char *arg)
{
	/* Through the logger's stderr queue, after the log lines before it:
	 * an unread stderr delays the exit by a second at most, never for
	 * good. */
	char line[1024];
	int n = snprintf(line, sizeof(line), "ember: error: ");
	int m = snprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, arg);
	n = m < 0 ? n : n + m < (int)sizeof(line) - 1 ? n + m : (int)sizeof(line) - 2;
	line[n++] = '\n';
	log_stderr(line, (size_t)n);
	return code;
}

/* Firecracker's --describe-snapshot: the data format version of a state
 * file (its header is enough: a file of another version is described,
 * not loaded). */
static int describe_snapshot(const char *path)
{
	json_t *st;
	uint32_t version;
	ember_err e;
	int rc = snapshot_file_read(path, &st, &version, &e);
	json_decref(st);
	if (version == SNAPSHOT_FORMAT_VERSION && !rc) {
		printf("v%s\n", SNAPSHOT_VERSION_STRING);
		return 0;
	}
	if (version && version != SNAPSHOT_FORMAT_VERSION) {
		printf("v%u.0.0\n", version);
		return 0;
	}
	return fail(EXIT_GENERIC, "--describe-snapshot: %s", e.msg);
}

static bool valid_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > MAX_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(id[i] == '-' || (id[i] >= '0' && id[i] <= '9') ||
		      (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return true;
}

enum {
	OPT_CONFIG = 256, OPT_NO_API, OPT_BOOT_TIMER, OPT_LEVEL, OPT_LOG_PATH, OPT_ID,
	OPT_VERSION, OPT_HELP, OPT_SHOW_LEVEL, OPT_SHOW_ORIGIN, OPT_API_SOCK, OPT_MAX_PAYLOAD,
	OPT_MMDS_LIMIT, OPT_METRICS_PATH, OPT_MODULE, OPT_METADATA, OPT_SECCOMP_FILTER,
	OPT_NO_SECCOMP,
	/* Firecracker's, for features Ember lacks: refused with the reason. */
	OPT_SNAPSHOT_VERSION, OPT_DESCRIBE_SNAPSHOT, OPT_ENABLE_PCI,
	/* Passed by Firecracker's jailer; Ember accepts and ignores them for now. */
	OPT_START_TIME_US, OPT_START_TIME_CPU_US, OPT_PARENT_CPU_TIME_US,
};

static const struct option options[] = {
	{"config-file", required_argument, NULL, OPT_CONFIG},
	{"no-api", no_argument, NULL, OPT_NO_API},
	{"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
	{"level", required_argument, NULL, OPT_LEVEL},
	{"log-path", required_argument, NULL, OPT_LOG_PATH},
	{"id", required_argument, NULL, OPT_ID},
	{"version", no_argument, NULL, OPT_VERSION},
	{"help", no_argument, NULL, OPT_HELP},
	{"show-level", no_argument, NULL, OPT_SHOW_LEVEL},
	{"show-log-origin", no_argument, NULL, OPT_SHOW_ORIGIN},
	{"api-sock", required_argument, NULL, OPT_API_SOCK},
	{"http-api-max-payload-size", required_argument, NULL, OPT_MAX_PAYLOAD},
	{"mmds-size-limit", required_argument, NULL, OPT_MMDS_LIMIT},
	{"metrics-path", required_argument, NULL, OPT_METRICS_PATH},
	{"module", required_argument, NULL, OPT_MODULE},
	{"metadata", required_argument, NULL, OPT_METADATA},
	{"snapshot-version", no_argument, NULL, OPT_SNAPSHOT_VERSION},
	{"describe-snapshot", required_argument, NULL, OPT_DESCRIBE_SNAPSHOT},
	{"enable-pci", no_argument, NULL, OPT_ENABLE_PCI},
	{"seccomp-filter", required_argument, NULL, OPT_SECCOMP_FILTER},
	{"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
	{"start-time-us", required_argument, NULL, OPT_START_TIME_US},
	{"start-time-cpu-us", required_argument, NULL, OPT_START_TIME_CPU_US},
	{"parent-cpu-time-us", required_argument, NULL, OPT_PARENT_CPU_TIME_US},
	{NULL, 0, NULL, 0},
};

/* Returns -1 to continue, or an exit status. */
#define N_OPTIONS (sizeof(options) / sizeof(options[0]) - 1)

/* The next flag, by Firecracker's rules (its arg_parser): "--name" exactly
 * (no abbreviation, no single dash, no "--name=value"), a value is the next
 * word and may not start with "--", no flag twice. Returns the option's
 * code (its value in *arg), 0 at the end, '?' for a word that is no flag,
 * ':' for a missing value, 'D' for a flag given again; *word is the flag. */
static int next_option(int argc, char **argv, int *i, char **arg, const char **word,
		       unsigned char *seen)
{
	if (*i >= argc)
		return 0;
	*word = argv[(*i)++];
	*arg = NULL;
	if (strncmp(*word, "--", 2))
		return '?';
	for (size_t k = 0; k < N_OPTIONS; k++) {
		if (strcmp(*word + 2, options[k].name))
			continue;
		if (seen[k]++)
			return 'D';
		if (options[k].has_arg == required_argument) {
			if (*i >= argc || !strncmp(argv[*i], "--", 2))
				return ':';
			*arg = argv[(*i)++];
		}
		return options[k].val;
	}
	return '?';
}

static int parse_cli(int argc, char **argv, struct cli *c)
{
	unsigned char seen[N_OPTIONS] = {0};
	int i = 1, opt;
	char *arg;
	const char *word = NULL;
	while ((opt = next_option(argc, argv, &i, &arg, &word, seen)) != 0) {
		switch (opt) {
		case OPT_CONFIG: c->config_file = arg; break;
		case OPT_NO_API: c->no_api = true; break;
		case OPT_BOOT_TIMER: c->boot_timer = true; break;
		case OPT_LEVEL: c->level = arg; break;
		case OPT_LOG_PATH: c->log_path = arg; break;
		case OPT_ID: c->id = arg; break;
		case OPT_SHOW_LEVEL: c->show_level = true; break;
		case OPT_SHOW_ORIGIN: c->show_origin = true; break;
		case OPT_START_TIME_US:
		case OPT_START_TIME_CPU_US:
		case OPT_PARENT_CPU_TIME_US:
			break;
		case OPT_API_SOCK: c->api_sock = arg; break;
		case OPT_METRICS_PATH: c->metrics_path = arg; break;
		case OPT_MODULE: c->module = arg; break;
		case OPT_METADATA: c->metadata = arg; break;
		case OPT_SNAPSHOT_VERSION:
			printf("v%s\n", SNAPSHOT_VERSION_STRING);
			return 0;
		case OPT_DESCRIBE_SNAPSHOT:
			return describe_snapshot(arg);
		case OPT_ENABLE_PCI:
			return fail(EXIT_GENERIC, "%s: PCI is not supported by Ember: its devices "
				    "are on virtio-mmio", "--enable-pci");
		case OPT_SECCOMP_FILTER: c->seccomp_filter = arg; break;
		case OPT_NO_SECCOMP: c->no_seccomp = true; break;
		case OPT_MAX_PAYLOAD:
		case OPT_MMDS_LIMIT: {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(arg, &end, 10);
			if (errno || *end || end == arg || arg[0] == '-' || v == 0 ||
			    v > (1ULL << 30)) {
				char what[128];
				snprintf(what, sizeof(what), "%s %.80s", opt == OPT_MAX_PAYLOAD
					 ? "--http-api-max-payload-size" : "--mmds-size-limit", arg);
				return fail(EXIT_ARG_PARSING, "%s: not a size in bytes between 1 "
					    "and 1073741824", what);
			}
			*(opt == OPT_MAX_PAYLOAD ? &c->max_payload : &c->mmds_limit) = (size_t)v;
			break;
		}
		case OPT_VERSION:
			printf("Ember v%s\n", EMBER_VERSION);
			return 0;
		case OPT_HELP:
			fputs(usage, stdout);
			return 0;
		case ':':
			return fail(EXIT_ARG_PARSING, "option %s needs a value", word);
		case 'D':
			return fail(EXIT_ARG_PARSING, "option %s is given more than once", word);
		default:
			return fail(EXIT_ARG_PARSING, "unknown option %s (see --help)", word);
		}
	}
	if (c->no_api && !c->config_file)
		return fail(EXIT_ARG_PARSING, "%s", "--no-api requires --config-file");
	if (c->no_api && c->api_sock)
		return fail(EXIT_ARG_PARSING, "%s", "--no-api and --api-sock exclude each other");
	if (c->no_seccomp && c->seccomp_filter) /* as Firecracker */
		return fail(EXIT_ARG_PARSING, "%s", "--no-seccomp and --seccomp-filter exclude each other");
	if (!c->no_api && !c->api_sock)
		c->api_sock = DEFAULT_API_SOCK;
	if (!c->max_payload)
		c->max_payload = API_DEFAULT_MAX_PAYLOAD;
	if (!c->mmds_limit) /* as Firecracker */
		c->mmds_limit = c->max_payload;
	return -1;
}

static int setup_logger(const struct cli *c)
{
	enum log_level level;
	if (c->level) {
		if (log_level_parse(c->level, &level))
			return fail(EXIT_ARG_PARSING, "--level %s: not a log level (Off, Error, "
				    "Warning, Info, Debug, Trace)", c->level);
		log_set_level(level);
	}
	if (c->id) {
		if (!valid_id(c->id))
			return fail(EXIT_ARG_PARSING, "--id %s: use 1 to 64 letters, digits or '-'",
				    c->id);
		log_set_instance_id(c->id);
	}
	log_set_options(c->show_level, c->show_origin);
	if (c->module)
		log_set_module(c->module);
	if (c->log_path && log_set_path(c->log_path))
		return fail(EXIT_ARG_PARSING, "--log-path %s: cannot open it", c->log_path);
	return -1;
}

/* --metadata FILE: the MMDS contents at start, as a PUT /mmds of the file's
 * JSON would set them (same size limit and messages). */
static int load_metadata(struct controller *ctl, const char *path, ember_err *e)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!j && je.line < 0) /* jansson's "unable to open ...: <errno text>" */
		return err_set(e, "--metadata %s: cannot read it: %s", path, je.text);
	if (!j)
		return err_set(e, "--metadata %s: not valid JSON: %s at line %d column %d", path,
			       je.text, je.line, je.column);
	int rc = mmds_store_put(&ctl->mmds.store, j, e);
	json_decref(j);
	if (rc)
		return err_prefix(e, "--metadata");
	ctl->mmds_put = true;
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t t0_us = metrics_mono_us();
	/* SIGTERM and SIGINT are read through a signalfd by the VMM thread and
	 * the vCPU kick signal is unblocked only in vCPU threads; blocking them
	 * here, before any thread exists, makes every thread inherit that. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, vcpu_kick_signal());
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	vcpu_signals_init();

	struct cli cli = {0};
	int rc = parse_cli(argc, argv, &cli);
	if (rc >= 0)
		return rc;
	if ((rc = setup_logger(&cli)) >= 0)
		return rc;
	ember_err se;
	if (seccomp_setup(cli.no_seccomp, cli.seccomp_filter, &se)) {
		if (cli.seccomp_filter)
			err_prefix(&se, "--seccomp-filter %s", cli.seccomp_filter);
		return fail(EXIT_GENERIC, "%s", se.msg);
	}

	ember_err e = {{0}};
	struct vmm_config cfg;
	config_init(&cfg);
	if (cli.config_file && config_load_file(cli.config_file, &cfg, &e)) {
		config_free(&cfg);
		return fail(EXIT_BAD_CONFIGURATION, "%s", e.msg);
	}
	/* As Firecracker: --metrics-path sets the metrics up at start, and a
	 * second setup (the config file's, PUT /metrics) is refused. */
	if (cli.metrics_path) {
		if (cfg.has_metrics) {
			config_free(&cfg);
			return fail(EXIT_BAD_CONFIGURATION, "%s", "metrics: Reinitialization of metrics not "
				    "allowed. (--metrics-path set them up already)");
		}
		cfg.metrics.metrics_path = strdup(cli.metrics_path);
		if (!cfg.metrics.metrics_path) {
			config_free(&cfg);
			return fail(EXIT_GENERIC, "%s", "out of memory");
		}
		cfg.has_metrics = true;
	}

	/* Large (it holds the VM's vCPUs and devices) and process-long. */
	static struct controller ctl;
	static struct vmm_channel chan;
	static struct api_server api;
	static struct metrics metrics;
	metrics_init(&metrics);
	struct vmm_options opt = {
		.boot_timer = cli.boot_timer,
		.console_in = STDIN_FILENO,
		.console_out = STDOUT_FILENO,
		.metrics = &metrics,
	};
	bool with_api = !cli.no_api;
	if ((with_api && vmm_channel_init(&chan, &e)) ||
	    controller_init(&ctl, &opt, cli.id, with_api ? &chan : NULL, &metrics, cli.mmds_limit,
			    &e)) {
		config_free(&cfg);
		return fail(EXIT_GENERIC, "%s", e.msg);
	}
	if (controller_set_config(&ctl, &cfg, &e) ||
	    (cli.metadata && load_metadata(&ctl, cli.metadata, &e))) {
		controller_destroy(&ctl);
		return fail(EXIT_BAD_CONFIGURATION, "%s", e.msg);
	}
	/* The API thread installs its own filter before it touches a client. */
	struct api_server_opts api_opts = {.limits = API_DEFAULT_LIMITS,
					   .on_thread_start = seccomp_apply_api_thread};
	if (with_api && api_server_start_opts(&api, cli.api_sock, cli.max_payload, &chan, &metrics,
					      &api_opts, &e)) {
		controller_destroy(&ctl);
		return fail(EXIT_GENERIC, "%s", e.msg);
	}
	if (with_api) {
		/* Firecracker's startup metrics: exec (approximately: main) to
		 * the API socket accepting, in wall and in CPU time. */
		struct timespec cpu;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
		metric_set(&metrics.api_server.process_startup_time_us, metrics_mono_us() - t0_us);
		metric_set(&metrics.api_server.process_startup_time_cpu_us,
			   (uint64_t)cpu.tv_sec * 1000000 + (uint64_t)cpu.tv_nsec / 1000);
	}
	/* The main thread's filter goes on now: after the API thread has
	 * started (a thread inherits its creator's filters) and before the
	 * guest's first instruction or any API request. */
	if (seccomp_apply(SECCOMP_VMM, &e))
		rc = EXIT_GENERIC;
	else if (log_start_output() && err_set(&e, "cannot start the log's writer thread"))
		rc = EXIT_GENERIC;
	else if (cli.config_file && controller_start_vm(&ctl, &e))
		rc = EXIT_BAD_CONFIGURATION;
	else
		rc = controller_run(&ctl, &e);
	if (with_api) {
		api_server_stop(&api);
		vmm_channel_destroy(&chan);
	}
	controller_destroy(&ctl);
	if (rc)
		return fail(rc < 0 ? EXIT_GENERIC : rc, "%s", e.msg);
	return 0;
}
