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
 * writes a new dead letter. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "bridge/apply.h"
#include "bridge/deadletter.h"
#include "bridge/deadletter_row.h"
#include "bridge/settings.h"
#include "bridge/util.h"

#define SQL_ROW \
	"SELECT broker, consumer, event_id, source, exchange, topic, properties::text, encode(payload, 'hex')," \
	" payload_size, octet_length(payload), replayed_at IS NOT NULL, created_at::text" \
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
ok_result(PGresult *res, ExecStatusType want, const char *what, struct replay *r)
{
	if (PQresultStatus(res) == want)
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

	res = PQexecParams(conn, SQL_LOCK, 1, NULL, lock, NULL, NULL, 0);
	ok = ok_result(res, PGRES_TUPLES_OK, "lock the row", r);
	if (ok && PQntuples(res) == 0) {
		r->already = true; /* another replay got there first */
		ok = false;
	}
	PQclear(res);
	if (ok && r->consumer && r->event_id) {
		const char *rel[3] = { r->consumer, r->event_id, r->created_at };

		res = PQexecParams(conn, SQL_RELEASE, 3, NULL, rel, NULL, NULL, 0);
		ok = ok_result(res, PGRES_COMMAND_OK, "release the claim", r);
		PQclear(res);
	}
	if (ok) {
		res = PQexecParams(conn, SQL_MARK, 1, NULL, lock, NULL, NULL, 0);
		ok = ok_result(res, PGRES_COMMAND_OK, "mark the row replayed", r);
		PQclear(res);
	}
	return ok;
}

static size_t
route_index(const struct broker *b, const char *name)
{
	for (size_t i = 0; name && i < b->n_routes; i++)
		if (strcmp(b->routes[i].name, name) == 0)
			return i;
	return (size_t)-1;
}

int
deadletter_replay_one(const struct settings *s, PGconn *conn, const char *id)
{
	const char *params[1] = { id };
	PGresult *res = PQexecParams(conn, SQL_ROW, 1, NULL, params, NULL, NULL, 0);
	struct replay r = { .id = id };
	struct dl_row row;
	struct dl_message dm;
	char *err = NULL;
	const struct broker *b;
	struct core *core = NULL;
	struct core_stats before;
	const struct core_stats *after;
	size_t ri;
	bool settled = false;
	int rc = -1;

	memset(&dm, 0, sizeof(dm));
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "oncebridge: could not read dead letter %s: %s", id, PQresultErrorMessage(res));
		goto out;
	}
	rc = 0;
	if (PQntuples(res) == 0) {
		printf("%s\tskipped: no such dead letter\n", id);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 10), "t") == 0) {
		printf("%s\tskipped: already replayed\n", id);
		goto out;
	}
	if (atol(PQgetvalue(res, 0, 8)) != atol(PQgetvalue(res, 0, 9))) {
		printf("%s\tskipped: only the first %s of %s bytes were kept, it cannot be replayed\n", id,
		    PQgetvalue(res, 0, 9), PQgetvalue(res, 0, 8));
		goto out;
	}
	b = settings_find_broker(s, PQgetvalue(res, 0, 0));
	if (b == NULL || b->n_routes == 0) {
		printf("%s\tskipped: broker \"%s\" has no routes in the configuration\n", id, PQgetvalue(res, 0, 0));
		goto out;
	}
	r.consumer = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
	r.event_id = PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2);
	r.created_at = PQgetvalue(res, 0, 11);
	row.source = PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3);
	row.exchange = PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4);
	row.topic = PQgetisnull(res, 0, 5) ? NULL : PQgetvalue(res, 0, 5);
	row.properties = PQgetvalue(res, 0, 6);
	row.payload_hex = PQgetvalue(res, 0, 7);
	if (dl_message_build(&dm, &row, b->adapter->topic_separator, &err) < 0) {
		printf("%s\tskipped: it cannot be replayed: %s\n", id, err);
		free(err);
		goto out;
	}

	core = core_new(s, b);
	core_set_tx_hook(core, replay_hook, &r);
	before = *core_stats(core);
	if (core_apply(core, &dm.msg, 1, &settled) == APPLY_OK && !settled) {
		/* an unclassified error, left for a retry: the core committed our
		 * mark but not the event, so the row is not replayed yet */
		PGresult *un = PQexecParams(conn, "UPDATE oncebridge.dead_letters SET replayed_at = NULL WHERE id = $1",
		    1, NULL, params, NULL, NULL, 0);

		if (PQresultStatus(un) != PGRES_COMMAND_OK)
			fprintf(stderr, "oncebridge: could not unmark dead letter %s: %s", id, PQresultErrorMessage(un));
		PQclear(un);
		printf("%s\tnot replayed: the business SQL failed (see the log above); fix it and try again\n", id);
		rc = -1;
		goto out;
	}
	if (!settled) {
		if (r.already) {
			printf("%s\tskipped: already replayed\n", id);
		} else {
			printf("%s\tnot replayed: the database failed, try again\n", id);
			rc = -1;
		}
		goto out;
	}
	after = core_stats(core);
	ri = route_index(b, r.consumer);
	rc = 1;
	if (ri < CORE_STATS_ROUTES && after->routes[ri].applied > before.routes[ri].applied)
		printf("%s\treplayed: applied by route \"%s\"\n", id, r.consumer);
	else if (ri < CORE_STATS_ROUTES && after->routes[ri].duplicates > before.routes[ri].duplicates)
		printf("%s\treplayed: route \"%s\" had applied event %s already, no effect\n", id, r.consumer,
		    r.event_id ? r.event_id : "");
	else if (after->dead_letters > before.dead_letters)
		printf("%s\treplayed: dead-lettered again (see the newest dead letters)\n", id);
	else if (after->applied > before.applied)
		printf("%s\treplayed: applied\n", id);
	else
		printf("%s\treplayed: no effect (duplicate)\n", id);
out:
	core_free(core);
	dl_message_free(&dm);
	PQclear(res);
	return rc;
}
