/* SPDX-License-Identifier: Apache-2.0 */
/* "oncebridge dead-letters": list, show, replay and purge the rows of
 * oncebridge.dead_letters, selected by ID, route, broker or a piece of the
 * reason. Replay (bridge/core/deadletter_replay.c) sends each selected row that
 * was not replayed yet back through the core, once. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bridge/core/db.h"
#include "bridge/core/roundtrip.h"
#include "bridge/core/deadletter.h"
#include "bridge/core/deadletter_row.h"
#include "bridge/config/settings.h"
#include "bridge/common/text.h"
#include "bridge/common/util.h"

/* $1 ids, $2 route, $3 reason piece, $4 broker, $5 state: pending,
 * replayed or all */
#define SQL_WHERE \
	" WHERE ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))" \
	" AND ($2::text IS NULL OR consumer = $2)" \
	" AND ($3::text IS NULL OR strpos(lower(reason), lower($3)) > 0)" \
	" AND ($4::text IS NULL OR broker = $4)" \
	" AND ($5 = 'all' OR ($5 = 'replayed') = (replayed_at IS NOT NULL))"

#define SQL_LIST \
	"SELECT id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), broker, coalesce(consumer, '-')," \
	" coalesce(event_id, '-'), coalesce(topic, '-'), coalesce(sqlstate, '-')," \
	" coalesce(to_char(replayed_at, 'YYYY-MM-DD HH24:MI:SS'), '-'), reason" \
	" FROM oncebridge.dead_letters" SQL_WHERE " ORDER BY id LIMIT $6"
#define SQL_IDS "SELECT id FROM oncebridge.dead_letters" SQL_WHERE " ORDER BY id LIMIT $6"
#define SQL_PURGE "DELETE FROM oncebridge.dead_letters" SQL_WHERE
#define SQL_SHOW \
	"SELECT id, broker, consumer, event_id, source, exchange, topic, properties::text, payload_size," \
	" reason, sqlstate, error_detail, attempts, first_failed_at, created_at, replayed_at," \
	" octet_length(payload), encode(payload_sha256, 'hex'), encode(payload, 'hex')" \
	" FROM oncebridge.dead_letters WHERE id = $1"

struct selection {
	struct buf ids;     /* PostgreSQL array literal, empty: any */
	const char *route;
	const char *reason;
	const char *broker;
	const char *state;  /* "pending", "replayed", "all" */
	const char *limit;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: oncebridge [-c FILE] dead-letters list [SELECTION] [--replayed|--all] [--limit N]\n"
	    "       oncebridge [-c FILE] dead-letters show ID...\n"
	    "       oncebridge [-c FILE] dead-letters replay ID...|SELECTION\n"
	    "       oncebridge [-c FILE] dead-letters purge ID...|SELECTION [--replayed|--all]\n"
	    "\n"
	    "SELECTION: --route NAME, --broker NAME, --reason TEXT (part of the reason, any case).\n"
	    "list shows rows not replayed yet (--replayed: only replayed ones, --all: both), 100 by default.\n"
	    "replay sends each selected row not replayed yet back through its route, once.\n"
	    "purge deletes rows not replayed yet (--replayed: only replayed ones, --all: both).\n");
}

static bool
is_id(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Parse argv (after the verb) into sel; returns -1 on a usage error. */
static int
parse_selection(int argc, char **argv, struct selection *sel, bool allow_state)
{
	static const struct option opts[] = {
		{ "route", required_argument, NULL, 'r' },
		{ "broker", required_argument, NULL, 'b' },
		{ "reason", required_argument, NULL, 'R' },
		{ "replayed", no_argument, NULL, 'p' },
		{ "all", no_argument, NULL, 'a' },
		{ "limit", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	sel->state = "pending";
	sel->limit = NULL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			sel->route = optarg;
			break;
		case 'b':
			sel->broker = optarg;
			break;
		case 'R':
			sel->reason = optarg;
			break;
		case 'p':
		case 'a':
			if (!allow_state)
				return -1;
			sel->state = opt == 'p' ? "replayed" : "all";
			break;
		case 'l':
			if (!is_id(optarg))
				return -1;
			sel->limit = optarg;
			break;
		default:
			return -1;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (!is_id(argv[i])) {
			fprintf(stderr, "oncebridge: \"%s\" is not a dead-letter ID\n", argv[i]);
			return -1;
		}
		buf_appendf(&sel->ids, "%s%s", sel->ids.len ? "," : "{", argv[i]);
	}
	if (sel->ids.len)
		buf_append(&sel->ids, "}", 1);
	return 0;
}

static bool
has_selector(const struct selection *sel)
{
	return sel->ids.len || sel->route || sel->reason || sel->broker || strcmp(sel->state, "pending") != 0;
}

static PGresult *
run_selected(PGconn *conn, const char *sql, const struct selection *sel, int nparams)
{
	const char *values[6] = { sel->ids.len ? sel->ids.data : NULL, sel->route, sel->reason, sel->broker,
		sel->state, sel->limit ? sel->limit : "100" };

	return rt_exec_params(conn, sql, nparams, NULL, values, NULL, NULL, 0);
}

static int
cmd_list(PGconn *conn, const struct selection *sel)
{
	PGresult *res = run_selected(conn, SQL_LIST, sel, 6);
	int rc = 0;

	if (!db_ok(conn, res, NULL, NULL)) {
		fprintf(stderr, "oncebridge: could not list dead letters: %s", PQresultErrorMessage(res));
		rc = 1;
	} else {
		printf("id\tcreated\tbroker\troute\tevent_id\ttopic\tsqlstate\treplayed\treason\n");
		for (int i = 0; i < PQntuples(res); i++)
			for (int c = 0; c < PQnfields(res); c++)
				printf("%s%c", PQgetvalue(res, i, c), c + 1 < PQnfields(res) ? '\t' : '\n');
	}
	PQclear(res);
	return rc;
}

static void
print_payload(const char *hex)
{
	size_t len = 0;
	unsigned char *bytes = hex_decode(hex, &len);

	if (bytes && text_is_clean((const char *)bytes, len))
		printf("payload: %s\n", bytes);
	else
		printf("payload (hex, not clean UTF-8 text): %s\n", hex);
	free(bytes);
}

static int
cmd_show(PGconn *conn, int argc, char **argv)
{
	static const char *const names[] = { "id", "broker", "route", "event_id", "source", "exchange", "topic",
		"properties", "payload_size", "reason", "sqlstate", "error_detail", "attempts", "first_failed_at",
		"created_at", "replayed_at", "payload_kept", "payload_sha256" };
	int rc = 0;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	for (int a = 1; a < argc; a++) {
		const char *values[1] = { argv[a] };
		PGresult *res;

		if (!is_id(argv[a])) {
			fprintf(stderr, "oncebridge: \"%s\" is not a dead-letter ID\n", argv[a]);
			return 2;
		}
		res = rt_exec_params(conn, SQL_SHOW, 1, NULL, values, NULL, NULL, 0);
		if (!db_ok(conn, res, NULL, NULL)) {
			fprintf(stderr, "oncebridge: could not read dead letter %s: %s", argv[a], PQresultErrorMessage(res));
			rc = 1;
		} else if (PQntuples(res) == 0) {
			fprintf(stderr, "oncebridge: no dead letter %s\n", argv[a]);
			rc = 1;
		} else {
			for (size_t c = 0; c < sizeof(names) / sizeof(names[0]); c++)
				printf("%s: %s\n", names[c], PQgetisnull(res, 0, (int)c) ? "-" : PQgetvalue(res, 0, (int)c));
			print_payload(PQgetvalue(res, 0, 18));
			if (a + 1 < argc)
				printf("\n");
		}
		PQclear(res);
	}
	return rc;
}

static int
cmd_replay(const struct settings *s, PGconn *conn, struct selection *sel)
{
	PGresult *res;
	int replayed = 0, skipped = 0, failed = 0;

	/* rows named by ID are each reported, replayed before or not */
	sel->state = sel->ids.len ? "all" : "pending";
	if (sel->limit == NULL)
		sel->limit = "1000000";
	res = run_selected(conn, SQL_IDS, sel, 6);
	if (!db_ok(conn, res, NULL, NULL)) {
		fprintf(stderr, "oncebridge: could not select dead letters: %s", PQresultErrorMessage(res));
		PQclear(res);
		return 1;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		int rc = deadletter_replay_one(s, conn, PQgetvalue(res, i, 0));

		replayed += rc == 1;
		skipped += rc == 0;
		failed += rc < 0;
	}
	printf("%d replayed, %d skipped, %d failed\n", replayed, skipped, failed);
	PQclear(res);
	return failed ? 1 : 0;
}

static int
cmd_purge(PGconn *conn, const struct selection *sel)
{
	PGresult *res = run_selected(conn, SQL_PURGE, sel, 5);
	int rc = 0;

	if (!db_ok(conn, res, NULL, NULL)) {
		fprintf(stderr, "oncebridge: could not purge dead letters: %s", PQresultErrorMessage(res));
		rc = 1;
	} else {
		printf("%s dead letters deleted\n", PQcmdTuples(res));
	}
	PQclear(res);
	return rc;
}

int
deadletter_cli(const struct settings *s, int argc, char **argv)
{
	struct selection sel;
	const char *verb = argc > 1 ? argv[1] : "";
	PGconn *conn = NULL;
	int rc = 2;

	memset(&sel, 0, sizeof(sel));
	if (strcmp(verb, "list") != 0 && strcmp(verb, "show") != 0 && strcmp(verb, "replay") != 0 &&
	    strcmp(verb, "purge") != 0) {
		usage(strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 ? stdout : stderr);
		return strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 ? 0 : 2;
	}
	if (strcmp(verb, "show") != 0) {
		if (parse_selection(argc - 1, argv + 1, &sel, strcmp(verb, "replay") != 0) < 0) {
			usage(stderr);
			goto out;
		}
		if (strcmp(verb, "list") != 0 && !has_selector(&sel)) {
			fprintf(stderr, "oncebridge: %s needs IDs or a selection (--route, --broker, --reason%s)\n", verb,
			    strcmp(verb, "purge") == 0 ? ", --replayed, --all" : "");
			goto out;
		}
	}
	conn = db_open(s, "oncebridge dead-letters");
	if (conn == NULL) {
		rc = 1;
		goto out;
	}
	if (strcmp(verb, "list") == 0)
		rc = cmd_list(conn, &sel);
	else if (strcmp(verb, "show") == 0)
		rc = cmd_show(conn, argc - 1, argv + 1);
	else if (strcmp(verb, "replay") == 0)
		rc = cmd_replay(s, conn, &sel);
	else
		rc = cmd_purge(conn, &sel);
out:
	if (conn)
		PQfinish(conn);
	buf_free(&sel.ids);
	return rc;
}
