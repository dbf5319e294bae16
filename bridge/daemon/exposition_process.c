/* SPDX-License-Identifier: Apache-2.0 */
/* The metrics of the running binary and of each process of the fleet:
 * oncebridge_build_info (version and the libraries' versions as labels),
 * and per process role (supervisor, worker, relay, retention) its resident
 * memory, CPU seconds, open and allowed file descriptors and start time,
 * read from /proc by the supervisor at each scrape (bridge/daemon/procstat.c). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <microhttpd.h>

#include "adapters/adapter.h"
#include "bridge/common/util.h"
#include "bridge/daemon/exposition.h"
#include "bridge/daemon/fleet.h"
#include "bridge/daemon/procstat.h"

void
exposition_build_info(struct buf *out)
{
	char libpq[32];
	int v = PQlibVersion();

	snprintf(libpq, sizeof(libpq), "%d.%d", v / 10000, v % 10000);
	exposition_family(out, "oncebridge_build_info", "gauge",
	    "Always 1; the labels say the version of oncebridge and of the libraries it runs with.");
	buf_appendf(out, "oncebridge_build_info{");
	exposition_label(out, "version", PACKAGE_VERSION);
	buf_append(out, ",", 1);
	exposition_label(out, "libpq", libpq);
	buf_append(out, ",", 1);
	exposition_label(out, "libmicrohttpd", MHD_get_version());
	for (size_t i = 0; adapters[i]; i++) {
		char name[64];

		if (adapters[i]->library_version == NULL)
			continue;
		snprintf(name, sizeof(name), "%s_library", adapters[i]->name);
		buf_append(out, ",", 1);
		exposition_label(out, name, adapters[i]->library_version());
	}
	buf_appendf(out, "} 1\n");
}

/* One process to describe: the supervisor (c NULL) or a child. */
struct proc_row {
	const struct child *c;
	struct procstat ps;
};

struct proc_metric {
	const char *name;
	const char *type;
	const char *help;
	double (*value)(const struct procstat *ps);
};

static double
resident(const struct procstat *ps)
{
	return (double)ps->resident_bytes;
}

static double
cpu(const struct procstat *ps)
{
	return ps->cpu_seconds;
}

static double
fds(const struct procstat *ps)
{
	return (double)ps->open_fds;
}

static double
max_fds(const struct procstat *ps)
{
	return (double)ps->max_fds;
}

static double
start_time(const struct procstat *ps)
{
	return ps->start_time_s;
}

static const struct proc_metric proc_metrics[] = {
	{ "oncebridge_process_resident_memory_bytes", "gauge", "Resident memory of the process.", resident },
	{ "oncebridge_process_cpu_seconds_total", "counter", "User and system CPU time the process has used.", cpu },
	{ "oncebridge_process_open_fds", "gauge", "File descriptors the process has open.", fds },
	{ "oncebridge_process_max_fds", "gauge", "The process's limit of open file descriptors.", max_fds },
	{ "oncebridge_process_start_time_seconds", "gauge", "When the process started, in seconds since the epoch.",
	    start_time },
};

static void
proc_labels(struct buf *out, const struct child *c)
{
	if (c == NULL) {
		buf_appendf(out, "role=\"supervisor\",index=\"0\"");
		return;
	}
	buf_appendf(out, "role=\"%s\",", role_name(c->role));
	if (c->name[0]) {
		exposition_label(out, "broker", c->name);
		buf_append(out, ",", 1);
	}
	buf_appendf(out, "index=\"%d\"", c->index);
}

void
exposition_process(const struct fleet *f, struct buf *out)
{
	struct proc_row *rows = xcalloc(f->n + 1, sizeof(*rows));
	size_t n = 0;

	if (procstat_read(getpid(), &rows[n].ps) == 0)
		n++;
	for (size_t i = 0; i < f->n; i++) {
		const struct child *c = &f->children[i];

		if (c->pid == 0 || c->retiring) /* a retiring one has the labels of its successor */
			continue;
		rows[n].c = c;
		if (procstat_read(c->pid, &rows[n].ps) == 0)
			n++;
	}
	for (size_t k = 0; k < sizeof(proc_metrics) / sizeof(proc_metrics[0]); k++) {
		exposition_family(out, proc_metrics[k].name, proc_metrics[k].type, proc_metrics[k].help);
		for (size_t i = 0; i < n; i++) {
			double v = proc_metrics[k].value(&rows[i].ps);

			if (v < 0)
				continue;
			buf_appendf(out, "%s{", proc_metrics[k].name);
			proc_labels(out, rows[i].c);
			buf_appendf(out, "} %.15g\n", v);
		}
	}
	free(rows);
}
