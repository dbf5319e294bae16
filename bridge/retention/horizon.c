/* SPDX-License-Identifier: Apache-2.0 */
/* A consumer worker's redelivery horizon, kept in
 * oncebridge.consumer_horizons (migration 4) so that retention, in any
 * instance, never prunes a key whose message this worker may still be
 * redelivered.
 *
 * The rules, in the worker's monotonic clock, with the figures the
 * adapter gives (struct redelivery, adapters/adapter.h):
 *  - A connection that comes up at S is "ready" once the redeliveries of
 *    the earlier connections are settled: the broker has requeued or
 *    resent them by S + ready_after at the latest, ahead of anything else.
 *    Ready: more than ready_deliveries deliveries applied after
 *    S + ready_after, or (ready_deliveries -1) a message acked that is not
 *    a resend (resends come first), or an idle second after S + ready_after.
 *  - On a ready connection a candidate mark is taken: the start of the
 *    batch being applied, or now when none is; every claim before it has
 *    been acked. It becomes the horizon once the connection has stayed up
 *    grace past those acks (time for a lost connection to be noticed).
 *  - A lost connection drops the candidate and the readiness; the horizon
 *    stays where it was until the next connection is ready and proven.
 * grace is the adapter's: how long a lost connection may go unnoticed.
 * The horizon is written as an age (now() - seconds on the database's
 * clock, less one second of slack), so clocks of hosts do not matter,
 * with a heartbeat, every retention.interval_s (1 to 5 s), on its own
 * database session: an adapter may apply on its library's thread with
 * the core's. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/adapter.h"
#include "bridge/core/db.h"
#include "bridge/core/roundtrip.h"
#include "bridge/retention/horizon.h"
#include "bridge/common/log.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

#define IDLE_MS 1000       /* no delivery this long: the broker had nothing for us */
#define SLACK_S 1.0        /* for the round trip between our clock and now() */

#define SQL_HORIZON \
	"INSERT INTO oncebridge.consumer_horizons AS h" \
	" (consumer, worker, kind, safe_before, seen_at, connected, grace_s, hold_s)" \
	" SELECT c, $1, $2, coalesce(now() - make_interval(secs => $3::double precision), '-infinity'), now()," \
	"  $4::boolean, $5::double precision, $6::double precision FROM unnest($7::text[]) AS c" \
	" ON CONFLICT (consumer, worker) DO UPDATE SET" \
	"  safe_before = greatest(h.safe_before, excluded.safe_before), seen_at = excluded.seen_at," \
	"  connected = excluded.connected, kind = excluded.kind, grace_s = excluded.grace_s, hold_s = excluded.hold_s"

struct horizon {
	const struct settings *settings;
	char *worker;          /* identity, from the adapter: its session, or host, broker and index */
	const char *kind;
	struct buf routes;     /* text[] literal of the route names */
	int64_t grace_ms;
	int64_t ready_after_ms; /* after S, deliveries that may be redeliveries */
	int64_t first_n;       /* deliveries that make a connection ready; -1: the first fresh one */
	char hold[32];         /* redelivery horizon after the worker is gone, "" when unknown */
	int64_t write_every_ms;
	int64_t next_write;
	PGconn *conn;          /* main thread only */

	pthread_mutex_t mu;    /* guards what follows (an adapter may apply on its library's thread) */
	bool up;
	int64_t up_since;
	bool ready;
	int64_t counted;       /* deliveries applied after up_since + ready_after_ms */
	bool fresh;            /* a message that is not a resend was applied */
	bool busy;             /* a batch is being applied and not yet acked */
	int64_t busy_since;
	int64_t last_ack;
	int64_t last_activity;
	bool cand;
	int64_t cand_mark, cand_due;
	bool have_mark;
	int64_t mark;
};

static void
routes_literal(struct buf *out, const struct broker *b)
{
	buf_append(out, "{", 1);
	for (size_t i = 0; i < b->n_routes; i++) {
		buf_append(out, i ? ",\"" : "\"", i ? 2 : 1);
		for (const char *p = b->routes[i].name; *p; p++) {
			if (*p == '"' || *p == '\\')
				buf_append(out, "\\", 1);
			buf_append(out, p, 1);
		}
		buf_append(out, "\"", 1);
	}
	buf_append(out, "}", 1); /* buf keeps data NUL-terminated */
}

struct horizon *
horizon_new(const struct settings *s, const struct broker *b, int index)
{
	struct horizon *h;
	struct redelivery rd = { 0 };

	if (s->dedupe_window_s == 0 || b->n_routes == 0)
		return NULL;
	h = xcalloc(1, sizeof(*h));
	h->settings = s;
	h->kind = b->adapter->name;
	pthread_mutex_init(&h->mu, NULL);
	routes_literal(&h->routes, b);
	b->adapter->redelivery(b, index, &rd);
	h->worker = rd.worker;
	h->grace_ms = rd.grace_ms;
	h->ready_after_ms = rd.ready_after_ms;
	h->first_n = rd.ready_deliveries;
	if (rd.hold_s >= 0)
		snprintf(h->hold, sizeof(h->hold), "%lld", (long long)rd.hold_s);
	h->write_every_ms = s->retention_interval_s * 1000;
	if (h->write_every_ms > 5000)
		h->write_every_ms = 5000;
	return h;
}

void
horizon_free(struct horizon *h)
{
	if (h == NULL)
		return;
	if (h->conn)
		PQfinish(h->conn);
	buf_free(&h->routes);
	free(h->worker);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

void
horizon_connected(struct horizon *h, bool up)
{
	int64_t now = now_ms();

	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	if (up && !h->up) {
		h->up_since = now;
		h->counted = 0;
		h->fresh = false;
		h->last_activity = now;
	}
	if (up != h->up) {
		h->ready = false;
		h->cand = false;
		h->busy = false; /* a batch of the lost connection is not acked on the next */
	}
	h->up = up;
	pthread_mutex_unlock(&h->mu);
}

void
horizon_applying(struct horizon *h, size_t n, bool fresh)
{
	int64_t now = now_ms();

	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	if (!h->busy) {
		h->busy = true;
		h->busy_since = now;
	}
	h->last_activity = now;
	if (h->up && now >= h->up_since + h->ready_after_ms)
		h->counted += (int64_t)n;
	if (h->up && fresh)
		h->fresh = true;
	pthread_mutex_unlock(&h->mu);
}

void
horizon_released(struct horizon *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	h->busy = false;
	h->last_activity = now_ms();
	pthread_mutex_unlock(&h->mu);
}

void
horizon_acked(struct horizon *h)
{
	int64_t now = now_ms();

	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	h->busy = false;
	h->last_ack = h->last_activity = now;
	if (h->up && !h->ready && (h->first_n < 0 ? h->fresh : h->counted > h->first_n))
		h->ready = true;
	pthread_mutex_unlock(&h->mu);
}

/* Move the mark on, under mu. */
static void
advance(struct horizon *h, int64_t now)
{
	if (!h->up)
		return;
	if (!h->ready && !h->busy && now - h->last_activity >= IDLE_MS && now >= h->up_since + h->ready_after_ms)
		h->ready = true;
	if (!h->ready)
		return;
	if (h->cand && now >= h->cand_due) {
		if (!h->have_mark || h->cand_mark > h->mark)
			h->mark = h->cand_mark;
		h->have_mark = true;
		h->cand = false;
	}
	if (!h->cand) {
		h->cand = true;
		h->cand_mark = h->busy ? h->busy_since : now;
		h->cand_due = (h->last_ack > h->up_since ? h->last_ack : h->up_since) + h->grace_ms;
	}
}

static void
write_horizon(struct horizon *h, double age_s, bool up)
{
	char age[32], grace[32];
	const char *values[7] = { h->worker, h->kind, NULL, up ? "true" : "false", grace,
		h->hold[0] ? h->hold : NULL, h->routes.data };
	char sqlstate[6], *msg = NULL;
	PGresult *res;

	if (age_s >= 0) {
		snprintf(age, sizeof(age), "%.3f", age_s);
		values[2] = age;
	}
	snprintf(grace, sizeof(grace), "%.3f", h->grace_ms / 1000.0);
	if (h->conn == NULL || PQstatus(h->conn) != CONNECTION_OK) {
		if (h->conn)
			PQfinish(h->conn);
		h->conn = db_open(h->settings, "oncebridge horizon");
		if (h->conn == NULL)
			return;
	}
	res = rt_exec_params(h->conn, SQL_HORIZON, 7, NULL, values, NULL, NULL, 0);
	if (!db_ok(h->conn, res, sqlstate, &msg)) {
		log_warn("could not record the redelivery horizon of worker \"%s\": %s", h->worker, msg ? msg : "");
		free(msg);
		PQfinish(h->conn);
		h->conn = NULL;
	}
	PQclear(res);
}

void
horizon_tick(struct horizon *h)
{
	int64_t now = now_ms();
	double age = -1;
	bool up, due;

	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	advance(h, now);
	up = h->up;
	if (h->have_mark)
		age = (double)(now - h->mark) / 1000.0 + SLACK_S;
	due = now >= h->next_write;
	if (due)
		h->next_write = now + h->write_every_ms;
	pthread_mutex_unlock(&h->mu);
	if (due)
		write_horizon(h, age, up);
}
