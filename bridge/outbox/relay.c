/* SPDX-License-Identifier: Apache-2.0 */
/* The outbox relay for one destination broker. Applications insert rows
 * into oncebridge.outbox in their own transactions (oncebridge.emit());
 * the relay reads committed rows in outbox order, publishes them with all
 * of a batch in flight through its adapter's publisher (send, then settle:
 * adapters/adapter.h), waits for the broker's confirms and only then marks
 * them published. A nack, a confirm timeout or a crash means the row is
 * published again later: consumers deduplicate by the event ID that travels
 * with every message.
 *
 * Ordered mode (the default): one relay per destination is active, the one
 * holding a session-level advisory lock on it; the others stand by and take
 * over when its session ends. Parallel mode: every relay claims rows with
 * FOR UPDATE SKIP LOCKED inside a transaction that lasts until the marks.
 * The relay wakes on NOTIFY oncebridge_outbox and polls as a fallback.
 *
 * In ordered mode the confirm window spans rounds, for every protocol:
 * the next batch is sent while the broker still confirms the previous
 * one, and each batch is marked once its own confirms are in, by
 * statements that travel with the next fetch (outbox_marks.c). The
 * batches in flight hold at most outbox.max_inflight_bytes of payloads
 * (a single larger row goes alone). Parallel mode keeps one batch in
 * flight, inside the transaction that claimed it.
 *
 * Emitting transactions commit out of id order. In ordered mode every
 * fetch stops at the publish horizon (outbox_horizon.c): the highest id
 * up to which no row can still commit. A row that commits late is never passed, and
 * waits only as long as the transactions that drew ids below it run. */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include <json-c/json.h>
#include <libpq-fe.h>

#include "adapters/adapter.h"
#include "bridge/common/backoff.h"
#include "bridge/core/db.h"
#include "bridge/core/orphan.h"
#include "bridge/core/roundtrip.h"
#include "bridge/outbox/outbox_horizon.h"
#include "bridge/outbox/outbox_marks.h"
#include "bridge/common/log.h"
#include "bridge/outbox/relay.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"
#include "bridge/daemon/worker.h"

/* The next rows in outbox order, as far as their payloads fit in $5 bytes
 * (the first row always does), and how many rows the read would have
 * returned without that limit (n_read: fewer than $2 means the read came
 * to the end of what is there). %s: FOR UPDATE SKIP LOCKED or nothing. */
#define SQL_FETCH \
	"SELECT id, event_id, topic, exchange, payload, content_type, headers, n_read FROM (" \
	" SELECT *, sum(octet_length(payload)) OVER (ORDER BY id) AS upto, count(*) OVER () AS n_read FROM (" \
	"  SELECT id, event_id, topic, exchange, payload, content_type, headers::text AS headers" \
	"  FROM oncebridge.outbox" \
	"  WHERE destination = $1 AND published_at IS NULL AND id > $3::bigint AND id <= $4::bigint" \
	"  ORDER BY id LIMIT $2%s) AS next) AS fit" \
	" WHERE upto - octet_length(payload) < $5::bigint ORDER BY id"
/* The horizon probe: the highest id the statement's snapshot sees, then
 * (read after that snapshot) the other transactions holding the lock that
 * INSERT, UPDATE and DELETE take on the outbox. */
#define SQL_PROBE \
	"SELECT (SELECT coalesce(max(id), 0) FROM oncebridge.outbox), l.virtualtransaction, l.pid" \
	" FROM (VALUES (1)) AS one LEFT JOIN pg_locks AS l ON l.locktype = 'relation'" \
	" AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())" \
	" AND l.relation = 'oncebridge.outbox'::regclass AND l.mode = 'RowExclusiveLock'" \
	" AND l.pid IS DISTINCT FROM pg_backend_pid()"
#define SQL_PRUNE \
	"DELETE FROM oncebridge.outbox WHERE id IN (SELECT id FROM oncebridge.outbox" \
	" WHERE destination = $1 AND published_at < now() - make_interval(secs => $2::double precision)" \
	" LIMIT 1000)"
#define SQL_PENDING \
	"SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8::text" \
	" FROM oncebridge.outbox WHERE destination = $1 AND published_at IS NULL"
#define SQL_LOCK "SELECT pg_try_advisory_lock(hashtext('oncebridge.outbox'), hashtext($1))"

#define PRUNE_EVERY_MS 60000
#define PRUNE_ROUNDS 20
#define WAIT_SLICE_MS 200
#define GAUGE_EVERY_MS 5000
#define HELD_WAIT_MS 50         /* how often to look again while a writer holds the horizon */
#define HELD_WARN_MS 10000      /* warn about a writer holding the horizon this long */

/* Rows fetched from the outbox and their messages; the strings live in
 * res until batch_free. */
struct batch {
	PGresult *res;
	struct outbound *msgs;
	bool *confirmed;
	int n;
	int64_t bytes;              /* of its payloads */
};

struct relay {
	struct worker *w;
	const struct broker *b;
	const struct adapter *a;
	PGconn *conn;
	struct publisher *pub;
	bool active;
	bool standby_logged;
	int64_t next_prune_ms;
	int64_t next_stats_ms;
	int64_t next_gauge_ms;
	uint64_t published, confirmed, unconfirmed;
	int round_unconfirmed;      /* rows of the last round not confirmed */
	struct batch flights[2];    /* batches in flight, oldest first */
	int n_flights;
	bool draining;              /* settle what is in flight, fetch nothing */
	struct outbox_horizon hz;   /* ordered mode: fetch no id above hz.safe */
	struct outbox_marks marks;  /* settled rows to mark, sent with the next fetch */
	bool probe_due;             /* the last fetch read every row up to the horizon */
	struct backoff db_backoff, broker_backoff, retry_backoff;
};

static void
relay_disconnect_db(struct relay *r)
{
	if (r->conn)
		PQfinish(r->conn);
	r->conn = NULL;
	r->active = false;
	outbox_marks_reset(&r->marks); /* those rows are published again */
}

/* The relay's session waits for the broker's confirms inside a
 * transaction (unordered) and holds a session-level advisory lock between
 * rounds (ordered): past these limits it is one we gave up on, and the
 * server frees the lock for our next session (bridge/core/orphan.c). */
static bool
relay_orphan_limits(struct relay *r)
{
	int64_t deadline = rt_timeout_ms(r->w->settings);
	int64_t confirm = r->b->outbox_confirm_timeout_ms;

	return orphan_limits(r->conn, confirm + deadline, r->b->outbox_poll_interval_ms + confirm + deadline);
}

static bool
relay_connect_db(struct relay *r)
{
	char appname[96];

	if (r->conn && PQstatus(r->conn) == CONNECTION_OK)
		return true;
	relay_disconnect_db(r);
	snprintf(appname, sizeof(appname), "oncebridge/%s/relay", r->b->name);
	r->conn = db_open(r->w->settings, appname);
	if (r->conn == NULL)
		return false;
	/* A lost mark only means the row is published again (consumers dedupe
	 * by event ID), so the relay's marks need not wait for the WAL flush. */
	if (!db_exec(r->conn, "SET synchronous_commit = off", "set synchronous_commit") ||
	    !relay_orphan_limits(r) ||
	    !db_exec(r->conn, "LISTEN oncebridge_outbox", "listen for outbox notifications")) {
		relay_disconnect_db(r);
		return false;
	}
	outbox_horizon_reset(&r->hz);
	r->probe_due = true;
	log_info("connected to the database");
	return true;
}

/* Ordered mode: become the active relay if nobody else is. */
static bool
relay_take_lock(struct relay *r)
{
	const char *values[1] = { r->b->name };
	PGresult *res = rt_exec_params(r->conn, SQL_LOCK, 1, NULL, values, NULL, NULL, 0);
	bool got = false;

	if (db_ok_or_warn(r->conn, res, "try the relay lock"))
		got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	else if (PQstatus(r->conn) != CONNECTION_OK)
		relay_disconnect_db(r);
	PQclear(res);
	if (got) {
		log_info("active relay for \"%s\" (ordered)", r->b->name);
		r->standby_logged = false;
	} else if (!r->standby_logged && r->conn) {
		log_info("standing by: another relay is active for \"%s\"", r->b->name);
		r->standby_logged = true;
	}
	return got;
}

/* True when a notification about this destination is queued. libpq
 * keeps notifications that arrived with a query's result in its own
 * queue, where select() on the socket cannot see them. */
static bool
relay_woken(struct relay *r)
{
	PGnotify *n;
	bool woken = false;

	while ((n = PQnotifies(r->conn)) != NULL) {
		woken |= n->extra && strcmp(n->extra, r->b->name) == 0;
		PQfreemem(n);
	}
	return woken;
}

/* Wait up to ms for a notification about this destination, servicing the
 * broker connection meanwhile. */
static void
relay_wait(struct relay *r, int64_t ms)
{
	int64_t until = now_ms() + ms;
	int sock = PQsocket(r->conn);

	if (relay_woken(r))
		return;
	while (!*r->w->stop && now_ms() < until) {
		int64_t left = until - now_ms();
		struct timeval tv;
		fd_set fds;

		if (left > WAIT_SLICE_MS)
			left = WAIT_SLICE_MS;
		tv.tv_sec = 0;
		tv.tv_usec = left * 1000;
		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (select(sock + 1, &fds, NULL, NULL, &tv) < 0 && errno != EINTR)
			break;
		if (!PQconsumeInput(r->conn)) {
			log_warn("lost the database connection: %s", PQerrorMessage(r->conn));
			relay_disconnect_db(r);
			return;
		}
		if (r->pub && r->a->publisher_idle(r->pub) < 0) {
			r->a->publisher_close(r->pub);
			r->pub = NULL;
		}
		if (relay_woken(r))
			return;
	}
}

static struct msg_header *
headers_of(const char *json, size_t *n)
{
	struct json_object *obj = json_tokener_parse(json);
	struct msg_header *h = NULL;
	size_t k = 0;

	*n = 0;
	if (obj == NULL)
		return NULL;
	if (json_object_is_type(obj, json_type_object)) {
		h = xcalloc((size_t)json_object_object_length(obj) + 1, sizeof(*h));
		json_object_object_foreach(obj, key, val)
		{
			const char *text = json_object_is_type(val, json_type_string)
			    ? json_object_get_string(val)
			    : json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);

			h[k].name = xstrdup(key);
			h[k].value = xstrdup(text);
			h[k].value_len = strlen(text);
			k++;
		}
	}
	json_object_put(obj);
	*n = k;
	return h;
}

static const char *
field(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static void
batch_free(struct batch *bt)
{
	for (int i = 0; bt->msgs && i < bt->n; i++) {
		for (size_t k = 0; k < bt->msgs[i].n_headers; k++) {
			free((char *)bt->msgs[i].headers[k].name);
			free((char *)bt->msgs[i].headers[k].value);
		}
		free((void *)bt->msgs[i].headers);
	}
	free(bt->msgs);
	free(bt->confirmed);
	PQclear(bt->res);
	memset(bt, 0, sizeof(*bt));
}

/* Warn once about each writer that has held the horizon back for long. */
static void
relay_warn_held(struct relay *r, int64_t now)
{
	const struct outbox_holder *h;

	while ((h = outbox_horizon_stuck(&r->hz, now, HELD_WARN_MS)) != NULL) {
		if (h->pid)
			log_warn("outbox \"%s\": rows after id %lld wait for a transaction of process %d that has held"
			    " a write lock on oncebridge.outbox for %lld s and may still commit rows before them",
			    r->b->name, (long long)r->hz.safe, h->pid, (long long)((now - h->since_ms) / 1000));
		else
			log_warn("outbox \"%s\": rows after id %lld wait for prepared transaction \"%s\", which"
			    " holds a write lock on oncebridge.outbox and may still commit rows before them",
			    r->b->name, (long long)r->hz.safe, h->vxid);
	}
}

/* Ordered mode: move the publish horizon (outbox_horizon.c). Returns
 * false when the database failed. */
static bool
relay_probe(struct relay *r)
{
	PGresult *res = rt_exec(r->conn, SQL_PROBE);
	int64_t now = now_ms();
	bool ok = db_ok_or_warn(r->conn, res, "read the outbox horizon") && PQntuples(res) > 0;

	if (ok) {
		outbox_horizon_begin(&r->hz);
		for (int i = 0; i < PQntuples(res); i++)
			if (!PQgetisnull(res, i, 1))
				outbox_horizon_saw(&r->hz, PQgetvalue(res, i, 1),
				    PQgetisnull(res, i, 2) ? 0 : atoi(PQgetvalue(res, i, 2)), now);
		outbox_horizon_end(&r->hz, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
	}
	PQclear(res);
	if (ok)
		relay_warn_held(r, now);
	return ok;
}

/* Fetch up to batch_size pending rows in outbox order, after the row
 * after_id when it is not 0, and in ordered mode up to the horizon.
 * Returns the number of rows, or -1. */
static int
batch_fetch(struct relay *r, int64_t after_id, int64_t room, struct batch *bt)
{
	const struct broker *b = r->b;
	char limit[24], after[24], upto[24], bytes[24];
	const char *values[5] = { b->name, limit, after, upto, bytes };
	int64_t n_read = 0;
	char *sql;

	/* notifications already read are about rows this fetch sees; drop
	 * them, or under steady load libpq's queue of them only grows */
	(void)relay_woken(r);
	memset(bt, 0, sizeof(*bt));
	/* rows up to the horizon are left from the last fetch unless it
	 * came back short: then look how far the horizon has moved */
	if (b->outbox_ordered && r->probe_due && !relay_probe(r))
		return -1;
	snprintf(limit, sizeof(limit), "%lld", (long long)b->outbox_batch_size);
	snprintf(after, sizeof(after), "%lld", (long long)(after_id ? after_id : INT64_MIN));
	snprintf(upto, sizeof(upto), "%lld", (long long)(b->outbox_ordered ? r->hz.safe : INT64_MAX));
	snprintf(bytes, sizeof(bytes), "%lld", (long long)room);
	sql = xasprintf(SQL_FETCH, b->outbox_ordered ? "" : " FOR UPDATE SKIP LOCKED");
	/* the marks of settled rows go along: behind the read when it starts
	 * after rows in flight, so above every row to be marked */
	bt->res = outbox_marks_read(r->conn, &r->marks, after_id != 0, sql, 5, values, 1 /* binary results */);
	free(sql);
	if (bt->res == NULL || !db_ok_or_warn(r->conn, bt->res, "read the outbox")) {
		batch_free(bt);
		r->probe_due = true;
		return -1;
	}
	bt->n = PQntuples(bt->res);
	if (bt->n > 0) {
		uint64_t be;

		memcpy(&be, PQgetvalue(bt->res, 0, 7), sizeof(be));
		n_read = (int64_t)be64toh(be);
	}
	r->probe_due = n_read < b->outbox_batch_size;
	bt->msgs = xcalloc((size_t)bt->n + 1, sizeof(*bt->msgs));
	bt->confirmed = xcalloc((size_t)bt->n + 1, sizeof(bool));
	for (int i = 0; i < bt->n; i++) {
		struct outbound *m = &bt->msgs[i];
		uint64_t be;
		char *headers;

		memcpy(&be, PQgetvalue(bt->res, i, 0), sizeof(be));
		m->id = (int64_t)be64toh(be);
		m->event_id = field(bt->res, i, 1);
		m->topic = field(bt->res, i, 2);
		m->exchange = field(bt->res, i, 3);
		m->payload = PQgetvalue(bt->res, i, 4);
		m->payload_len = (size_t)PQgetlength(bt->res, i, 4);
		bt->bytes += (int64_t)m->payload_len;
		m->content_type = field(bt->res, i, 5);
		headers = xstrndup(PQgetvalue(bt->res, i, 6), (size_t)PQgetlength(bt->res, i, 6));
		m->headers = headers_of(headers, &m->n_headers);
		free(headers);
	}
	return bt->n;
}

/* Mark the confirmed rows of bt published and count an attempt on the
 * others: with the next fetch (outbox_marks.c), or now in parallel mode,
 * inside the transaction that claimed them. Sets r->round_unconfirmed. */
static bool
batch_mark(struct relay *r, const struct batch *bt)
{
	r->round_unconfirmed = 0;
	for (int i = 0; i < bt->n; i++) {
		outbox_marks_add(&r->marks, bt->msgs[i].id, bt->confirmed[i]);
		r->published++;
		if (bt->confirmed[i]) {
			r->confirmed++;
		} else {
			r->unconfirmed++;
			r->round_unconfirmed++;
		}
	}
	return r->b->outbox_ordered || outbox_marks_flush(r->conn, &r->marks);
}

/* Forget the batches in flight without marking them: they are published
 * again later, and consumers dedupe. The publisher still counts them in
 * flight (and points into them), so it goes too. */
static void
window_drop(struct relay *r)
{
	if (r->n_flights > 0 && r->pub) {
		r->a->publisher_close(r->pub);
		r->pub = NULL;
	}
	for (int i = 0; i < r->n_flights; i++)
		batch_free(&r->flights[i]);
	r->n_flights = 0;
}

/* Fetch the rows after those in flight, as far as their payloads fit in
 * what is left of outbox.max_inflight_bytes (a single larger row goes
 * alone), and send them. Returns the number of rows (0 also when the
 * window is full of bytes), or -1 when the database failed; closes a
 * publisher that failed. */
static int
window_send(struct relay *r)
{
	struct batch *bt = &r->flights[r->n_flights];
	const struct batch *last = r->n_flights ? &r->flights[r->n_flights - 1] : NULL;
	int64_t room = r->b->outbox_max_inflight_bytes;
	int n;

	for (int i = 0; i < r->n_flights; i++)
		room -= r->flights[i].bytes;
	if (room <= 0 && r->n_flights > 0)
		return 0;
	n = batch_fetch(r, last ? last->msgs[last->n - 1].id : 0, room > 0 ? room : 1, bt);
	if (n <= 0) {
		batch_free(bt);
		return n;
	}
	r->n_flights++;
	if (r->a->publish_send(r->pub, bt->msgs, (size_t)n) < 0) {
		r->a->publisher_close(r->pub);
		r->pub = NULL;
	}
	return n;
}

/* Settle the oldest batch in flight and mark it; sets r->round_unconfirmed.
 * Without a publisher (it failed) none of its rows counts as confirmed.
 * Returns the number of rows, or -1 when the database failed. */
static int
window_settle(struct relay *r)
{
	struct batch *bt = &r->flights[0];
	int n = bt->n;
	bool ok;

	if (r->pub && r->a->publish_settle(r->pub, bt->confirmed, r->b->outbox_confirm_timeout_ms) < 0) {
		/* nothing counts as confirmed: the batches in flight are dropped
		 * and published again on the next connection */
		r->a->publisher_close(r->pub);
		r->pub = NULL;
	}
	ok = batch_mark(r, bt);
	batch_free(bt);
	r->flights[0] = r->flights[1];
	memset(&r->flights[1], 0, sizeof(r->flights[1]));
	r->n_flights--;
	if (ok && r->pub == NULL)
		window_drop(r);
	else if (ok && r->round_unconfirmed > 0)
		r->draining = true;
	return ok ? n : -1;
}

/* One round of the confirm window: send the next batch while the window
 * has room, and settle and mark the oldest batch once the window is full
 * or nothing more is sent. Ordered mode keeps two batches in flight, so
 * the broker confirms one while the next is sent. After a batch with
 * unconfirmed rows, the rest in flight is settled before anything new is
 * fetched, so the next fetch starts again at the oldest unpublished row.
 * Parallel mode keeps one batch in flight and runs the round in one
 * transaction, whose row locks keep other relays off these rows until the
 * marks. Returns the number of rows fetched or settled, 0 when there is
 * nothing to do, or -1 when the database failed. */
static int
relay_round(struct relay *r)
{
	bool tx = !r->b->outbox_ordered;
	int window = r->b->outbox_ordered ? 2 : 1;
	int fetched = 0, settled = 0;

	r->round_unconfirmed = 0;
	if (r->draining && r->n_flights == 0)
		r->draining = false; /* settled: fetch from the oldest unpublished row again */
	if (!outbox_marks_collect(r->conn, &r->marks))
		goto fail;
	if (tx && !db_exec(r->conn, "BEGIN", "begin a relay transaction"))
		goto fail;
	if (r->n_flights < window && !r->draining && (fetched = window_send(r)) < 0)
		goto fail;
	/* settle once the window is full, nothing more was sent or the
	 * publisher failed; else keep the window full: fetch again first */
	if (r->n_flights > 0 && (r->n_flights == window || fetched == 0 || r->pub == NULL) &&
	    (settled = window_settle(r)) < 0)
		goto fail;
	if (tx && !db_exec(r->conn, "COMMIT", "commit the relay transaction"))
		goto fail;
	return fetched + settled;
fail:
	window_drop(r);
	if (r->conn && PQpipelineStatus(r->conn) != PQ_PIPELINE_OFF)
		relay_disconnect_db(r);
	if (r->conn && PQstatus(r->conn) == CONNECTION_OK && PQtransactionStatus(r->conn) != PQTRANS_IDLE)
		db_exec(r->conn, "ROLLBACK", "roll back the relay transaction");
	return -1;
}

static void
relay_prune(struct relay *r)
{
	char secs[24];
	const char *values[2] = { r->b->name, secs };
	long long total = 0;

	snprintf(secs, sizeof(secs), "%lld", (long long)r->b->outbox_retention_s);
	for (int i = 0; i < PRUNE_ROUNDS && !*r->w->stop; i++) {
		PGresult *res = rt_exec_params(r->conn, SQL_PRUNE, 2, NULL, values, NULL, NULL, 0);
		long long n = 0;

		if (db_ok_or_warn(r->conn, res, "prune published outbox rows"))
			n = strtoll(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		total += n;
		if (n < 1000)
			break;
	}
	if (total > 0)
		log_info("pruned %lld published outbox rows older than %lld s", total,
		    (long long)r->b->outbox_retention_s);
}

/* Counters for the supervisor's metrics. */
static void
relay_share(struct relay *r)
{
	struct relay_stats *st = r->w->relay_shared;

	if (st == NULL)
		return;
	st->published = r->published;
	st->confirmed = r->confirmed;
	st->unconfirmed = r->unconfirmed;
	st->active = r->active || !r->b->outbox_ordered;
}

/* Count the rows waiting; log them too when log is set. */
static void
relay_stats(struct relay *r, bool log)
{
	const char *values[1] = { r->b->name };
	PGresult *res = rt_exec_params(r->conn, SQL_PENDING, 1, NULL, values, NULL, NULL, 0);

	if (db_ok_or_warn(r->conn, res, "count pending outbox rows") && r->w->relay_shared) {
		r->w->relay_shared->pending = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		r->w->relay_shared->oldest_ms = (int64_t)(atof(PQgetvalue(res, 0, 1)) * 1000.0);
	}
	if (log && db_ok(r->conn, res, NULL, NULL))
		log_info("outbox \"%s\": %s waiting, oldest %.1f s; %llu published, %llu confirmed, %llu not confirmed",
		    r->b->name, PQgetvalue(res, 0, 0), atof(PQgetvalue(res, 0, 1)),
		    (unsigned long long)r->published, (unsigned long long)r->confirmed,
		    (unsigned long long)r->unconfirmed);
	PQclear(res);
}

/* How long to wait for a notification when there is nothing to publish:
 * not long while a writer holds the horizon back, since it may end
 * without a notification for this destination (another destination's
 * rows, a rollback). */
static int64_t
relay_wait_ms(const struct relay *r)
{
	int64_t ms = r->b->outbox_poll_interval_ms;

	if (r->b->outbox_ordered && outbox_horizon_held(&r->hz) && ms > HELD_WAIT_MS)
		ms = HELD_WAIT_MS;
	return ms;
}

/* Pruning and counters when they are due. The marks sent with a fetch
 * are read by the next round; before anything else uses the session, or
 * before the relay waits (idle), every mark is done. Returns false when
 * the database failed. */
static bool
relay_housekeeping(struct relay *r, bool idle)
{
	int64_t now = now_ms();
	bool prune = now >= r->next_prune_ms, stats = now >= r->next_stats_ms;
	bool gauge = r->w->relay_shared && now >= r->next_gauge_ms;

	if ((idle || prune || stats || gauge) && !outbox_marks_flush(r->conn, &r->marks)) {
		relay_disconnect_db(r);
		return false;
	}
	if (prune) {
		relay_prune(r);
		r->next_prune_ms = now_ms() + PRUNE_EVERY_MS;
	}
	relay_share(r);
	if (stats) {
		relay_stats(r, true);
		r->next_stats_ms = now_ms() + r->b->outbox_stats_interval_s * 1000;
		r->next_gauge_ms = now_ms() + GAUGE_EVERY_MS;
	} else if (gauge && r->conn) {
		relay_stats(r, false);
		r->next_gauge_ms = now_ms() + GAUGE_EVERY_MS;
	}
	return true;
}

int
relay_run(struct worker *w)
{
	const struct settings *s = w->settings;
	struct relay r;

	memset(&r, 0, sizeof(r));
	outbox_horizon_reset(&r.hz);
	r.w = w;
	r.b = w->broker;
	r.a = w->broker->adapter;
	backoff_init(&r.db_backoff, s->retry_initial_ms, s->retry_max_ms);
	backoff_init(&r.broker_backoff, s->retry_initial_ms, s->retry_max_ms);
	backoff_init(&r.retry_backoff, s->retry_initial_ms, s->retry_max_ms);
	r.next_stats_ms = now_ms() + r.b->outbox_stats_interval_s * 1000;
	if (w->relay_shared)
		w->relay_shared->pending = -1;

	while (!*w->stop) {
		int n;

		if (!relay_connect_db(&r)) {
			sleep_ms_unless(backoff_next(&r.db_backoff), w->stop);
			continue;
		}
		backoff_reset(&r.db_backoff);
		if (r.b->outbox_ordered && !r.active) {
			window_drop(&r); /* the lock was lost: what was in flight is another relay's now */
			r.active = relay_take_lock(&r);
			if (!r.active) {
				if (r.conn)
					relay_wait(&r, r.b->outbox_poll_interval_ms);
				continue;
			}
		}
		if (r.pub == NULL) {
			r.pub = r.a->publisher_open(r.b, w->index);
			if (r.pub == NULL) {
				backoff_wait(&r.broker_backoff, "the broker", w->stop);
				continue;
			}
			backoff_reset(&r.broker_backoff);
		}
		n = relay_round(&r);
		if (n < 0) {
			if (r.conn && PQstatus(r.conn) != CONNECTION_OK)
				relay_disconnect_db(&r);
			sleep_ms_unless(backoff_next(&r.db_backoff), w->stop);
			continue;
		}
		if (r.pub == NULL || r.round_unconfirmed > 0)
			/* not confirmed or connection lost: give the broker a moment */
			sleep_ms_unless(backoff_next(&r.retry_backoff), w->stop);
		else if (n > 0)
			backoff_reset(&r.retry_backoff);
		if (!relay_housekeeping(&r, n == 0))
			continue;
		if (n == 0 && r.conn)
			relay_wait(&r, relay_wait_ms(&r));
	}
	/* settle and mark what is still in flight, so that a clean stop
	 * publishes nothing twice */
	r.draining = true;
	while (r.n_flights > 0 && r.pub && r.conn)
		if (relay_round(&r) < 0)
			break;
	if (r.conn && !outbox_marks_flush(r.conn, &r.marks))
		relay_disconnect_db(&r);
	window_drop(&r);
	if (r.conn)
		relay_stats(&r, true);
	if (r.pub)
		r.a->publisher_close(r.pub);
	relay_disconnect_db(&r);
	outbox_horizon_free(&r.hz);
	return 0;
}
