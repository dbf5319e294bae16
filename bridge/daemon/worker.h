/* SPDX-License-Identifier: Apache-2.0 */
/* A broker's child process: an inbound worker (one broker connection, its
 * adapter and its core) or an outbox relay (bridge/outbox/relay.h). Each role
 * keeps its own state beside what both share. */
#ifndef ONCEBRIDGE_WORKER_H
#define ONCEBRIDGE_WORKER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/apply.h"
#include "bridge/common/backoff.h"
#include "bridge/daemon/role.h"

struct settings;
struct broker;
struct core;
struct core_stats;
struct relay_stats;
struct board_slot;
struct horizon;

struct worker {
	const struct settings *settings;
	const struct broker *broker;
	enum role role;            /* ROLE_CONSUMER or ROLE_RELAY */
	int index;                 /* number within its broker and role, 0-based */
	volatile int *stop;        /* set by SIGTERM/SIGINT: drain and return */
	union {
		struct { /* ROLE_CONSUMER */
			struct core *core;
			struct backoff db_backoff; /* waits while the database is unreachable */
			struct core_stats *shared; /* the core's counters on the status board, or NULL */
			struct horizon *horizon;   /* its redelivery horizon for retention, or NULL */
		};
		struct { /* ROLE_RELAY */
			struct relay_stats *relay_shared; /* its counters on the status board, or NULL */
		};
	};
};

/* Signals of a child process (worker, relay, retention): SIGTERM and
 * SIGINT call on_stop, SIGHUP and SIGPIPE are ignored; also seeds random()
 * for the backoff jitter. */
void child_signals(void (*on_stop)(int));

/* Runs in the forked child of role (ROLE_CONSUMER or ROLE_RELAY); returns
 * its exit status. slot: where it keeps its counters (the supervisor's
 * status board), or NULL. */
int worker_main(const struct settings *s, const struct broker *b, enum role role, int index,
    struct board_slot *slot);

/* The adapter reports its broker connection (for metrics and the
 * redelivery horizon): connected once it consumes (subscribed). */
void worker_broker_connected(struct worker *w, bool connected);

/* core_apply for the adapters, telling the redelivery horizon
 * (bridge/retention/horizon.h) that a batch is in flight; the adapter acks each
 * message whose outcome apply_settled() accepts and calls worker_acked
 * once it has written those acks. */
enum apply_status worker_apply(struct worker *w, const struct message *msgs, size_t n,
    enum apply_outcome *outcome);
void worker_acked(struct worker *w);

/* Housekeeping between deliveries, from the worker's main thread: keeps
 * the redelivery horizon moving. Cheap; call it every loop. */
void worker_tick(struct worker *w);

/* Whether the worker's database session answers now (one check, no
 * wait; reconnects once when it was lost). */
bool worker_database_ready(struct worker *w);

/* Wait until the database session is ready, backing off between tries.
 * Returns 0 when ready, -1 when asked to stop first. Called with no batch
 * outstanding, so when it had to wait, the database coming back ends a
 * stall (health.stall_timeout_ms). */
int worker_wait_for_database(struct worker *w);

#endif
