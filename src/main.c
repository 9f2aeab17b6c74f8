/* ember: command-line entry point, in Firecracker's form. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/config.h"
#include "vmm/log.h"
#include "vmm/vcpu.h"
#include "vmm/vmm.h"

/* Firecracker's exit codes for the failures Ember shares with it. */
enum { EXIT_GENERIC = 1, EXIT_BAD_CONFIGURATION = 152, EXIT_ARG_PARSING = 153 };

#define MAX_ID_LEN 64

struct cli {
	const char *config_file;
	const char *log_path;
	const char *level;
	const char *id;
	bool no_api;
	bool boot_timer;
	bool show_level, show_origin;
};

static const char usage[] =
	"Usage: ember --no-api --config-file FILE [options]\n"
	"\n"
	"Ember is a microVM monitor with Firecracker's interface.\n"
	"\n"
	"Options:\n"
	"  --config-file FILE   start a microVM from a Firecracker JSON config file\n"
	"  --no-api             do not serve the API (requires --config-file)\n"
	"  --boot-timer         log the guest boot time when the guest signals it\n"
	"  --level LEVEL        log level: Off, Error, Warning, Info, Debug, Trace\n"
	"  --log-path PATH      write the log to PATH (a file or FIFO) instead of stderr\n"
	"  --show-level         show each log line's level\n"
	"  --show-log-origin    show each log line's source file and line\n"
	"  --id ID              the microVM's id (letters, digits and '-', 1 to 64)\n"
	"  --version            print the version and exit\n"
	"  --help               print this help and exit\n";

static int fail(int code, const char *fmt, const char *arg)
{
	fprintf(stderr, "ember: error: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return code;
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
	OPT_VERSION, OPT_HELP, OPT_SHOW_LEVEL, OPT_SHOW_ORIGIN, OPT_API_SOCK,
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
	{"start-time-us", required_argument, NULL, OPT_START_TIME_US},
	{"start-time-cpu-us", required_argument, NULL, OPT_START_TIME_CPU_US},
	{"parent-cpu-time-us", required_argument, NULL, OPT_PARENT_CPU_TIME_US},
	{NULL, 0, NULL, 0},
};

/* Returns -1 to continue, or an exit status. */
static int parse_cli(int argc, char **argv, struct cli *c)
{
	opterr = 0; /* we word the errors ourselves */
	int opt;
	while ((opt = getopt_long_only(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case OPT_CONFIG: c->config_file = optarg; break;
		case OPT_NO_API: c->no_api = true; break;
		case OPT_BOOT_TIMER: c->boot_timer = true; break;
		case OPT_LEVEL: c->level = optarg; break;
		case OPT_LOG_PATH: c->log_path = optarg; break;
		case OPT_ID: c->id = optarg; break;
		case OPT_SHOW_LEVEL: c->show_level = true; break;
		case OPT_SHOW_ORIGIN: c->show_origin = true; break;
		case OPT_START_TIME_US:
		case OPT_START_TIME_CPU_US:
		case OPT_PARENT_CPU_TIME_US:
			break;
		case OPT_API_SOCK:
			return fail(EXIT_ARG_PARSING, "--api-sock %s: the API server is not in "
				    "Ember yet; use --no-api --config-file FILE", optarg);
		case OPT_VERSION:
			printf("Ember v%s\n", EMBER_VERSION);
			return 0;
		case OPT_HELP:
			fputs(usage, stdout);
			return 0;
		case ':':
			return fail(EXIT_ARG_PARSING, "option %s needs a value", argv[optind - 1]);
		default:
			return fail(EXIT_ARG_PARSING, "unknown option %s (see --help)",
				    argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail(EXIT_ARG_PARSING, "unexpected argument %s (see --help)", argv[optind]);
	if (!c->no_api)
		return fail(EXIT_ARG_PARSING, "%s", "the API server is not in Ember yet; run with "
			    "--no-api --config-file FILE");
	if (!c->config_file)
		return fail(EXIT_ARG_PARSING, "%s", "--no-api requires --config-file");
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
	if (c->log_path && log_set_path(c->log_path))
		return fail(EXIT_ARG_PARSING, "--log-path %s: cannot open it", c->log_path);
	return -1;
}

int main(int argc, char **argv)
{
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

	struct vmm_config cfg;
	ember_err e = {{0}};
	config_init(&cfg);
	if (config_load_file(cli.config_file, &cfg, &e)) {
		config_free(&cfg);
		return fail(EXIT_BAD_CONFIGURATION, "%s", e.msg);
	}

	static struct vmm vmm; /* large; lives for the whole process */
	struct vmm_options opt = {
		.boot_timer = cli.boot_timer,
		.console_in = STDIN_FILENO,
		.console_out = STDOUT_FILENO,
	};
	rc = vmm_build(&vmm, &cfg, &opt, &e);
	config_free(&cfg);
	if (rc)
		return fail(EXIT_BAD_CONFIGURATION, "%s", e.msg);
	rc = vmm_run(&vmm, &e);
	vmm_destroy(&vmm);
	if (rc)
		return fail(rc < 0 ? EXIT_GENERIC : rc, "%s", e.msg);
	return 0;
}
