/* SPDX-License-Identifier: Apache-2.0 */
/* The idempotent-apply core. For a batch of messages it builds one work
 * item per (message, matching route), extracts event IDs and parameters,
 * and runs one transaction (apply_tx.c):
 *
 *   BEGIN
 *   claim every (route, event_id) in processed_events; duplicates drop out
 *   run the business SQL of each newly claimed item
 *   write dead letters for poison (claiming its event ID too)
 *   COMMIT
 *
 * then reports each message's outcome (bridge/core/apply.h), so the adapter
 * acks only those not deferred. When a business statement fails, the
 * batch runs again with a savepoint around each statement, so that the
 * failing item is dead-lettered (poison), left for a later retry (other
 * errors, up to retry.max_attempts) or the whole batch left unsettled
 * (transient), while the rest commits. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "adapters/adapter.h"
#include "bridge/core/apply_int.h"
#include "bridge/core/attempts.h"
#include "bridge/core/db.h"
#include "bridge/core/extract.h"
#include "bridge/core/roundtrip.h"
#include "bridge/core/failure.h"
#include "bridge/common/log.h"
#include "bridge/config/settings.h"
#include "bridge/core/stats.h"
#include "bridge/common/text.h"
#include "bridge/common/util.h"

/* failed-attempt counts: sizes */
#define ATTEMPTS_MIN_CAPACITY 4096
#define ATTEMPTS_MIN_HORIZON_MS 300000 /* 5 minutes */
#define ATTEMPTS_FLOOR_MAX 1000000     /* above any retry.max_attempts */

/* Far more than a worker can have in flight (the adapter says how much:
 * a window on each route and a batch), so that a failure however wide
 * never evicts its own counts (bridge/core/attempts.c). */
static size_t
attempts_capacity(const struct broker *b)
{
	int64_t window = b->adapter->in_flight(b);

	return window * 4 > ATTEMPTS_MIN_CAPACITY ? (size_t)window * 4 : ATTEMPTS_MIN_CAPACITY;
}

/* A deferred event comes back within a retry backoff and the deliveries
 * ahead of it; one that stays away this long was taken elsewhere. */
static int64_t
attempts_horizon_ms(const struct settings *s)
{
	return s->retry_max_ms * 10 > ATTEMPTS_MIN_HORIZON_MS ? s->retry_max_ms * 10 : ATTEMPTS_MIN_HORIZON_MS;
}

struct core *
core_new(const struct settings *s, const struct broker *b)
{
	struct core *c = xcalloc(1, sizeof(*c));

	c->settings = s;
	c->broker = b;
	c->limits = settings_limits(s);
	c->stats = &c->own_stats;
	c->n_routes = b->n_routes;
	c->own_routes = xcalloc(b->n_routes + 1, sizeof(struct core_route_stats));
	c->routes = c->own_routes;
	c->attempts = attempts_new(attempts_capacity(b), attempts_horizon_ms(s));
	return c;
}

void
core_disconnect(struct core *c)
{
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
	c->stats->db_connected = false;
}

void
core_free(struct core *c)
{
	if (c == NULL)
		return;
	core_disconnect(c);
	attempts_free(c->attempts);
	free(c->own_routes);
	buf_free(&c->arr_consumers);
	buf_free(&c->arr_ids);
	free(c);
}

int
core_ready(struct core *c)
{
	if (c->conn && PQstatus(c->conn) == CONNECTION_OK)
		return 0;
	core_disconnect(c);
	c->conn = db_connect(c->settings, c->broker);
	if (c->conn == NULL)
		return -1;
	log_info("connected to the database");
	c->stats->db_connected = true;
	return 0;
}

const struct core_stats *
core_stats(const struct core *c)
{
	return c->stats;
}

void
core_set_tx_hook(struct core *c, core_tx_hook fn, void *arg)
{
	c->tx_hook = fn;
	c->tx_hook_arg = arg;
}

const struct core_route_stats *
core_route_stats(const struct core *c)
{
	return c->routes;
}

void
core_share_stats(struct core *c, struct core_stats *area, struct core_route_stats *routes, size_t n_routes)
{
	area->pending_since_ms = 0;
	area->db_connected = false;
	c->stats = area;
	if (routes && n_routes == c->n_routes)
		c->routes = routes;
}

/* --- failed-attempt counts for errors that are neither poison nor transient
 * (the table's size and horizon are above core_new) */

int
attempt_bump(struct core *c, const struct item *it, const struct message *m)
{
	int64_t dc = m->delivery_count;
	int floor = dc <= 0 ? 1 : dc >= ATTEMPTS_FLOOR_MAX ? ATTEMPTS_FLOOR_MAX : (int)dc + 1;
	int n;

	if (it->event_id == NULL) /* not claimed, cannot happen: never retry it forever */
		return (int)c->settings->max_attempts;
	n = attempts_bump(c->attempts, it->route, it->event_id, floor, now_ms());
	if (attempts_evicted(c->attempts) > c->attempts_evicted) {
		log_warn("dropped the failed-attempt counts of %llu events (more than %zu failing events in flight); "
		    "their attempts start over", (unsigned long long)(attempts_evicted(c->attempts) - c->attempts_evicted),
		    attempts_capacity(c->broker));
		c->attempts_evicted = attempts_evicted(c->attempts);
	}
	return n;
}

/* The event of it is settled: applied, dead-lettered or a duplicate. */
static void
attempt_forget(struct core *c, const struct item *it)
{
	if (it->route != NO_ROUTE && it->event_id)
		attempts_forget(c->attempts, it->route, it->event_id);
}

/* --- building the items of a batch */

static void
item_poison(struct item *it, const char *reason)
{
	free(it->reason);
	it->reason = xstrdup(reason);
	it->state = IT_POISON;
}

static void
item_clear(const struct route *r, struct item *it)
{
	if (it->values && r)
		for (size_t p = 0; p < r->n_params; p++)
			value_clear(&it->values[p]);
	free(it->values);
	free(it->event_id);
	free(it->reason);
	free(it->detail);
}

static void
items_add_for_message(struct core *c, struct msg_view *v, size_t mi, struct item **items, size_t *n)
{
	const struct broker *b = c->broker;
	const struct message *m = v->msg;
	bool matched = false;

	for (size_t r = 0; r <= b->n_routes; r++) {
		const struct route *route;
		struct item *it;
		struct extraction ex;

		if (r == b->n_routes) {
			if (matched)
				break;
			route = NULL; /* no route: one dead letter */
		} else {
			route = &b->routes[r];
			if (!b->adapter->route_matches(route, m))
				continue;
			matched = true;
		}
		*items = xrealloc(*items, (*n + 1) * sizeof(struct item));
		it = &(*items)[(*n)++];
		memset(it, 0, sizeof(*it));
		it->msg = mi;
		it->route = route ? r : NO_ROUTE;
		it->state = IT_PENDING;
		if (route == NULL) {
			char *why = xasprintf("no route of broker \"%s\" matches this message", b->name);

			item_poison(it, why);
			free(why);
			continue;
		}
		if (extract_route(route, v, &c->limits, &ex) < 0) {
			item_poison(it, ex.reason);
			it->event_id = ex.event_id; /* claimed with the dead letter */
			ex.event_id = NULL;
			extraction_clear(route, &ex);
			continue;
		}
		it->event_id = ex.event_id;
		it->values = ex.values;
		ex.event_id = NULL;
		ex.values = NULL;
	}
}

static bool
has_poison(const struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (items[i].state == IT_POISON)
			return true;
	return false;
}

/* Count a committed item and say what became of it. */
static enum apply_outcome
item_outcome(struct core *c, const struct item *it)
{
	struct core_route_stats *rs = it->route < c->n_routes ? &c->routes[it->route] : NULL;

	switch (it->state) {
	case IT_APPLIED:
		c->stats->applied++;
		if (rs) {
			rs->applied++;
			rs->last_applied_ms = wall_ms();
		}
		attempt_forget(c, it);
		return OUTCOME_APPLIED;
	case IT_DUP:
		c->stats->duplicates++;
		if (rs)
			rs->duplicates++;
		attempt_forget(c, it);
		return OUTCOME_DUPLICATE;
	case IT_DEAD:
		c->stats->dead_letters++;
		if (rs)
			rs->dead_letters++;
		attempt_forget(c, it);
		return OUTCOME_DEAD_LETTERED;
	default:
		if (rs)
			rs->deferred++;
		return OUTCOME_DEFERRED;
	}
}

enum apply_status
core_apply(struct core *c, const struct message *msgs, size_t n, enum apply_outcome *outcome)
{
	struct msg_view *views = xcalloc(n + 1, sizeof(struct msg_view));
	struct item *items = NULL;
	size_t n_items = 0;
	struct stmt_result sr = { 0 };
	enum failure_class fc;
	enum apply_status status = APPLY_OK;
	int64_t t0 = now_us();

	c->stats->received += n;
	c->stats->batches++;
	stats_observe_batch(c->stats, n);
	if (c->stats->pending_since_ms == 0)
		c->stats->pending_since_ms = t0 / 1000;
	for (size_t i = 0; i < n; i++) {
		outcome[i] = OUTCOME_DEFERRED;
		msg_view_init(&views[i], &msgs[i], c->broker->name);
		items_add_for_message(c, &views[i], i, &items, &n_items);
	}
	if (core_ready(c) < 0) {
		status = APPLY_TRANSIENT;
		goto out;
	}
	/* every round trip of the transaction, COMMIT included, runs under
	 * the deadline: past it the session is shut down, and a COMMIT whose
	 * outcome is unknown is a transient failure (no ack; the redelivery
	 * is deduplicated) */
	rt_begin(c->conn);
	/* the plain path writes dead letters and runs the transaction hook */
	if (has_poison(items, n_items) || c->tx_hook)
		fc = tx_plain(c, msgs, items, n_items, false, &sr);
	else if (n_items == 1)
		fc = tx_single(c, items, &sr);
	else
		fc = tx_pipelined(c, items, n_items, &sr);
	if (fc == FAILURE_RETRY)
		fc = tx_plain(c, msgs, items, n_items, true, &sr);
	rt_end(c->conn);
	if (fc != FAILURE_NONE) {
		bool one = n_items == 1 && items[0].route != NO_ROUTE;
		struct log_ctx lc = { one ? c->broker->routes[items[0].route].name : NULL,
			one ? items[0].event_id : NULL, sr.sqlstate, NULL, NULL, -1, -1 };

		log_warn_ctx(&lc, "could not apply a batch of %zu messages, will retry: %s%s%s%s", n,
		    sr.message ? sr.message : "unknown error", sr.sqlstate[0] ? " (SQLSTATE " : "",
		    sr.sqlstate, sr.sqlstate[0] ? ")" : "");
		c->stats->transient_failures++;
		/* a session still inside a transaction would carry its claims
		 * into the retry: drop it with the broken ones */
		if (PQstatus(c->conn) != CONNECTION_OK || PQtransactionStatus(c->conn) != PQTRANS_IDLE)
			core_disconnect(c);
		status = APPLY_TRANSIENT;
		goto out;
	}
	stats_observe_commit(c->stats, now_us() - t0);
	c->stats->pending_since_ms = 0;
	for (size_t i = 0; i < n; i++)
		outcome[i] = OUTCOME_DUPLICATE;
	for (size_t i = 0; i < n_items; i++) {
		enum apply_outcome o = item_outcome(c, &items[i]);

		if (o > outcome[items[i].msg])
			outcome[items[i].msg] = o;
	}
	for (size_t i = 0; i < n; i++)
		if (!apply_settled(outcome[i]))
			c->stats->deferred++;
		else
			c->stats->settled++;
out:
	stmt_result_clear(&sr);
	for (size_t i = 0; i < n_items; i++)
		item_clear(items[i].route == NO_ROUTE ? NULL : &c->broker->routes[items[i].route], &items[i]);
	free(items);
	for (size_t i = 0; i < n; i++)
		msg_view_clear(&views[i]);
	free(views);
	return status;
}
