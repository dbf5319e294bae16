/* SPDX-License-Identifier: Apache-2.0 */
/* oncebridge's command line: check a configuration (-t) or run the
 * supervisor with it. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/adapter.h"
#include "bridge/core/deadletter.h"
#include "bridge/config/diag.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/config/settings.h"
#include "bridge/daemon/check.h"
#include "bridge/daemon/supervisor.h"

#define DEFAULT_CONFIG SYSCONFDIR "/oncebridge/oncebridge.conf"

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: oncebridge [-t] [-c FILE] [--allow-root]\n"
	    "       oncebridge [-c FILE] check [--json] [--strict]\n"
	    "       oncebridge [-c FILE] try ROUTE [--topic T] [--property K=V] [--header K=V] [--db] [FILE|-]\n"
	    "       oncebridge [-c FILE] dead-letters list|show|replay|purge ... (see dead-letters help)\n"
	    "\n"
	    "Bridges message brokers to PostgreSQL with exactly-once effects.\n"
	    "Broker types:");
	for (size_t i = 0; adapters[i]; i++)
		fprintf(out, " %s", adapters[i]->name);
	fprintf(out,
	    "\n\n"
	    "  -c, --config FILE  main configuration file (default %s)\n"
	    "  -t, --test         check the configuration, without network I/O, and exit\n"
	    "      --allow-root   run the daemon as root (refused otherwise)\n"
	    "  -V, --version      print the version and exit\n"
	    "  -h, --help         print this help and exit\n"
	    "\n"
	    "  check              check on the configured servers that the guarantee holds (read-only);\n"
	    "                     exit 0 all ok, 1 warnings with --strict, 2 errors; --json for automation\n"
	    "  try ROUTE          show what ROUTE does with a payload (FILE, or standard input);\n"
	    "                     --db also runs its SQL in a transaction that is rolled back\n",
	    DEFAULT_CONFIG);
}

static bool
is_command(const char *arg)
{
	return strcmp(arg, "dead-letters") == 0 || strcmp(arg, "check") == 0 || strcmp(arg, "try") == 0;
}

/* A command after the options, argv[0] one of is_command's. */
static int
run_command(const struct settings *s, const struct diag *d, int argc, char **argv)
{
	settings_apply_logging(s);
	repeat_set_interval(0); /* a command tries once: no "retrying" */
	if (strcmp(argv[0], "check") == 0)
		return check_cli(s, d, argc, argv);
	if (strcmp(argv[0], "try") == 0)
		return try_cli(s, argc, argv);
	return deadletter_cli(s, argc, argv);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "allow-root", no_argument, NULL, 'R' },
		{ "list-keys", no_argument, NULL, 'K' }, /* hidden: for the documentation check */
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG;
	bool test_only = false, allow_root = false;
	struct diag d = { 0 };
	struct settings *s;
	int opt, status;

	/* "+": stop at the first non-option, the dead-letters command has its own */
	while ((opt = getopt_long(argc, argv, "+c:tVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		case 'V':
			printf("oncebridge %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'R':
			allow_root = true;
			break;
		case 'K':
			settings_list_keys(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc && !is_command(argv[optind])) {
		usage(stderr);
		return 2;
	}
	if (geteuid() == 0 && !allow_root && !test_only && optind == argc) {
		/* it holds credentials and parses what any device sends */
		fprintf(stderr, "oncebridge: running as root is not permitted\n"
		                "HINT: run it as an unprivileged user, as the packaged service does (user \"oncebridge\"),"
		                " or pass --allow-root\n");
		return 1;
	}
	log_init("oncebridge");
	s = settings_load(path, &d);
	if (s == NULL || optind == argc || strcmp(argv[optind], "check") != 0)
		diag_print(&d, stderr); /* check reports them */
	if (s == NULL) {
		fprintf(stderr, "oncebridge: configuration \"%s\" has %d error%s\n", path, d.errors,
		    d.errors == 1 ? "" : "s");
		diag_free(&d);
		return optind < argc && strcmp(argv[optind], "check") == 0 ? 2 : 1;
	}
	if (optind < argc) {
		status = run_command(s, &d, argc - optind, argv + optind);
		diag_free(&d);
		settings_free(s);
		return status;
	}
	diag_free(&d);
	if (test_only) {
		size_t routes = 0;

		for (size_t i = 0; i < s->n_brokers; i++)
			routes += s->brokers[i].n_routes;
		printf("configuration \"%s\" is valid: %zu broker%s, %zu route%s\n", path, s->n_brokers,
		    s->n_brokers == 1 ? "" : "s", routes, routes == 1 ? "" : "s");
		settings_free(s);
		return 0;
	}
	settings_apply_logging(s);
	log_set_process("supervisor", NULL, -1);
	log_info("oncebridge %s starting with \"%s\": %zu broker connections", PACKAGE_VERSION, path,
	    s->n_brokers);
	status = supervisor_run(&s);
	settings_free(s);
	return status;
}
