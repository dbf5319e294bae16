/* SPDX-License-Identifier: Apache-2.0 */
/* "oncebridge try ROUTE [--topic T] [--property K=V] [--header K=V]
 * [--db] [FILE|-]": one payload through a route exactly as a worker takes
 * it: the same extraction (bridge/core/extract.h: limits, event ID,
 * parameters, every payload format the sources know), then, with --db,
 * the route's business SQL in a transaction that is always rolled back,
 * after a look in processed_events for the event ID. Prints the event ID,
 * each parameter with its source and value, and what a worker would do:
 * apply (rows affected), skip a duplicate, dead-letter (reason, SQLSTATE)
 * or retry (transient). Writes nothing. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "bridge/common/util.h"
#include "bridge/config/settings.h"
#include "bridge/core/db.h"
#include "bridge/core/extract.h"
#include "bridge/daemon/check.h"

#define SHOW_MAX 200 /* bytes of a value shown */

struct try_opts {
	const char *route;
	const char *file;
	bool db;
	struct message m;
	struct msg_header *headers;
	size_t n_headers;
};

static void
try_usage(FILE *out)
{
	fprintf(out, "usage: oncebridge [-c FILE] try ROUTE [--topic T] [--property K=V] [--header K=V] [--db] [FILE|-]\n");
}

/* Split "K=V"; false when there is no "=". */
static bool
split_kv(char *arg, char **k, char **v)
{
	char *eq = strchr(arg, '=');

	if (eq == NULL || eq == arg)
		return false;
	*eq = '\0';
	*k = arg;
	*v = eq + 1;
	return true;
}

static bool
set_property(struct try_opts *o, char *arg)
{
	char *k, *v;

	if (!split_kv(arg, &k, &v))
		return false;
	if (strcmp(k, "message_id") == 0) {
		o->m.message_id = v;
		o->m.message_id_len = strlen(v);
	} else if (strcmp(k, "content_type") == 0) {
		o->m.content_type = v;
	} else {
		fprintf(stderr, "oncebridge: unknown property \"%s\" (known: message_id, content_type)\n", k);
		return false;
	}
	return true;
}

static bool
add_header(struct try_opts *o, char *arg)
{
	char *k, *v;

	if (!split_kv(arg, &k, &v))
		return false;
	o->headers = xrealloc(o->headers, (o->n_headers + 1) * sizeof(*o->headers));
	o->headers[o->n_headers].name = k;
	o->headers[o->n_headers].value = v;
	o->headers[o->n_headers++].value_len = strlen(v);
	return true;
}

static int
parse_opts(int argc, char **argv, struct try_opts *o)
{
	static const struct option longopts[] = {
		{ "topic", required_argument, NULL, 't' },
		{ "property", required_argument, NULL, 'p' },
		{ "header", required_argument, NULL, 'H' },
		{ "db", no_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 0; /* full reinit: options may follow ROUTE */
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == 't')
			o->m.topic = optarg;
		else if (opt == 'd')
			o->db = true;
		else if ((opt == 'p' && set_property(o, optarg)) || (opt == 'H' && add_header(o, optarg)))
			continue;
		else
			return -1;
	}
	if (optind >= argc || argc - optind > 2)
		return -1;
	o->route = argv[optind];
	o->file = optind + 1 < argc ? argv[optind + 1] : "-";
	return 0;
}

/* The whole of FILE ("-": standard input), NULL after saying why. */
static char *
read_payload(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	struct buf b = { 0 };
	char chunk[8192];
	size_t n;
	bool failed;

	if (f == NULL) {
		fprintf(stderr, "oncebridge: could not open \"%s\": %s\n", path, strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	failed = ferror(f) != 0;
	if (failed)
		fprintf(stderr, "oncebridge: could not read \"%s\": %s\n", path, strerror(errno));
	if (f != stdin)
		fclose(f);
	if (failed) {
		buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return b.data ? b.data : xstrdup("");
}

/* A value as text: SQL NULL, bytea as hex, text with control characters
 * escaped; long values cut. */
static void
show_value(const struct value *v)
{
	size_t n = v->len > SHOW_MAX ? SHOW_MAX : v->len;

	if (v->data == NULL) {
		printf("SQL NULL");
		return;
	}
	if (v->binary) {
		printf("\\x");
		for (size_t i = 0; i < n; i++)
			printf("%02x", (unsigned char)v->data[i]);
	} else {
		putchar('"');
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)v->data[i];

			if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
				printf("\\x%02x", c);
			else
				putchar(c);
		}
		putchar('"');
	}
	if (n < v->len)
		printf(" ... (%zu bytes)", v->len);
}

/* The route named name and its broker; NULL after saying why. */
static const struct route *
find_route(const struct settings *s, const char *name, const struct broker **broker)
{
	for (size_t i = 0; i < s->n_brokers; i++)
		for (size_t k = 0; k < s->brokers[i].n_routes; k++)
			if (strcmp(s->brokers[i].routes[k].name, name) == 0) {
				*broker = &s->brokers[i];
				return &s->brokers[i].routes[k];
			}
	fprintf(stderr, "oncebridge: no route \"%s\" in configuration \"%s\"\n", name, s->path);
	return NULL;
}

static void
show_extraction(const struct route *r, const struct extraction *ex)
{
	printf("%-10s  \"%s\" (%s)\n", "event ID", ex->event_id, r->id_source.spec);
	for (size_t p = 0; p < r->n_params; p++) {
		char label[24];

		snprintf(label, sizeof(label), "$%zu", p + 1);
		printf("%-10s  ", label);
		show_value(&ex->values[p]);
		printf(" (%s)\n", r->param_sources[p].spec);
	}
}

/* What a worker would do after the failed result res of what: its
 * failure class (bridge/core/failure.h) decides. Returns try's status. */
static int
show_failure(const struct settings *s, PGconn *conn, const PGresult *res, const char *what)
{
	char sqlstate[6] = "";
	char *msg = NULL;
	enum failure_class fc;

	db_ok(conn, res, sqlstate, &msg);
	fc = db_failure(conn, res, sqlstate);
	if (fc == FAILURE_POISON)
		printf("%-10s  dead-lettered: %s failed with SQLSTATE %s: %s\n", "outcome", what, sqlstate, msg);
	else if (fc == FAILURE_TRANSIENT)
		printf("%-10s  transient: %s failed%s%s: %s; not acked, retried with backoff\n", "outcome", what,
		    sqlstate[0] ? " with SQLSTATE " : "", sqlstate, msg);
	else
		printf("%-10s  retried: %s failed with SQLSTATE %s: %s; dead-lettered after retry.max_attempts (%lld)\n",
		    "outcome", what, sqlstate, msg, (long long)s->max_attempts);
	free(msg);
	return 1;
}

static bool
already_processed(PGconn *conn, const struct route *r, const char *event_id, PGresult **res)
{
	const char *p[2] = { r->name, event_id };

	*res = PQexecParams(conn, "SELECT 1 FROM oncebridge.processed_events WHERE consumer = $1 AND event_id = $2",
	    2, NULL, p, NULL, NULL, 0);
	return db_ok(conn, *res, NULL, NULL) && PQntuples(*res) > 0;
}

/* The business SQL in a transaction that is always rolled back. */
static int
try_db(const struct settings *s, const struct route *r, const struct extraction *ex)
{
	PGconn *conn = db_open(s, "oncebridge/try");
	const char **values = xcalloc(r->n_params + 1, sizeof(char *));
	int *lengths = xcalloc(r->n_params + 1, sizeof(int)), *formats = xcalloc(r->n_params + 1, sizeof(int));
	PGresult *res = NULL;
	int status = 0;

	if (conn == NULL) {
		printf("%-10s  transient: could not open a database session (the reason is logged above)\n", "outcome");
		status = 1;
		goto out;
	}
	res = PQexec(conn, "BEGIN");
	if (!db_ok(conn, res, NULL, NULL)) {
		status = show_failure(s, conn, res, "BEGIN");
		goto out;
	}
	PQclear(res);
	if (already_processed(conn, r, ex->event_id, &res)) {
		printf("%-10s  duplicate: route \"%s\" processed event ID \"%s\" before; acked without effect\n",
		    "outcome", r->name, ex->event_id);
		goto out;
	}
	if (!db_ok(conn, res, NULL, NULL)) {
		status = show_failure(s, conn, res, "the duplicate check");
		goto out;
	}
	PQclear(res);
	if ((res = check_prepare_route(conn, r, "ob_try")) != NULL) {
		status = show_failure(s, conn, res, "preparing the business SQL");
		goto out;
	}
	for (size_t p = 0; p < r->n_params; p++) {
		values[p] = ex->values[p].data;
		lengths[p] = (int)ex->values[p].len;
		formats[p] = ex->values[p].binary ? 1 : 0;
	}
	res = PQexecPrepared(conn, "ob_try", (int)r->n_params, values, lengths, formats, 0);
	if (db_ok(conn, res, NULL, NULL))
		printf("%-10s  applied: %s row%s affected (rolled back)\n", "outcome", PQcmdTuples(res)[0] ? PQcmdTuples(res)
		    : "0", strcmp(PQcmdTuples(res), "1") == 0 ? "" : "s");
	else
		status = show_failure(s, conn, res, "the business SQL");
out:
	PQclear(res);
	if (conn) {
		PQclear(PQexec(conn, "ROLLBACK"));
		PQfinish(conn);
	}
	free(values);
	free(lengths);
	free(formats);
	return status;
}

int
try_cli(const struct settings *s, int argc, char **argv)
{
	struct try_opts o = { 0 };
	const struct broker *b = NULL;
	const struct route *r;
	struct limits lim = settings_limits(s);
	struct msg_view v;
	struct extraction ex;
	char *payload = NULL;
	int status = 2;

	if (parse_opts(argc, argv, &o) < 0) {
		try_usage(stderr);
		goto out;
	}
	if ((r = find_route(s, o.route, &b)) == NULL || (payload = read_payload(o.file, &o.m.payload_len)) == NULL)
		goto out;
	o.m.payload = payload;
	o.m.topic_separator = b->adapter->topic_separator;
	o.m.source = b->adapter->route_source ? b->adapter->route_source(r) : NULL;
	o.m.headers = o.headers;
	o.m.n_headers = o.n_headers;
	printf("%-10s  \"%s\" of broker \"%s\" (%s:%d)\n", "route", r->name, b->name, b->file, r->line);
	if (o.m.topic && !b->adapter->route_matches(r, &o.m)) {
		printf("%-10s  not taken: topic \"%s\" does not match the route\n", "outcome", o.m.topic);
		status = 1;
		goto out;
	}
	msg_view_init(&v, &o.m, b->name);
	if (extract_route(r, &v, &lim, &ex) < 0) {
		printf("%-10s  dead-lettered: %s\n", "outcome", ex.reason);
		status = 1;
	} else {
		show_extraction(r, &ex);
		status = o.db ? try_db(s, r, &ex) : 0;
		if (!o.db)
			printf("%-10s  extracted; add --db to run the business SQL (rolled back)\n", "outcome");
	}
	extraction_clear(r, &ex);
	msg_view_clear(&v);
out:
	free(payload);
	free(o.headers);
	return status;
}
