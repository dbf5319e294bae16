/* SPDX-License-Identifier: Apache-2.0 */
/* The core's pipelined transaction against a real PostgreSQL when the
 * first round trip's pipeline sync does not arrive (issue 11, path 5):
 * the transaction that BEGIN and the claims opened must be rolled back (or
 * the session dropped), or the retry on the same session sees its own
 * uncommitted claims as duplicates, acks them and never applies them.
 *
 * The seam: this program defines PQgetResult, which the core (linked in
 * statically) calls instead of libpq's; once armed, it swallows the next
 * PGRES_PIPELINE_SYNC. Run by tests/integration/core_missing_sync.py with
 * the path of a configuration whose first broker has one route inserting
 * into the table "applied"; prints TAP. */
#define _GNU_SOURCE
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/amqp_cfg.h"
#include "bridge/core/apply.h"
#include "bridge/config/diag.h"
#include "bridge/config/settings.h"
#include "tests/unit/tap.h"

static int swallow_syncs;
static int swallowed;

PGresult *
PQgetResult(PGconn *conn)
{
	static PGresult *(*real)(PGconn *);
	PGresult *res;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "PQgetResult");
	res = real(conn);
	if (swallow_syncs > 0 && res && PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
		swallow_syncs--;
		swallowed++;
		PQclear(res);
		return NULL;
	}
	return res;
}

static long
count_applied(const char *conninfo)
{
	PGconn *conn = PQconnectdb(conninfo);
	PGresult *res = PQexec(conn, "SELECT count(*) FROM applied");
	long n = PQresultStatus(res) == PGRES_TUPLES_OK ? atol(PQgetvalue(res, 0, 0)) : -1;

	PQclear(res);
	PQfinish(conn);
	return n;
}

int
main(int argc, char **argv)
{
	struct diag d = { 0 };
	struct settings *s;
	struct core *c;
	struct message msgs[3];
	char bodies[3][64];
	enum apply_outcome outcome[3];
	enum apply_status st;
	int settled_n = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
		return 2;
	}
	s = settings_load(argv[1], &d);
	if (s == NULL || s->n_brokers < 1) {
		diag_print(&d, stderr);
		return 2;
	}
	c = core_new(s, &s->brokers[0]);
	ok(core_ready(c) == 0, "the core connects to the database");
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < 3; i++) {
		snprintf(bodies[i], sizeof(bodies[i]), "{\"id\": \"sync-%d\", \"n\": %d}", i, i);
		msgs[i].payload = bodies[i];
		msgs[i].payload_len = strlen(bodies[i]);
		msgs[i].topic = "ev.sync";
		msgs[i].topic_separator = '.';
		msgs[i].source = amqpc_route_cfg(&s->brokers[0].routes[0])->queue;
	}

	swallow_syncs = 1;
	st = core_apply(c, msgs, 3, outcome);
	is_int(swallowed, 1, "the seam swallowed the first pipeline sync of the batch");
	is_int(st, APPLY_TRANSIENT, "a batch whose pipeline sync is missing is transient");
	is_int(count_applied(s->db_conninfo), 0, "nothing applied after the failed batch");

	st = core_apply(c, msgs, 3, outcome);
	for (int i = 0; i < 3; i++)
		settled_n += apply_settled(outcome[i]);
	is_int(st, APPLY_OK, "the retry of the batch commits");
	is_int(settled_n, 3, "the retry settles all three messages");
	is_int(count_applied(s->db_conninfo), 3,
	    "the retry applies all three events (not taken for duplicates of its own uncommitted claims)");
	is_int((long)core_stats(c)->duplicates, 0, "no message counted as a duplicate");

	core_free(c);
	settings_free(s);
	diag_free(&d);
	return tap_done();
}
