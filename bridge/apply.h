/* The idempotent-apply core shared by every adapter: for a batch of
 * messages, in one PostgreSQL transaction, claim (route, event_id) in
 * processed_events, run the business SQL of each new event, write dead
 * letters for poison, COMMIT. The adapter acks a message only when the core
 * marks it settled. */
#ifndef ONCEBRIDGE_APPLY_H
#define ONCEBRIDGE_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "bridge/message.h"

struct settings;
struct broker;
struct core;

/* Routes past this many per broker are counted in the broker totals only. */
#define CORE_STATS_ROUTES 32
#define CORE_LATENCY_BUCKETS 14   /* bounds in bridge/stats.c */
#define CORE_BATCH_BUCKETS 10

struct core_route_stats {
	uint64_t applied, duplicates, dead_letters, deferred;
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
	struct core_route_stats routes[CORE_STATS_ROUTES];
};

enum apply_status {
	APPLY_OK,        /* transaction committed; see settled[] */
	APPLY_TRANSIENT, /* nothing settled; database connection closed if broken */
};

struct core *core_new(const struct settings *s, const struct broker *b);
void core_free(struct core *c);

/* Connect (or check) the database session; 0 when ready, -1 when not
 * (logged; back off and call again). */
int core_ready(struct core *c);
void core_disconnect(struct core *c);

/* Apply msgs[0..n). On APPLY_OK, settled[i] tells whether message i may be
 * acked (its effect or its dead letter is committed, or it is a duplicate);
 * an unsettled message must be redelivered (nack with requeue). On
 * APPLY_TRANSIENT no message is settled. */
enum apply_status core_apply(struct core *c, const struct message *msgs, size_t n, bool *settled);

const struct core_stats *core_stats(const struct core *c);

/* fn runs inside every transaction of core_apply, right after BEGIN and
 * before the claims; when it returns false the transaction is rolled back
 * and core_apply reports APPLY_TRANSIENT. The dead-letter replay uses it to
 * release an event's claim in the transaction that applies it again. */
typedef bool (*core_tx_hook)(PGconn *conn, void *arg);
void core_set_tx_hook(struct core *c, core_tx_hook fn, void *arg);

/* Count into area (shared memory set up by the supervisor) from now on.
 * Its counters go on from where they are; its per-run state is reset. */
void core_share_stats(struct core *c, struct core_stats *area);

#endif
