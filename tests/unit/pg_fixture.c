/* SPDX-License-Identifier: Apache-2.0 */
/* The shared fixture of the core's PostgreSQL tests (pg_fixture.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/pg_fixture.h"

void
fx_open(struct fixture *fx, int argc, char **argv)
{
	memset(fx, 0, sizeof(*fx));
	if (argc != 2) {
		fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
		exit(2);
	}
	null_register();
	fx->settings = settings_load(argv[1], &fx->diag);
	if (fx->settings == NULL || fx->settings->n_brokers < 1) {
		diag_print(&fx->diag, stderr);
		exit(2);
	}
	fx->broker = &fx->settings->brokers[0];
	fx->side = PQconnectdb(fx->settings->db_conninfo);
	if (PQstatus(fx->side) != CONNECTION_OK) {
		fprintf(stderr, "could not connect to the database: %s", PQerrorMessage(fx->side));
		exit(2);
	}
	null_worker_open(&fx->worker, fx->settings, fx->broker, &fx->stop);
}

void
fx_close(struct fixture *fx)
{
	null_worker_close(&fx->worker);
	null_reset();
	PQfinish(fx->side);
	settings_free(fx->settings);
	diag_free(&fx->diag);
}

size_t
fx_send(const char *source, const char *payload)
{
	struct message m;
	char topic[128];

	memset(&m, 0, sizeof(m));
	snprintf(topic, sizeof(topic), "ev.%s", source);
	m.payload = payload;
	m.payload_len = strlen(payload);
	m.topic = topic;
	m.source = source;
	return null_enqueue(&m);
}

size_t
fx_event(const char *source, const char *id, int n)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"id\": \"%s\", \"n\": %d}", id, n);
	return fx_send(source, body);
}

enum apply_status
fx_step(struct fixture *fx)
{
	enum apply_status st = APPLY_TRANSIENT;

	if (null_step(&fx->worker, &st) == 0)
		printf("# the queue was empty\n");
	return st;
}

static PGresult *
side_query(struct fixture *fx, const char *sql, const char *p1, const char *p2, const char *p3)
{
	const char *params[3] = { p1, p2, p3 };
	int n = p3 ? 3 : p2 ? 2 : p1 ? 1 : 0;
	PGresult *res = PQexecParams(fx->side, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		printf("# %s: %s", sql, PQresultErrorMessage(res));
	return res;
}

bool
fx_exec(struct fixture *fx, const char *sql, const char *p1, const char *p2, const char *p3)
{
	PGresult *res = side_query(fx, sql, p1, p2, p3);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	PQclear(res);
	return ok;
}

char *
fx_text(struct fixture *fx, const char *sql, const char *p1, const char *p2)
{
	PGresult *res = side_query(fx, sql, p1, p2, NULL);
	char *v = NULL;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		v = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

long
fx_long(struct fixture *fx, const char *sql, const char *p1, const char *p2)
{
	char *v = fx_text(fx, sql, p1, p2);
	long n = v ? atol(v) : -1;

	free(v);
	return n;
}

long
fx_applied(struct fixture *fx, const char *route, const char *event_id)
{
	return fx_long(fx, "SELECT count(*) FROM applied WHERE route = $1 AND event_id = $2", route, event_id);
}

const char *
fx_outcome_name(enum apply_outcome o)
{
	static const char *const names[] = { "duplicate", "applied", "dead-lettered", "deferred" };

	return (unsigned)o < 4 ? names[o] : "?";
}

const char *
fx_last_outcome(size_t id)
{
	const struct null_record *r = null_record(id);

	return r ? fx_outcome_name(r->outcome) : "(no record)";
}

void
fx_fault(struct fixture *fx, const char *route, const char *event_id, const char *sqlstate)
{
	fx_exec(fx, "INSERT INTO faults (route, event_id, sqlstate) VALUES ($1, $2, $3)", route, event_id, sqlstate);
}

void
fx_clear_fault(struct fixture *fx, const char *route, const char *event_id)
{
	fx_exec(fx, "DELETE FROM faults WHERE route = $1 AND event_id = $2", route, event_id, NULL);
}

long
fx_claims(struct fixture *fx, const char *route, const char *event_id)
{
	return fx_long(fx, "SELECT count(*) FROM oncebridge.processed_events WHERE consumer = $1 AND event_id = $2",
	    route, event_id);
}

static int saved_stdout = -1;
static FILE *capture;

void
fx_capture_begin(void)
{
	fflush(stdout);
	capture = tmpfile();
	saved_stdout = dup(STDOUT_FILENO);
	dup2(fileno(capture), STDOUT_FILENO);
}

char *
fx_capture_end(void)
{
	int fd = fileno(capture);
	off_t len;
	char *text;

	fflush(stdout);
	dup2(saved_stdout, STDOUT_FILENO);
	close(saved_stdout);
	len = lseek(fd, 0, SEEK_END);
	text = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
	if (len > 0 && (lseek(fd, 0, SEEK_SET) != 0 || read(fd, text, (size_t)len) != (ssize_t)len))
		text[0] = '\0';
	fclose(capture);
	return text;
}
