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

#include <json-c/json.h>

#include "adapters/adapter.h"
#include "bridge/apply.h"
#include "bridge/deadletter.h"
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

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static size_t
unhex(const char *hex, unsigned char *out)
{
	size_t n = 0;

	for (; hex[0] && hex[1]; hex += 2) {
		int hi = hexval(hex[0]), lo = hexval(hex[1]);

		if (hi < 0 || lo < 0)
			break; /* not bytea's hex output: stop at the first bad digit */
		out[n++] = (unsigned char)(hi << 4 | lo);
	}
	return n;
}

/* Fill m from the properties JSON of the row; the strings live in props. */
static void
message_properties(struct message *m, struct json_object *props, struct msg_header **headers)
{
	struct json_object *v, *h;

	if (json_object_object_get_ex(props, "message_id", &v) && json_object_is_type(v, json_type_string)) {
		m->message_id = json_object_get_string(v);
		m->message_id_len = (size_t)json_object_get_string_len(v);
	}
	if (json_object_object_get_ex(props, "content_type", &v) && json_object_is_type(v, json_type_string))
		m->content_type = json_object_get_string(v);
	if (json_object_object_get_ex(props, "redelivered", &v))
		m->redelivered = json_object_get_boolean(v);
	if (json_object_object_get_ex(props, "headers", &h) && json_object_is_type(h, json_type_object)) {
		size_t n = 0;

		*headers = xcalloc((size_t)json_object_object_length(h) + 1, sizeof(struct msg_header));
		json_object_object_foreach(h, key, val) {
			(*headers)[n].name = key;
			(*headers)[n].value = json_object_get_string(val);
			(*headers)[n].value_len = strlen((*headers)[n].value);
			n++;
		}
		m->headers = *headers;
		m->n_headers = n;
	}
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
	struct message m;
	struct msg_header *headers = NULL;
	struct json_object *props = NULL;
	const struct broker *b;
	struct core *core = NULL;
	unsigned char *payload = NULL;
	struct core_stats before;
	const struct core_stats *after;
	size_t ri;
	bool settled = false;
	int rc = -1;

	memset(&m, 0, sizeof(m));
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
	payload = xcalloc(strlen(PQgetvalue(res, 0, 7)) / 2 + 1, 1);
	m.payload = payload;
	m.payload_len = unhex(PQgetvalue(res, 0, 7), payload);
	m.source = PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3);
	m.exchange = PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4);
	m.topic = PQgetisnull(res, 0, 5) ? "" : PQgetvalue(res, 0, 5);
	m.topic_separator = strcmp(b->adapter->name, "mqtt") == 0 ? '/' : '.';
	m.received_at_us = now_us();
	props = json_tokener_parse(PQgetvalue(res, 0, 6));
	if (props)
		message_properties(&m, props, &headers);

	core = core_new(s, b);
	core_set_tx_hook(core, replay_hook, &r);
	before = *core_stats(core);
	if (core_apply(core, &m, 1, &settled) == APPLY_OK && !settled) {
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
	if (props)
		json_object_put(props);
	free(headers);
	free(payload);
	PQclear(res);
	return rc;
}
