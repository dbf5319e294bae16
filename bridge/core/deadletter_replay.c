/* SPDX-License-Identifier: Apache-2.0 */
/* Replay of one dead letter through the core, once. The message is rebuilt
 * from the row (payload, topic, queue or subscription, exchange, message
 * ID, content type, headers) and handed to core_apply of its broker. Inside
 * the core's transaction, before it claims the event ID, a hook
 *
 *   - locks the dead-letter row and checks it was not replayed yet,
 *   - releases the event's claim in processed_events, but only a claim made
 *     when the message was dead-lettered (processed_at not later than the
 *     row's created_at: the same transaction wrote both), and
 *   - marks the row replayed_at.
 *
 * So the release, the application and the mark commit together or not at
 * all; a second replay finds the row marked, and even with the mark
 * cleared by hand it finds the newer claim of the replay, which it does
 * not release: the core sees a duplicate. A replay that fails the same way
 * writes a new dead letter. What happened is the message's outcome from
 * the core (bridge/core/apply.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "bridge/core/apply.h"
#include "bridge/core/db.h"
#include "bridge/core/roundtrip.h"
#include "bridge/core/deadletter.h"
#include "bridge/core/deadletter_row.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

/* read by column name (column()) */
#define SQL_ROW \
	"SELECT broker, consumer, event_id, source, exchange, topic, properties::text AS properties," \
	" encode(payload, 'hex') AS payload_hex, payload_size, octet_length(payload) AS kept_size," \
	" replayed_at IS NOT NULL AS replayed, created_at::text AS created_at" \
	" FROM oncebridge.dead_letters WHERE id = $1"

#define SQL_LOCK \
	"SELECT 1 FROM oncebridge.dead_letters WHERE id = $1 AND replayed_at IS NULL FOR UPDATE"
#define SQL_RELEASE \
	"DELETE FROM oncebridge.processed_events WHERE consumer = $1 AND event_id = $2" \
	" AND processed_at <= $3::timestamptz"
#define SQL_MARK "UPDATE oncebridge.dead_letters SET replayed_at = now() WHERE id = $1"

struct replay {
	const char *id;
	const char *consumer;   /* NULL: no route matched back then */
	const char *event_id;
	const char *created_at;
	bool already;           /* found replayed under the lock */
	bool failed;
};

static bool
ok_result(PGconn *conn, const PGresult *res, const char *what, struct replay *r)
{
	if (db_ok(conn, res, NULL, NULL))
		return true;
	fprintf(stderr, "oncebridge: could not %s for dead letter %s: %s", what, r->id, PQresultErrorMessage(res));
	r->failed = true;
	return false;
}

static bool
replay_hook(PGconn *conn, void *arg)
{
	struct replay *r = arg;
	const char *lock[1] = { r->id };
	PGresult *res;
	bool ok;

	res = rt_exec_params(conn, SQL_LOCK, 1, NULL, lock, NULL, NULL, 0);
	ok = ok_result(conn, res, "lock the row", r);
	if (ok && PQntuples(res) == 0) {
		r->already = true; /* another replay got there first */
		ok = false;
	}
	PQclear(res);
	if (ok && r->consumer && r->event_id) {
		const char *rel[3] = { r->consumer, r->event_id, r->created_at };

		res = rt_exec_params(conn, SQL_RELEASE, 3, NULL, rel, NULL, NULL, 0);
		ok = ok_result(conn, res, "release the claim", r);
		PQclear(res);
	}
	if (ok) {
		res = rt_exec_params(conn, SQL_MARK, 1, NULL, lock, NULL, NULL, 0);
		ok = ok_result(conn, res, "mark the row replayed", r);
		PQclear(res);
	}
	return ok;
}

/* Column name of the row res read with SQL_ROW, NULL when it is null. */
static const char *
column(const PGresult *res, const char *name)
{
	int k = PQfnumber(res, name);

	if (k < 0 || PQgetisnull(res, 0, k))
		return NULL;
	return PQgetvalue(res, 0, k);
}

/* Like column, "" for null. */
static const char *
column_text(const PGresult *res, const char *name)
{
	const char *v = column(res, name);

	return v ? v : "";
}

static bool
has_route(const struct broker *b, const char *name)
{
	for (size_t i = 0; name && i < b->n_routes; i++)
		if (strcmp(b->routes[i].name, name) == 0)
			return true;
	return false;
}

/* Print what the replay of r did, given the message's outcome. Its own
 * route is named when it is still configured: it is the one route whose
 * claim the replay released, the others see a duplicate. */
static void
print_replayed(const struct broker *b, const struct replay *r, enum apply_outcome outcome)
{
	bool named = has_route(b, r->consumer);

	switch (outcome) {
	case OUTCOME_APPLIED:
		if (named)
			printf("%s\treplayed: applied by route \"%s\"\n", r->id, r->consumer);
		else
			printf("%s\treplayed: applied\n", r->id);
		break;
	case OUTCOME_DUPLICATE:
		if (named)
			printf("%s\treplayed: route \"%s\" had applied event %s already, no effect\n", r->id,
			    r->consumer, r->event_id ? r->event_id : "");
		else
			printf("%s\treplayed: no effect (duplicate)\n", r->id);
		break;
	case OUTCOME_DEAD_LETTERED:
		printf("%s\treplayed: dead-lettered again (see the newest dead letters)\n", r->id);
		break;
	case OUTCOME_DEFERRED: /* not replayed: the caller says so */
		break;
	}
}

int
deadletter_replay_one(const struct settings *s, PGconn *conn, const char *id)
{
	const char *params[1] = { id };
	PGresult *res = rt_exec_params(conn, SQL_ROW, 1, NULL, params, NULL, NULL, 0);
	struct replay r = { .id = id };
	struct dl_row row;
	struct dl_message dm;
	char *err = NULL;
	const struct broker *b;
	struct core *core = NULL;
	enum apply_outcome outcome = OUTCOME_DEFERRED;
	enum apply_status st;
	int rc = -1;

	memset(&dm, 0, sizeof(dm));
	if (!db_ok(conn, res, NULL, NULL)) {
		fprintf(stderr, "oncebridge: could not read dead letter %s: %s", id, PQresultErrorMessage(res));
		goto out;
	}
	rc = 0;
	if (PQntuples(res) == 0) {
		printf("%s\tskipped: no such dead letter\n", id);
		goto out;
	}
	if (strcmp(column_text(res, "replayed"), "t") == 0) {
		printf("%s\tskipped: already replayed\n", id);
		goto out;
	}
	if (atol(column_text(res, "payload_size")) != atol(column_text(res, "kept_size"))) {
		printf("%s\tskipped: only the first %s of %s bytes were kept, it cannot be replayed\n", id,
		    column_text(res, "kept_size"), column_text(res, "payload_size"));
		goto out;
	}
	b = settings_find_broker(s, column_text(res, "broker"));
	if (b == NULL || b->n_routes == 0) {
		printf("%s\tskipped: broker \"%s\" has no routes in the configuration\n", id, column_text(res, "broker"));
		goto out;
	}
	r.consumer = column(res, "consumer");
	r.event_id = column(res, "event_id");
	r.created_at = column_text(res, "created_at");
	row.source = column(res, "source");
	row.exchange = column(res, "exchange");
	row.topic = column(res, "topic");
	row.properties = column_text(res, "properties");
	row.payload_hex = column_text(res, "payload_hex");
	if (dl_message_build(&dm, &row, b->adapter->topic_separator, &err) < 0) {
		printf("%s\tskipped: it cannot be replayed: %s\n", id, err);
		free(err);
		goto out;
	}

	core = core_new(s, b);
	core_set_tx_hook(core, replay_hook, &r);
	st = core_apply(core, &dm.msg, 1, &outcome);
	if (st == APPLY_OK && outcome == OUTCOME_DEFERRED) {
		/* an unclassified error, left for a retry: the core committed our
		 * mark but not the event, so the row is not replayed yet */
		PGresult *un = rt_exec_params(conn, "UPDATE oncebridge.dead_letters SET replayed_at = NULL WHERE id = $1",
		    1, NULL, params, NULL, NULL, 0);

		if (!db_ok(conn, un, NULL, NULL))
			fprintf(stderr, "oncebridge: could not unmark dead letter %s: %s", id, PQresultErrorMessage(un));
		PQclear(un);
		printf("%s\tnot replayed: the business SQL failed (see the log above); fix it and try again\n", id);
		rc = -1;
		goto out;
	}
	if (st != APPLY_OK) {
		if (r.already) {
			printf("%s\tskipped: already replayed\n", id);
		} else {
			printf("%s\tnot replayed: the database failed, try again\n", id);
			rc = -1;
		}
		goto out;
	}
	rc = 1;
	print_replayed(b, &r, outcome);
out:
	core_free(core);
	dl_message_free(&dm);
	PQclear(res);
	return rc;
}
