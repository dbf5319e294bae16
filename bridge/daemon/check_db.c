/* SPDX-License-Identifier: Apache-2.0 */
/* The database's part of "oncebridge check": as oncebridge's own role,
 * with its credentials and TLS settings, read what the guarantee rests on
 * and report it (bridge/config/report.h): the schema version; fsync,
 * full_page_writes and the role's effective synchronous_commit; standbys
 * and whether one is synchronous; the grants the daemon needs, and the
 * tables it may write without needing to; each route's business SQL,
 * prepared against the real tables, with its parameter types and the
 * tables it writes (from EXPLAIN, which also checks the role's
 * privileges). Nothing is written: prepared statements and EXPLAIN only. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridge/common/util.h"
#include "bridge/config/settings.h"
#include "bridge/core/db.h"
#include "bridge/daemon/check.h"

#define BYTEA_OID 17

/* What the daemon's role needs in oncebridge's schema: the grants of
 * sql/oncebridge-grants.sql, row by row (tests/integration/check_amqp.py
 * applies that file and expects every check ok, so the two cannot drift
 * apart unnoticed); write marks those it writes with. */
static const struct need {
	const char *table;
	const char *column; /* NULL: the whole table */
	const char *priv;
	bool write;
} needs[] = {
	{ "oncebridge.schema_migrations", NULL, "SELECT", false },
	{ "oncebridge.processed_events", NULL, "SELECT", false },
	{ "oncebridge.processed_events", NULL, "INSERT", true },
	{ "oncebridge.processed_events", NULL, "DELETE", true },
	{ "oncebridge.processed_events", "processed_at", "UPDATE", false },
	{ "oncebridge.dead_letters", NULL, "INSERT", true },
	{ "oncebridge.dead_letters", NULL, "DELETE", true },
	{ "oncebridge.dead_letters", "id", "SELECT", false },
	{ "oncebridge.dead_letters", "created_at", "SELECT", false },
	{ "oncebridge.dead_letters", "broker", "SELECT", false },
	{ "oncebridge.dead_letters", "consumer", "SELECT", false },
	{ "oncebridge.dead_letters", "sqlstate", "SELECT", false },
	{ "oncebridge.dead_letters", "replayed_at", "SELECT", false },
	{ "oncebridge.outbox", NULL, "SELECT", false },
	{ "oncebridge.outbox", NULL, "DELETE", true },
	{ "oncebridge.outbox", "published_at", "UPDATE", false },
	{ "oncebridge.outbox", "attempts", "UPDATE", false },
	{ "oncebridge.consumer_horizons", NULL, "SELECT", false },
	{ "oncebridge.consumer_horizons", NULL, "INSERT", true },
	{ "oncebridge.consumer_horizons", NULL, "UPDATE", true },
	{ "oncebridge.consumer_horizons", NULL, "DELETE", true },
	{ "oncebridge.retention_holds", NULL, "SELECT", false },
	{ "oncebridge.mqtt_sessions", NULL, "SELECT", false },
	{ "oncebridge.mqtt_sessions", NULL, "INSERT", true },
	{ "oncebridge.mqtt_sessions", NULL, "UPDATE", true },
	{ "oncebridge.mqtt_sessions", NULL, "DELETE", true },
};

/* Tables and privileges the routes' business SQL writes with. */
struct writes {
	char **table;  /* "schema.table" */
	char **priv;   /* INSERT, UPDATE, DELETE */
	size_t n;
};

static void
writes_add(struct writes *w, const char *table, const char *priv)
{
	w->table = xrealloc(w->table, (w->n + 1) * sizeof(char *));
	w->priv = xrealloc(w->priv, (w->n + 1) * sizeof(char *));
	w->table[w->n] = xstrdup(table);
	w->priv[w->n++] = xstrdup(priv);
}

static bool
writes_has(const struct writes *w, const char *table, const char *priv)
{
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->table[i], table) == 0 && strcmp(w->priv[i], priv) == 0)
			return true;
	for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++)
		if (needs[i].write && strcmp(needs[i].table, table) == 0 && strcmp(needs[i].priv, priv) == 0)
			return true;
	return false;
}

static void
writes_free(struct writes *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free(w->table[i]);
		free(w->priv[i]);
	}
	free(w->table);
	free(w->priv);
}

/* One text value of a one-row query with up to 3 text parameters; NULL
 * (allocated otherwise) on error or SQL NULL, with *err set on error. */
static char *
query_value(PGconn *conn, const char *sql, int n, const char *const *params, char **err)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	char sqlstate[6];
	char *v = NULL;

	if (err)
		*err = NULL;
	if (!db_ok(conn, res, sqlstate, err))
		goto out;
	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		v = xstrdup(PQgetvalue(res, 0, 0));
out:
	PQclear(res);
	return v;
}

PGconn *
check_db_connect(const struct settings *s, const char *appname, char **why)
{
	/* as the daemon's sessions: its dead-peer defaults too */
	PGconn *conn = db_connect_params(s, appname);

	if (PQstatus(conn) == CONNECTION_OK)
		return conn;
	*why = xstrdup(PQerrorMessage(conn));
	for (size_t len = strlen(*why); len > 0 && (*why)[len - 1] == '\n'; len--)
		(*why)[len - 1] = '\0';
	PQfinish(conn);
	return NULL;
}

PGresult *
check_prepare_route(PGconn *conn, const struct route *r, const char *name)
{
	Oid *types = xcalloc(r->n_params + 1, sizeof(Oid));
	PGresult *res;

	for (size_t p = 0; p < r->n_params; p++)
		types[p] = r->param_sources[p].kind == SRC_PAYLOAD_BYTES ? BYTEA_OID : 0; /* as bridge/core/db.c */
	res = PQprepare(conn, name, r->sql, (int)r->n_params, types);
	free(types);
	if (db_ok(conn, res, NULL, NULL)) {
		PQclear(res);
		return NULL;
	}
	return res;
}

/* --- the server */

static void
check_connection(PGconn *conn, const char *subj, struct report *r)
{
	const char *tls = PQsslInUse(conn) ? PQsslAttribute(conn, "protocol") : NULL;

	report_add(r, CHECK_OK, subj, NULL, "connected to database \"%s\" on %s:%s as \"%s\", %s%s", PQdb(conn),
	    PQhost(conn), PQport(conn), PQuser(conn), tls ? "TLS " : "without TLS", tls ? tls : "");
}

static void
check_schema_version(PGconn *conn, struct report *r)
{
	char *err, *v = query_value(conn, "SELECT coalesce(max(version), 0) FROM oncebridge.schema_migrations", 0,
	    NULL, &err);
	const char *subj = "schema \"oncebridge\"";
	const char *fix = "apply the migrations in /usr/share/oncebridge/sql with oncebridge-migrate";

	if (v == NULL)
		report_add(r, CHECK_ERROR, subj, fix, "could not read the schema version: %s", err ? err : "no row");
	else if (atoi(v) < ONCEBRIDGE_SCHEMA_VERSION)
		report_add(r, CHECK_ERROR, subj, fix, "is at version %s, this build needs %d", v, ONCEBRIDGE_SCHEMA_VERSION);
	else
		report_add(r, CHECK_OK, subj, NULL, "is at version %s, as this build needs", v);
	free(v);
	free(err);
}

static void
check_durability(PGconn *conn, struct report *r)
{
	static const char *const names[] = { "fsync", "full_page_writes" };
	char *v;

	for (size_t i = 0; i < 2; i++) {
		const char *p[1] = { names[i] };
		char *subj = report_subject("server setting \"%s\"", names[i]);

		v = query_value(conn, "SELECT current_setting($1)", 1, p, NULL);
		if (v && strcmp(v, "on") == 0)
			report_add(r, CHECK_OK, subj, NULL, "is on");
		else
			report_add(r, CHECK_ERROR, subj, "set it to on in postgresql.conf and reload",
			    "is %s: a crash of the database server can lose or corrupt committed effects whose messages "
			    "were acked", v ? v : "unknown");
		free(v);
		free(subj);
	}
	v = query_value(conn, "SELECT current_setting('synchronous_commit')", 0, NULL, NULL);
	if (v && (strcmp(v, "on") == 0 || strcmp(v, "remote_apply") == 0))
		report_add(r, CHECK_OK, "server setting \"synchronous_commit\"", NULL, "is %s for oncebridge's role", v);
	else
		report_add(r, CHECK_WARNING, "server setting \"synchronous_commit\"",
		    "ALTER ROLE ... SET synchronous_commit = on", "is %s for oncebridge's role; oncebridge raises it to "
		    "\"on\" in its own sessions, since it acks after COMMIT", v ? v : "unknown");
	free(v);
}

#define SQL_STANDBYS \
	"SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names')," \
	" count(*), count(*) FILTER (WHERE sync_state IN ('sync', 'quorum'))," \
	" count(*) FILTER (WHERE sync_state IS NULL)," \
	" coalesce(string_agg(coalesce(application_name, '?') || ' (' || coalesce(sync_state, 'hidden') || ')', ', '), '')" \
	" FROM pg_stat_replication"

static void
check_standbys(PGconn *conn, struct report *r)
{
	PGresult *res = PQexec(conn, SQL_STANDBYS);
	const char *subj = "standbys";
	long n, sync, hidden;

	if (!db_ok(conn, res, NULL, NULL) || PQntuples(res) != 1) {
		report_add(r, CHECK_WARNING, subj, NULL, "could not read pg_stat_replication: %s", PQresultErrorMessage(res));
		goto out;
	}
	n = atol(PQgetvalue(res, 0, 2));
	sync = atol(PQgetvalue(res, 0, 3));
	hidden = atol(PQgetvalue(res, 0, 4));
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		report_add(r, CHECK_ERROR, "database", "point conninfo at the primary (target_session_attrs=read-write)",
		    "is a standby in recovery: it cannot take oncebridge's writes");
	else if (n > 0 && hidden > 0 && PQgetvalue(res, 0, 1)[0])
		report_add(r, CHECK_WARNING, subj, "GRANT pg_monitor to oncebridge's role, or run check as a role that has it",
		    "%ld standby connections, but this role may not see whether they are synchronous", n);
	else if (n > 0 && (sync == 0 || !PQgetvalue(res, 0, 1)[0]))
		report_add(r, CHECK_WARNING, subj, "name a standby in synchronous_standby_names",
		    "no standby is synchronous (%s): a failover to an asynchronous standby may lose effects whose "
		    "messages were already acked", PQgetvalue(res, 0, 5));
	else if (n > 0)
		report_add(r, CHECK_OK, subj, NULL, "%ld of %ld standbys synchronous: %s", sync, n, PQgetvalue(res, 0, 5));
	else if (PQgetvalue(res, 0, 1)[0])
		report_add(r, CHECK_ERROR, subj, "start the standby, or clear synchronous_standby_names",
		    "synchronous_standby_names is \"%s\" but no standby is connected: every COMMIT waits",
		    PQgetvalue(res, 0, 1));
	else
		report_add(r, CHECK_OK, subj, NULL, "none connected: effects are as safe as this server's storage");
out:
	PQclear(res);
}

/* --- grants */

static void
check_grants(PGconn *conn, struct report *r)
{
	struct buf missing = { 0 };
	char *subj = report_subject("role \"%s\"", PQuser(conn));
	char *v;

	v = query_value(conn, "SELECT has_schema_privilege('oncebridge', 'USAGE')", 0, NULL, NULL);
	if (v == NULL || strcmp(v, "t") != 0)
		buf_appendf(&missing, "USAGE on schema oncebridge");
	free(v);
	for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++) {
		const char *p[3] = { needs[i].table, needs[i].column ? needs[i].column : needs[i].priv, needs[i].priv };
		char *err = NULL;

		v = needs[i].column ? query_value(conn, "SELECT has_column_privilege($1, $2, $3)", 3, p, &err)
		    : query_value(conn, "SELECT has_table_privilege($1, $2)", 2, p, &err);
		if (v == NULL && err) { /* no such table: the schema check says why */
			buf_appendf(&missing, "%s%s", missing.len ? ", " : "", err);
			free(err);
			break;
		}
		if (v == NULL || strcmp(v, "t") != 0) {
			buf_appendf(&missing, "%s%s%s%s on %s", missing.len ? ", " : "", needs[i].priv,
			    needs[i].column ? " of column " : "", needs[i].column ? needs[i].column : "", needs[i].table);
		}
		free(v);
	}
	if (missing.len) {
		char *fix = xasprintf("as the schema's owner: psql -v role=%s -f /usr/share/oncebridge/sql/oncebridge-grants.sql",
		    PQuser(conn));

		report_add(r, CHECK_ERROR, subj, fix, "lacks privileges the daemon needs: %.*s", (int)missing.len,
		    missing.data);
		free(fix);
	} else {
		report_add(r, CHECK_OK, subj, NULL, "has every privilege the daemon needs in schema \"oncebridge\"");
	}
	buf_free(&missing);
	free(subj);
}

#define SQL_WRITABLE \
	"SELECT n.nspname || '.' || c.relname, p.priv FROM pg_class c" \
	" JOIN pg_namespace n ON n.oid = c.relnamespace" \
	" CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(priv)" \
	" WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')" \
	" AND n.nspname NOT LIKE 'pg_toast%' AND has_table_privilege(c.oid, p.priv)" \
	" ORDER BY 1, 2"

/* Tables the role may write without a route or the daemon needing it. */
static void
check_extra_writes(PGconn *conn, const struct writes *w, struct report *r)
{
	char *subj = report_subject("role \"%s\"", PQuser(conn));
	char *super = query_value(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user", 0, NULL, NULL);
	PGresult *res = NULL;
	struct buf extra = { 0 };
	int n;

	if (super && strcmp(super, "t") == 0) {
		report_add(r, CHECK_WARNING, subj, "run oncebridge as a role with sql/oncebridge-grants.sql and the "
		    "business tables' grants only", "is a superuser: it may write every table, far more than it needs");
		goto out;
	}
	res = PQexec(conn, SQL_WRITABLE);
	if (!db_ok(conn, res, NULL, NULL)) {
		report_add(r, CHECK_WARNING, subj, NULL, "could not list the tables it may write: %s",
		    PQresultErrorMessage(res));
		goto out;
	}
	n = PQntuples(res);
	for (int i = 0; i < n; i++)
		if (!writes_has(w, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)))
			buf_appendf(&extra, "%s%s on %s", extra.len ? ", " : "", PQgetvalue(res, i, 1), PQgetvalue(res, i, 0));
	if (extra.len)
		report_add(r, CHECK_WARNING, subj, "REVOKE what no route needs", "may write more than the daemon and "
		    "the routes' SQL need: %.*s", (int)extra.len, extra.data);
	else
		report_add(r, CHECK_OK, subj, NULL, "may write only what the daemon and the routes' SQL need");
out:
	buf_free(&extra);
	PQclear(res);
	free(super);
	free(subj);
}

/* --- routes */

/* The tables a plan writes: its ModifyTable nodes. */
static void
plan_writes(struct json_object *plan, struct writes *w)
{
	struct json_object *type, *op, *rel, *schema, *plans;

	if (json_object_object_get_ex(plan, "Node Type", &type) &&
	    strcmp(json_object_get_string(type), "ModifyTable") == 0 &&
	    json_object_object_get_ex(plan, "Operation", &op) && json_object_object_get_ex(plan, "Relation Name", &rel) &&
	    json_object_object_get_ex(plan, "Schema", &schema)) {
		char *table = xasprintf("%s.%s", json_object_get_string(schema), json_object_get_string(rel));
		char *priv = xstrdup(json_object_get_string(op));

		struct json_object *conflict;

		for (char *p = priv; *p; p++)
			*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		writes_add(w, table, priv);
		/* INSERT ... ON CONFLICT DO UPDATE updates too */
		if (json_object_object_get_ex(plan, "Conflict Resolution", &conflict) &&
		    strcmp(json_object_get_string(conflict), "UPDATE") == 0)
			writes_add(w, table, "UPDATE");
		free(table);
		free(priv);
	}
	if (json_object_object_get_ex(plan, "Plans", &plans))
		for (size_t i = 0; i < json_object_array_length(plans); i++)
			plan_writes(json_object_array_get_idx(plans, i), w);
}

/* EXPLAIN the prepared statement with NULL parameters: the planner and
 * the executor's start check the role's privileges on every table. */
static bool
explain_route(PGconn *conn, const struct route *rt, const char *name, struct writes *w, char **err)
{
	struct buf sql = { 0 };
	PGresult *res;
	bool ok;

	buf_appendf(&sql, "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE %s", name);
	for (size_t p = 0; p < rt->n_params; p++)
		buf_appendf(&sql, "%sNULL", p == 0 ? "(" : ", ");
	buf_appendf(&sql, "%s", rt->n_params ? ")" : "");
	res = PQexec(conn, sql.data);
	ok = db_ok(conn, res, NULL, NULL);
	if (ok && PQntuples(res) == 1) {
		struct json_object *doc = json_tokener_parse(PQgetvalue(res, 0, 0)), *plan;

		if (doc && json_object_array_length(doc) > 0 &&
		    json_object_object_get_ex(json_object_array_get_idx(doc, 0), "Plan", &plan))
			plan_writes(plan, w);
		json_object_put(doc);
	} else if (!ok) {
		*err = xstrdup(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ? PQresultErrorField(res,
		    PG_DIAG_MESSAGE_PRIMARY) : PQerrorMessage(conn));
	}
	PQclear(res);
	buf_free(&sql);
	return ok;
}

/* "$1 text, $2 numeric" of the prepared statement name. */
static void
param_types(PGconn *conn, const char *name, struct buf *out)
{
	PGresult *res = PQdescribePrepared(conn, name);

	for (int i = 0; db_ok(conn, res, NULL, NULL) && i < PQnparams(res); i++) {
		char oid[16];
		const char *p[1] = { oid };
		char *t;

		snprintf(oid, sizeof(oid), "%u", PQparamtype(res, i));
		t = query_value(conn, "SELECT format_type($1::oid, NULL)", 1, p, NULL);
		buf_appendf(out, "%s$%d %s", i ? ", " : "", i + 1, t ? t : oid);
		free(t);
	}
	PQclear(res);
}

/* Returns false when the SQL of rt did not prepare or may not run. */
static bool
check_route(PGconn *conn, const struct broker *b, const struct route *rt, size_t index, struct writes *w,
    struct report *r)
{
	char *subj = report_subject("%s:%d route \"%s\" key \"sql\"", b->file, rt->line, rt->name);
	char name[48], *err = NULL;
	PGresult *res;
	struct buf types = { 0 };
	bool ok = false;

	snprintf(name, sizeof(name), "ob_check_%zu_%s", index, "route");
	res = check_prepare_route(conn, rt, name);
	if (res) {
		report_add(r, CHECK_ERROR, subj, "fix the SQL or create what it names", "does not prepare: %s%s%s%s",
		    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
		    : PQerrorMessage(conn), PQresultErrorField(res, PG_DIAG_SQLSTATE) ? " (SQLSTATE " : "",
		    PQresultErrorField(res, PG_DIAG_SQLSTATE) ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : "",
		    PQresultErrorField(res, PG_DIAG_SQLSTATE) ? ")" : "");
		PQclear(res);
		goto out;
	}
	param_types(conn, name, &types);
	if (!explain_route(conn, rt, name, w, &err)) {
		char *fix = xasprintf("grant role \"%s\" what this SQL does on that table, and nothing more", PQuser(conn));

		report_add(r, CHECK_ERROR, subj, fix, "prepares, but role \"%s\" may not run it: %s", PQuser(conn), err);
		free(fix);
		goto out;
	}
	report_add(r, CHECK_OK, subj, NULL, "prepares against the real tables with %zu parameter%s%s%.*s", rt->n_params,
	    rt->n_params == 1 ? "" : "s", types.len ? ": " : "", (int)types.len, types.data ? types.data : "");
	ok = true;
out:
	free(err);
	buf_free(&types);
	free(subj);
	return ok;
}

void
check_db(const struct settings *s, struct report *r)
{
	char *why = NULL, *subj = report_subject("database (%s key \"conninfo\")", s->path);
	PGconn *conn = check_db_connect(s, "oncebridge/check", &why);
	struct writes w = { 0 };
	size_t index = 0;
	bool routes_ok = true;

	if (conn == NULL) {
		report_add(r, CHECK_ERROR, subj, "check database.conninfo, the password and the server's pg_hba.conf",
		    "could not connect: %s", why);
		goto out;
	}
	check_connection(conn, subj, r);
	check_schema_version(conn, r);
	check_durability(conn, r);
	check_standbys(conn, r);
	check_grants(conn, r);
	for (size_t i = 0; i < s->n_brokers; i++)
		for (size_t k = 0; k < s->brokers[i].n_routes; k++)
			routes_ok &= check_route(conn, &s->brokers[i], &s->brokers[i].routes[k], index++, &w, r);
	/* what a route that failed writes is unknown: no guesses */
	if (routes_ok)
		check_extra_writes(conn, &w, r);
out:
	writes_free(&w);
	PQfinish(conn);
	free(why);
	free(subj);
}
