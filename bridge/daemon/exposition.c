/* SPDX-License-Identifier: Apache-2.0 */
/* Rendering of metrics in Prometheus's text format and of the health
 * answer. Counters are summed over the worker processes of a broker, and
 * per route for every route (each worker's route counters are sized from
 * the configuration, bridge/daemon/board.c). A worker replaced by a reload
 * starts its counters at zero, which Prometheus treats as a counter reset.
 * The build and process metrics are in bridge/daemon/exposition_process.c. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bridge/daemon/exposition.h"
#include "bridge/daemon/fleet.h"
#include "bridge/config/settings.h"
#include "bridge/core/stats.h"
#include "bridge/common/util.h"

/* A label value with \, " and newline escaped. */
static void
label(struct buf *out, const char *name, const char *value)
{
	buf_appendf(out, "%s=\"", name);
	for (const char *p = value; *p; p++) {
		if (*p == '\\' || *p == '"')
			buf_appendf(out, "\\%c", *p);
		else if (*p == '\n')
			buf_appendf(out, "\\n");
		else
			buf_append(out, p, 1);
	}
	buf_append(out, "\"", 1);
}

static void
family(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
exposition_label(struct buf *out, const char *name, const char *value)
{
	label(out, name, value);
}

void
exposition_family(struct buf *out, const char *name, const char *type, const char *help)
{
	family(out, name, type, help);
}

/* Counters of every running inbound worker of broker b, summed. */
static void
sum_broker(const struct fleet *f, const struct broker *b, struct core_stats *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (size_t i = 0; i < f->n; i++) {
		const struct child *c = &f->children[i];
		const struct core_stats *st;

		if (c->broker != b || c->role != ROLE_CONSUMER || c->slot < 0)
			continue;
		st = &f->board.slots[c->slot].core;
		sum->received += st->received;
		sum->applied += st->applied;
		sum->duplicates += st->duplicates;
		sum->dead_letters += st->dead_letters;
		sum->deferred += st->deferred;
		sum->batches += st->batches;
		sum->transient_failures += st->transient_failures;
		sum->settled += st->settled;
		sum->commit_us_sum += st->commit_us_sum;
		for (size_t k = 0; k <= CORE_LATENCY_BUCKETS; k++)
			sum->commit_buckets[k] += st->commit_buckets[k];
		for (size_t k = 0; k <= CORE_BATCH_BUCKETS; k++)
			sum->batch_buckets[k] += st->batch_buckets[k];
	}
}

/* Route counters of every running inbound worker of broker b, summed into
 * sum[0..b->n_routes); the last commit is the latest of theirs. */
static void
sum_routes(const struct fleet *f, const struct broker *b, struct core_route_stats *sum)
{
	memset(sum, 0, b->n_routes * sizeof(*sum));
	for (size_t i = 0; i < f->n; i++) {
		const struct child *c = &f->children[i];
		const struct board_slot *slot;

		if (c->broker != b || c->role != ROLE_CONSUMER || c->slot < 0)
			continue;
		slot = &f->board.slots[c->slot];
		for (size_t r = 0; r < b->n_routes && r < slot->n_routes; r++) {
			const struct core_route_stats *st = &slot->routes[r];

			sum[r].applied += st->applied;
			sum[r].duplicates += st->duplicates;
			sum[r].dead_letters += st->dead_letters;
			sum[r].deferred += st->deferred;
			if (st->last_applied_ms > sum[r].last_applied_ms)
				sum[r].last_applied_ms = st->last_applied_ms;
		}
	}
}

struct broker_counter {
	const char *name;
	const char *help;
	size_t offset;
};

#define BC(f) offsetof(struct core_stats, f)
static const struct broker_counter broker_counters[] = {
	{ "oncebridge_messages_received_total", "Messages received from the broker and handed to the core.",
	    BC(received) },
	{ "oncebridge_messages_acked_total", "Messages the core settled (committed, duplicate or dead-lettered), "
	    "which the adapter acks.", BC(settled) },
	{ "oncebridge_messages_deferred_total", "Messages left unsettled for a redelivery (nacked with requeue).",
	    BC(deferred) },
	{ "oncebridge_dead_letters_total", "Dead-letter rows committed, including messages no route matched.",
	    BC(dead_letters) },
	{ "oncebridge_batches_total", "Batches handed to the core.", BC(batches) },
	{ "oncebridge_transient_failures_total", "Batches that failed transiently and are retried.",
	    BC(transient_failures) },
};

#define RC(f) offsetof(struct core_route_stats, f)
static const struct broker_counter route_counters[] = {
	{ "oncebridge_events_applied_total", "Events whose business SQL committed.", RC(applied) },
	{ "oncebridge_events_duplicate_total", "Events already in processed_events: no effect, acked.",
	    RC(duplicates) },
	{ "oncebridge_events_dead_lettered_total", "Events dead-lettered by this route.", RC(dead_letters) },
	{ "oncebridge_events_retried_total", "Events left for a retry after an error of their business SQL.",
	    RC(deferred) },
};

static uint64_t
field(const void *base, size_t offset)
{
	uint64_t v;

	memcpy(&v, (const char *)base + offset, sizeof(v));
	return v;
}

static void
histogram(struct buf *out, const char *name, const char *broker, const uint64_t *buckets, size_t n,
    const int64_t *bounds, double scale, double sum)
{
	uint64_t cum = 0;

	for (size_t k = 0; k <= n; k++) {
		cum += buckets[k];
		buf_appendf(out, "%s_bucket{", name);
		label(out, "broker", broker);
		if (k < n)
			buf_appendf(out, ",le=\"%g\"} %llu\n", (double)bounds[k] * scale, (unsigned long long)cum);
		else
			buf_appendf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	}
	buf_appendf(out, "%s_sum{", name);
	label(out, "broker", broker);
	buf_appendf(out, "} %.6f\n%s_count{", sum, name);
	label(out, "broker", broker);
	buf_appendf(out, "} %llu\n", (unsigned long long)cum);
}

/* Which children a per-process metric has a line for (never a retiring
 * one), and whether the line has a role label. */
enum process_set {
	PROCESS_ANY,      /* every worker and relay, with role="..." */
	PROCESS_CONSUMER, /* inbound workers with a board slot */
	PROCESS_RELAY,    /* outbox relays with a board slot */
};

struct process_metric {
	const char *name;
	const char *type;
	const char *help;
	enum process_set set;
	bool ms_as_seconds; /* value is in milliseconds, shown in seconds */
	uint64_t (*value)(const struct fleet *f, const struct child *c, int64_t now);
};

static const struct board_slot *
slot_of(const struct fleet *f, const struct child *c)
{
	return &f->board.slots[c->slot];
}

static uint64_t
up(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)f;
	(void)now;
	return c->pid != 0;
}

static uint64_t
restarts(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)f;
	(void)now;
	return c->restarts;
}

static uint64_t
db_connected(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)now;
	return c->pid != 0 && slot_of(f, c)->core.db_connected;
}

static uint64_t
broker_connected(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)now;
	return c->pid != 0 && slot_of(f, c)->core.broker_connected;
}

static uint64_t
pending_ms(const struct fleet *f, const struct child *c, int64_t now)
{
	return (uint64_t)fleet_stalled_ms(f, c, now);
}

static uint64_t
stalled(const struct fleet *f, const struct child *c, int64_t now)
{
	return fleet_is_stalled(f, c, now);
}

static uint64_t
published(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)now;
	return slot_of(f, c)->relay.published;
}

static uint64_t
confirmed(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)now;
	return slot_of(f, c)->relay.confirmed;
}

static uint64_t
unconfirmed(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)now;
	return slot_of(f, c)->relay.unconfirmed;
}

static uint64_t
relay_active(const struct fleet *f, const struct child *c, int64_t now)
{
	(void)now;
	return c->pid != 0 && slot_of(f, c)->relay.active;
}

/* Metrics with a line per worker or relay process, in the order served. */
static const struct process_metric process_metrics[] = {
	{ "oncebridge_worker_up", "gauge", "1 while the worker or relay process runs.", PROCESS_ANY, false, up },
	{ "oncebridge_worker_restarts_total", "counter", "Restarts of a worker or relay after it died.",
	    PROCESS_ANY, false, restarts },
	{ "oncebridge_database_connected", "gauge", "1 while the worker has a database session.",
	    PROCESS_CONSUMER, false, db_connected },
	{ "oncebridge_broker_connected", "gauge",
	    "1 while the worker is connected to its broker and consuming.", PROCESS_CONSUMER, false,
	    broker_connected },
	{ "oncebridge_worker_pending_seconds", "gauge",
	    "How long the worker's current batch has waited without a commit (0: none waiting).",
	    PROCESS_CONSUMER, true, pending_ms },
	{ "oncebridge_worker_stalled", "gauge",
	    "1 when the worker's batch has waited longer than health.stall_timeout_ms.", PROCESS_CONSUMER, false,
	    stalled },
	{ "oncebridge_outbox_published_total", "counter",
	    "Outbox rows the relay published (republished rows count again).", PROCESS_RELAY, false, published },
	{ "oncebridge_outbox_confirmed_total", "counter", "Published outbox rows the broker confirmed.",
	    PROCESS_RELAY, false, confirmed },
	{ "oncebridge_outbox_unconfirmed_total", "counter",
	    "Published outbox rows nacked or not confirmed in time, published again later.", PROCESS_RELAY, false,
	    unconfirmed },
	{ "oncebridge_outbox_relay_active", "gauge",
	    "1 when the relay publishes (ordered mode: holds the destination's lock), 0 on standby.",
	    PROCESS_RELAY, false, relay_active },
};

static bool
in_set(const struct child *c, enum process_set set)
{
	if (c->retiring)
		return false;
	switch (set) {
	case PROCESS_ANY:
		return c->role != ROLE_RETENTION;
	case PROCESS_CONSUMER:
		return c->role == ROLE_CONSUMER && c->slot >= 0;
	case PROCESS_RELAY:
		return c->role == ROLE_RELAY && c->slot >= 0;
	}
	return false;
}

static void
process_metric(const struct fleet *f, struct buf *out, const struct process_metric *m, int64_t now)
{
	family(out, m->name, m->type, m->help);
	for (size_t i = 0; i < f->n; i++) {
		const struct child *c = &f->children[i];
		uint64_t v;

		if (!in_set(c, m->set))
			continue;
		v = m->value(f, c, now);
		buf_appendf(out, "%s{", m->name);
		label(out, "broker", c->name);
		if (m->set == PROCESS_ANY)
			buf_appendf(out, ",role=\"%s\"", role_name(c->role));
		if (m->ms_as_seconds)
			buf_appendf(out, ",index=\"%d\"} %.3f\n", c->index, (double)(int64_t)v / 1000.0);
		else
			buf_appendf(out, ",index=\"%d\"} %llu\n", c->index, (unsigned long long)v);
	}
}

/* Outbox gauges per destination: what its relays last counted. */
static void
outbox_metrics(const struct fleet *f, struct buf *out)
{
	const struct settings *s = f->settings;

	family(out, "oncebridge_outbox_pending", "gauge", "Outbox rows of the destination waiting to be published.");
	family(out, "oncebridge_outbox_oldest_age_seconds", "gauge", "Age of the oldest of those rows.");
	for (size_t b = 0; b < s->n_brokers; b++) {
		int64_t pending = -1, oldest = 0;

		for (size_t i = 0; i < f->n; i++) {
			const struct child *c = &f->children[i];
			const struct relay_stats *rs;

			if (c->broker != &s->brokers[b] || c->role != ROLE_RELAY || c->slot < 0)
				continue;
			rs = &f->board.slots[c->slot].relay;
			if (rs->pending > pending) {
				pending = rs->pending;
				oldest = rs->oldest_ms;
			}
		}
		if (pending < 0)
			continue; /* not counted yet */
		buf_appendf(out, "oncebridge_outbox_pending{");
		label(out, "broker", s->brokers[b].name);
		buf_appendf(out, "} %lld\noncebridge_outbox_oldest_age_seconds{", (long long)pending);
		label(out, "broker", s->brokers[b].name);
		buf_appendf(out, "} %.3f\n", (double)oldest / 1000.0);
	}
}

/* The "broker" and "route" labels of route r of broker b (r == n_routes: no route). */
static void
route_labels(struct buf *out, const struct broker *b, size_t r)
{
	label(out, "broker", b->name);
	if (r < b->n_routes) {
		buf_append(out, ",", 1);
		label(out, "route", b->routes[r].name);
	}
}

/* Per route, for every route: the counters and the last commit. */
static void
route_metrics(const struct fleet *f, struct buf *out)
{
	const struct settings *s = f->settings;
	struct core_route_stats **sums = xcalloc(s->n_brokers + 1, sizeof(*sums));
	const char *last = "oncebridge_route_last_applied_timestamp_seconds";

	for (size_t b = 0; b < s->n_brokers; b++) {
		sums[b] = xcalloc(s->brokers[b].n_routes + 1, sizeof(struct core_route_stats));
		sum_routes(f, &s->brokers[b], sums[b]);
	}
	for (size_t k = 0; k < sizeof(route_counters) / sizeof(route_counters[0]); k++) {
		family(out, route_counters[k].name, "counter", route_counters[k].help);
		for (size_t b = 0; b < s->n_brokers; b++) {
			for (size_t r = 0; r < s->brokers[b].n_routes; r++) {
				buf_appendf(out, "%s{", route_counters[k].name);
				route_labels(out, &s->brokers[b], r);
				buf_appendf(out, "} %llu\n", (unsigned long long)field(&sums[b][r], route_counters[k].offset));
			}
		}
	}
	family(out, last, "gauge", "When an event of the route last committed with an effect, in seconds since "
	    "the epoch (no line before the first).");
	for (size_t b = 0; b < s->n_brokers; b++) {
		for (size_t r = 0; r < s->brokers[b].n_routes; r++) {
			if (sums[b][r].last_applied_ms == 0)
				continue;
			buf_appendf(out, "%s{", last);
			route_labels(out, &s->brokers[b], r);
			buf_appendf(out, "} %.3f\n", (double)sums[b][r].last_applied_ms / 1000.0);
		}
	}
	for (size_t b = 0; b < s->n_brokers; b++)
		free(sums[b]);
	free(sums);
}

/* The dead letters waiting, as the maintenance process last counted them:
 * per route and class, and per broker for messages no route matched (no
 * route label). Nothing before the first count. */
static void
deadletter_metrics(const struct fleet *f, struct buf *out)
{
	const struct settings *s = f->settings;
	const struct dl_waiting_board *w = NULL;
	const char *name = "oncebridge_dead_letters_waiting";

	for (size_t i = 0; i < f->n; i++)
		if (f->children[i].role == ROLE_RETENTION && !f->children[i].retiring && f->children[i].slot >= 0)
			w = f->board.slots[f->children[i].slot].waiting;
	family(out, name, "gauge", "Dead letters not replayed, by route and class (invalid: the message itself, "
	    "sql_error: its business SQL failed, unrouted: no route matched), counted every few seconds.");
	if (w == NULL || w->counted_ms == 0 || w->n != dl_waiting_rows(s))
		return;
	for (size_t b = 0; b < s->n_brokers; b++) {
		const struct broker *br = &s->brokers[b];

		if (br->n_routes == 0)
			continue;
		for (size_t r = 0; r <= br->n_routes; r++) {
			const struct dl_waiting *row = &w->rows[dl_waiting_row(s, b, r)];

			for (int k = 0; k < DL_CLASSES; k++) {
				if ((k == DL_CLASS_UNROUTED) != (r == br->n_routes))
					continue;
				buf_appendf(out, "%s{", name);
				route_labels(out, br, r);
				buf_appendf(out, ",class=\"%s\"} %lld\n", dl_class_name((enum dl_class)k), (long long)row->n[k]);
			}
		}
	}
}

void
exposition_metrics(const struct fleet *f, struct buf *out)
{
	const struct settings *s = f->settings;
	struct core_stats *sums = xcalloc(s->n_brokers + 1, sizeof(struct core_stats));
	int64_t now = now_ms();

	for (size_t b = 0; b < s->n_brokers; b++)
		sum_broker(f, &s->brokers[b], &sums[b]);
	for (size_t k = 0; k < sizeof(broker_counters) / sizeof(broker_counters[0]); k++) {
		family(out, broker_counters[k].name, "counter", broker_counters[k].help);
		for (size_t b = 0; b < s->n_brokers; b++) {
			if (s->brokers[b].n_routes == 0)
				continue;
			buf_appendf(out, "%s{", broker_counters[k].name);
			label(out, "broker", s->brokers[b].name);
			buf_appendf(out, "} %llu\n", (unsigned long long)field(&sums[b], broker_counters[k].offset));
		}
	}
	route_metrics(f, out);
	family(out, "oncebridge_commit_duration_seconds", "histogram",
	    "Duration of a batch's transaction, BEGIN to COMMIT, for committed batches.");
	for (size_t b = 0; b < s->n_brokers; b++)
		if (s->brokers[b].n_routes)
			histogram(out, "oncebridge_commit_duration_seconds", s->brokers[b].name, sums[b].commit_buckets,
			    CORE_LATENCY_BUCKETS, stats_latency_bounds_us, 1e-6, (double)sums[b].commit_us_sum / 1e6);
	family(out, "oncebridge_batch_size_messages", "histogram", "Messages per batch handed to the core.");
	for (size_t b = 0; b < s->n_brokers; b++)
		if (s->brokers[b].n_routes)
			histogram(out, "oncebridge_batch_size_messages", s->brokers[b].name, sums[b].batch_buckets,
			    CORE_BATCH_BUCKETS, stats_batch_bounds, 1.0, (double)sums[b].received);
	for (size_t k = 0; k < sizeof(process_metrics) / sizeof(process_metrics[0]); k++)
		process_metric(f, out, &process_metrics[k], now);
	outbox_metrics(f, out);
	deadletter_metrics(f, out);
	free(sums);
}

bool
exposition_health(const struct fleet *f, struct buf *out)
{
	int64_t now = now_ms();
	bool healthy = true;

	for (size_t i = 0; i < f->n; i++) {
		const struct child *c = &f->children[i];

		if (fleet_is_stalled(f, c, now)) {
			healthy = false;
			buf_appendf(out, "stalled: worker %d of broker \"%s\" has had messages waiting for %.1f s "
			    "without a commit\n", c->index, c->name, (double)fleet_stalled_ms(f, c, now) / 1000.0);
		}
	}
	for (size_t i = 0; i < f->n; i++) {
		const struct child *c = &f->children[i];
		int64_t ms = 0;
		const char *what = fleet_down(f, c, now, &ms);

		if (what) {
			healthy = false;
			buf_appendf(out, "down: %s %d of broker \"%s\" has been %s for %.1f s\n",
			    role_name(c->role), c->index, c->name, what, (double)ms / 1000.0);
		}
	}
	if (healthy)
		buf_appendf(out, "ok\n");
	return healthy;
}
