/* SPDX-License-Identifier: Apache-2.0 */
/* PostgreSQL session setup for a worker: parameters from the config (the
 * password from its file, never from a string we build), checks that the
 * schema is installed at the version this build needs, and preparation of
 * the statements the core runs for every batch; and the check of a
 * result that the other files share (db_ok, db_failure, db_exec). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/db.h"
#include "bridge/core/orphan.h"
#include "bridge/core/failure.h"
#include "bridge/core/peer_defaults.h"
#include "bridge/core/roundtrip.h"
#include "bridge/core/standby_check.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

/* Claim the (consumer, event_id) pairs of a batch: returns the pairs that
 * were not yet processed (a pair twice in one batch is inserted, and
 * returned, once). The caller maps them back to its items; a join back
 * to the input in SQL cost PostgreSQL a hash join and an aggregate per
 * batch. */
#define SQL_DEDUPE \
	"INSERT INTO oncebridge.processed_events (consumer, event_id)" \
	" SELECT c, e FROM unnest($1::text[], $2::text[]) AS t(c, e)" \
	" ON CONFLICT DO NOTHING RETURNING consumer, event_id"

/* Claim an event ID for a dead letter; no row back means it was handled
 * before (a redelivery after a crash between COMMIT and ack). */
#define SQL_CLAIM \
	"INSERT INTO oncebridge.processed_events (consumer, event_id) VALUES ($1, $2)" \
	" ON CONFLICT DO NOTHING RETURNING 1"

/* The same without ON CONFLICT, for the one-message fast path: a
 * duplicate fails with unique_violation (23505) and aborts the pipeline
 * before the business SQL could run. */
#define SQL_CLAIM_STRICT \
	"INSERT INTO oncebridge.processed_events (consumer, event_id) VALUES ($1, $2)"

/* Undo the claim of an event whose business SQL will be retried later. */
#define SQL_UNCLAIM \
	"DELETE FROM oncebridge.processed_events WHERE consumer = $1 AND event_id = $2"

#define SQL_DEAD_LETTER \
	"INSERT INTO oncebridge.dead_letters (broker, consumer, event_id, source, exchange, topic," \
	" properties, payload, payload_size, reason, sqlstate, error_detail, attempts, payload_sha256)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::bytea, $9::integer, $10, $11, $12, $13::integer," \
	" $14::bytea)"

void
db_route_stmt(char *buf, size_t size, size_t route_index)
{
	snprintf(buf, size, "ob_route_%zu", route_index);
}

/* SQLSTATE and message of a failed result (or of the connection when res is
 * NULL). */
static void
db_error(PGconn *conn, const PGresult *res, char sqlstate[6], char **errmsg)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	if (state && strlen(state) == 5)
		memcpy(sqlstate, state, 6);
	else
		sqlstate[0] = '\0';
	if (errmsg) {
		if (msg == NULL) {
			const char *cm = PQerrorMessage(conn);
			size_t len = strlen(cm);

			while (len > 0 && cm[len - 1] == '\n')
				len--;
			*errmsg = xstrndup(cm, len);
		} else {
			*errmsg = xstrdup(msg);
		}
	}
}

bool
db_ok(PGconn *conn, const PGresult *res, char sqlstate[6], char **errmsg)
{
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return true;
	if (sqlstate)
		db_error(conn, res, sqlstate, errmsg);
	return false;
}

enum failure_class
db_failure(PGconn *conn, const PGresult *res, const char sqlstate[6])
{
	if (res == NULL || PQstatus(conn) != CONNECTION_OK)
		return FAILURE_TRANSIENT;
	return classify_sqlstate(sqlstate[0] ? sqlstate : NULL);
}

bool
db_ok_or_warn(PGconn *conn, const PGresult *res, const char *what)
{
	if (db_ok(conn, res, NULL, NULL))
		return true;
	log_warn("could not %s: %s", what, PQresultErrorMessage(res));
	return false;
}

bool
db_exec(PGconn *conn, const char *sql, const char *what)
{
	PGresult *res = rt_exec(conn, sql);
	bool ok = db_ok_or_warn(conn, res, what);

	PQclear(res);
	return ok;
}

static bool
prepare(PGconn *conn, const char *name, const char *sql, int nparams, const Oid *types, const char *what)
{
	PGresult *res = rt_prepare(conn, name, sql, nparams, types);
	bool ok = db_ok(conn, res, NULL, NULL);

	if (!ok)
		log_error("could not prepare %s: %s", what, PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

static bool
check_schema(PGconn *conn)
{
	PGresult *res = rt_exec(conn,
	    "SELECT coalesce(max(version), 0) FROM oncebridge.schema_migrations");
	bool ok = false;

	if (!db_ok(conn, res, NULL, NULL) && PQstatus(conn) != CONNECTION_OK) {
		log_warn("could not read the oncebridge schema version: %s", PQerrorMessage(conn));
	} else if (!db_ok(conn, res, NULL, NULL)) {
		repeat_error("database", NULL, "could not read the oncebridge schema version: %s"
		    "hint: apply the migrations in /usr/share/oncebridge/sql with oncebridge-migrate",
		    PQresultErrorMessage(res));
	} else if (atoi(PQgetvalue(res, 0, 0)) < ONCEBRIDGE_SCHEMA_VERSION) {
		repeat_error("database", NULL, "the oncebridge schema is at version %s, this build needs %d; "
		    "apply the newer migrations with oncebridge-migrate",
		    PQgetvalue(res, 0, 0), ONCEBRIDGE_SCHEMA_VERSION);
	} else {
		ok = true;
	}
	PQclear(res);
	return ok;
}

/* Acks follow COMMIT, so COMMIT must be durable before it returns, and on
 * a primary with a synchronous standby it must be on the standby too:
 * "off", "local" and "remote_write" would let a crash or a failover lose a
 * commit whose message was already acked. "on" and "remote_apply" stay. */
static void
ensure_synchronous_commit(PGconn *conn)
{
	static const char *const weak[] = { "off", "local", "remote_write" };
	PGresult *res = rt_exec(conn, "SHOW synchronous_commit");

	if (db_ok(conn, res, NULL, NULL)) {
		const char *v = PQgetvalue(res, 0, 0);

		for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
			if (strcmp(v, weak[i]) != 0)
				continue;
			log_warn("synchronous_commit is \"%s\" for this role or database; oncebridge sets it to \"on\" "
			    "for its own sessions, since it acks messages after COMMIT", v);
			PQclear(res);
			res = rt_exec(conn, "SET synchronous_commit = on");
			break;
		}
	}
	PQclear(res);
}

/* Server notices (WARNING, NOTICE) go to our log, not raw to stderr. */
static void
notice_to_log(void *arg, const char *message)
{
	size_t len = strlen(message);

	(void)arg;
	while (len > 0 && message[len - 1] == '\n')
		len--;
	log_notice("database: %.*s", (int)len, message);
}

PGconn *
db_connect_params(const struct settings *s, const char *appname)
{
	const char *keys[4 + PEER_DEFAULTS_MAX], *values[4 + PEER_DEFAULTS_MAX];
	int k = 0;

	/* before dbname: what the conninfo sets overrides them */
	peer_defaults(s->db_conninfo, keys, values, &k);
	keys[k] = "dbname";
	values[k++] = s->db_conninfo;
	keys[k] = "application_name";
	values[k++] = appname;
	if (s->db_password) {
		keys[k] = "password";
		values[k++] = s->db_password;
	}
	keys[k] = NULL;
	values[k] = NULL;
	return PQconnectdbParams(keys, values, 1);
}

PGconn *
db_open(const struct settings *s, const char *appname)
{
	char timeout[64];
	PGconn *conn;
	PGresult *res;

	rt_configure(s);
	conn = db_connect_params(s, appname);
	PQsetNoticeProcessor(conn, notice_to_log, NULL);
	if (PQstatus(conn) != CONNECTION_OK) {
		char *msg = xstrdup(PQerrorMessage(conn));
		size_t len = strlen(msg);

		while (len > 0 && msg[len - 1] == '\n')
			msg[--len] = '\0';
		repeat_fail("database", NULL, "could not connect to the database: %s", msg);
		free(msg);
		goto fail;
	}
	if (!check_schema(conn))
		goto fail;
	repeat_clear("database", "connected to the database again");
	ensure_synchronous_commit(conn);
	standby_check(conn);
	snprintf(timeout, sizeof(timeout), "SET statement_timeout = %lld", (long long)s->db_statement_timeout_ms);
	res = rt_exec(conn, timeout);
	PQclear(res);
	/* our transactions never wait between round trips: one idle in a
	 * transaction past the deadline is a session we gave up on */
	if (PQstatus(conn) != CONNECTION_OK || !orphan_limits(conn, rt_timeout_ms(s), 0))
		goto fail;
	return conn;
fail:
	PQfinish(conn);
	return NULL;
}

PGconn *
db_connect(const struct settings *s, const struct broker *b)
{
	char appname[96];
	PGconn *conn;
	const Oid dead_types[14] = { 0 };

	snprintf(appname, sizeof(appname), "oncebridge/%s", b->name);
	conn = db_open(s, appname);
	if (conn == NULL)
		return NULL;
	if (!prepare(conn, "ob_dedupe", SQL_DEDUPE, 2, NULL, "the dedupe statement") ||
	    !prepare(conn, "ob_claim", SQL_CLAIM, 2, NULL, "the claim statement") ||
	    !prepare(conn, "ob_claim_strict", SQL_CLAIM_STRICT, 2, NULL, "the strict claim statement") ||
	    !prepare(conn, "ob_unclaim", SQL_UNCLAIM, 2, NULL, "the unclaim statement") ||
	    !prepare(conn, "ob_dead", SQL_DEAD_LETTER, 14, dead_types, "the dead-letter statement"))
		goto fail;
	for (size_t i = 0; i < b->n_routes; i++) {
		const struct route *r = &b->routes[i];
		Oid *types = xcalloc(r->n_params + 1, sizeof(Oid));
		char name[32], *what;
		bool ok;

		for (size_t p = 0; p < r->n_params; p++)
			types[p] = r->param_sources[p].kind == SRC_PAYLOAD_BYTES ? 17 /* bytea */ : 0;
		db_route_stmt(name, sizeof(name), i);
		what = xasprintf("the SQL of route \"%s\" (%s:%d)", r->name, b->file, r->line);
		ok = prepare(conn, name, r->sql, (int)r->n_params, types, what);
		free(what);
		free(types);
		if (!ok)
			goto fail;
	}
	return conn;
fail:
	PQfinish(conn);
	return NULL;
}

/* Check a conninfo without connecting (oncebridge -t). */
void
db_check_conninfo(const char *conninfo, const char *file, int line, struct diag *d)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	if (opts == NULL) {
		size_t len = err ? strlen(err) : 0;

		while (len > 0 && err[len - 1] == '\n')
			err[--len] = '\0';
		diag_error(d, file, line, "invalid value of key \"conninfo\" in group \"database\": %s",
		    err ? err : "out of memory");
		PQfreemem(err);
		return;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val && strcmp(o->keyword, "password") == 0)
			diag_error(d, file, line, "key \"conninfo\" in group \"database\" must not hold a password; "
			    "put it in password_file or password_env");
		if (strcmp(o->keyword, "sslmode") != 0 || o->val == NULL)
			continue;
		if (strcmp(o->val, "require") == 0 || strcmp(o->val, "verify-ca") == 0)
			diag_warn(d, file, line,
			    "sslmode \"%s\" in key \"conninfo\" does not check that the database server's certificate "
			    "names the host; use sslmode=verify-full with sslrootcert", o->val);
	}
	PQconninfoFree(opts);
}
