/* SPDX-License-Identifier: Apache-2.0 */
/* The idempotent-apply core shared by every adapter: for a batch of
 * messages, in one PostgreSQL transaction, claim (route, event_id) in
 * processed_events, run the business SQL of each new event, write dead
 * letters for poison, COMMIT. The core reports an outcome per message; the
 * adapter acks a message only when that outcome is not OUTCOME_DEFERRED. */
#ifndef ONCEBRIDGE_APPLY_H
#define ONCEBRIDGE_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "bridge/core/message.h"

struct settings;
struct broker;
struct core;

#define CORE_LATENCY_BUCKETS 14   /* bounds in bridge/core/stats.c */
#define CORE_BATCH_BUCKETS 10

/* Counters of one route, one per route of the broker (no cap): kept next
 * to struct core_stats, in shared memory sized from the configuration. */
struct core_route_stats {
	uint64_t applied, duplicates, dead_letters, deferred;
	int64_t last_applied_ms; /* wall clock (ms since the epoch) of the last commit with an effect; 0: none */
};

/* Plain counters; a worker keeps them in shared memory (core_share_stats)
 * so that the supervisor can serve them as metrics and see stalls. */
struct core_stats {
	uint64_t received;
	uint64_t applied;      /* business SQL committed (per route) */
	uint64_t duplicates;   /* (route, event_id) seen before */
	uint64_t dead_letters; /* dead-letter rows committed */
	uint64_t deferred;     /* messages left unsettled for a retry */
	uint64_t batches;
	uint64_t transient_failures;
	uint64_t settled;      /* messages reported settled, i.e. acked */
	int64_t pending_since_ms; /* monotonic ms since a batch waits to be applied; 0: none */
	bool db_connected;
	bool broker_connected; /* set by the adapter through worker_broker_connected() */
	uint64_t commit_us_sum;
	uint64_t commit_buckets[CORE_LATENCY_BUCKETS + 1]; /* per bucket, the last one +Inf */
	uint64_t batch_buckets[CORE_BATCH_BUCKETS + 1];
};

enum apply_status {
	APPLY_OK,        /* transaction committed; see the outcomes */
	APPLY_TRANSIENT, /* every message deferred; database connection closed if broken */
};

/* What became of one message. A message that matches several routes is
 * one item per route; its outcome is the last of its items' outcomes in
 * this order, so that nothing of it is acked while any of it waits for a
 * redelivery, and a dead letter is not hidden by another route's effect. */
enum apply_outcome {
	OUTCOME_DUPLICATE,     /* every route had it already: no effect */
	OUTCOME_APPLIED,       /* a route's business SQL committed, none dead-lettered it */
	OUTCOME_DEAD_LETTERED, /* a dead letter of it committed (poison, or no route matched) */
	OUTCOME_DEFERRED,      /* a route left it for a redelivery: not to be acked */
};

/* Whether a message with outcome o may be acked: its effect, its dead
 * letter or its earlier claim is committed. */
static inline bool
apply_settled(enum apply_outcome o)
{
	return o != OUTCOME_DEFERRED;
}

struct core *core_new(const struct settings *s, const struct broker *b);
void core_free(struct core *c);

/* Connect (or check) the database session; 0 when ready, -1 when not
 * (logged; back off and call again). */
int core_ready(struct core *c);
void core_disconnect(struct core *c);

/* Apply msgs[0..n) and set outcome[i] for each. A message whose outcome
 * is OUTCOME_DEFERRED must be redelivered (nack with requeue); every other
 * may be acked. On APPLY_TRANSIENT every message is OUTCOME_DEFERRED. */
enum apply_status core_apply(struct core *c, const struct message *msgs, size_t n, enum apply_outcome *outcome);

const struct core_stats *core_stats(const struct core *c);
/* The per-route counters, one per route of the core's broker. */
const struct core_route_stats *core_route_stats(const struct core *c);

/* fn runs inside every transaction of core_apply, right after BEGIN and
 * before the claims; when it returns false the transaction is rolled back
 * and core_apply reports APPLY_TRANSIENT. The dead-letter replay uses it to
 * release an event's claim in the transaction that applies it again. */
typedef bool (*core_tx_hook)(PGconn *conn, void *arg);
void core_set_tx_hook(struct core *c, core_tx_hook fn, void *arg);

/* Count into area and routes (shared memory set up by the supervisor,
 * routes[0..n_routes) for the broker's routes; NULL: keep the core's own)
 * from now on. Their counters go on from where they are; the per-run state
 * is reset. */
void core_share_stats(struct core *c, struct core_stats *area, struct core_route_stats *routes, size_t n_routes);

#endif
