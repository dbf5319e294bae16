/* SPDX-License-Identifier: Apache-2.0 */
/* "oncebridge check": before the first message, whether each
 * precondition of exactly-once holds on the configured servers. The
 * configuration's own warnings (those of -t), the database's checks
 * (check_db.c) and each broker's, through its adapter's check_live, go
 * into one report (bridge/config/report.h), printed as aligned text or
 * JSON. Nothing is consumed, published or written. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "bridge/common/util.h"
#include "bridge/config/settings.h"
#include "bridge/daemon/check.h"

/* "FILE:LINE: warning: TEXT" lines of the configuration's diagnostics. */
static void
add_config_warnings(const struct diag *d, struct report *r)
{
	for (size_t i = 0; i < d->n; i++) {
		const char *line = d->lines[i], *sep = strstr(line, ": warning: ");
		char *subj;

		if (sep == NULL)
			continue;
		subj = xstrndup(line, (size_t)(sep - line));
		report_add(r, CHECK_WARNING, subj, NULL, "%s", sep + strlen(": warning: "));
		free(subj);
	}
}

static void
check_usage(FILE *out)
{
	fprintf(out, "usage: oncebridge [-c FILE] check [--json] [--strict]\n");
}

int
check_cli(const struct settings *s, const struct diag *d, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "strict", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, strict = false;
	struct report r = { 0 };
	int opt, status;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = true;
			break;
		case 's':
			strict = true;
			break;
		case 'h':
			check_usage(stdout);
			return 0;
		default:
			check_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		check_usage(stderr);
		return 2;
	}
	add_config_warnings(d, &r);
	check_db(s, &r);
	for (size_t i = 0; i < s->n_brokers; i++)
		if (s->brokers[i].adapter->check_live)
			s->brokers[i].adapter->check_live(s, &s->brokers[i], &r);
	status = report_status(&r, strict);
	if (json)
		report_print_json(&r, stdout, status);
	else
		report_print(&r, stdout);
	report_free(&r);
	return status;
}
