/* SPDX-License-Identifier: Apache-2.0 */
/* What the two halves of the core share: apply.c (the core's life, the
 * items of a batch, the choice of transaction) and apply_tx.c (the
 * transactions themselves). Not for adapters: they use bridge/core/apply.h. */
#ifndef ONCEBRIDGE_APPLY_INT_H
#define ONCEBRIDGE_APPLY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "bridge/core/apply.h"
#include "bridge/core/failure.h"
#include "bridge/core/source.h"
#include "bridge/common/util.h"

#define NO_ROUTE ((size_t)-1)

enum item_state {
	IT_PENDING,  /* has an event ID, to be claimed */
	IT_NEW,      /* claimed in this transaction, business SQL to run */
	IT_DUP,      /* claimed before: no effect */
	IT_APPLIED,  /* business SQL ran in this transaction */
	IT_POISON,   /* to be dead-lettered, not claimed yet */
	IT_DEAD,     /* dead letter written in this transaction */
	IT_DEFER,    /* left for a redelivery */
};

struct item {
	size_t msg;
	size_t route;          /* index into broker routes, NO_ROUTE when none matched */
	char *event_id;        /* NULL when the message has none */
	enum item_state state;
	char *reason;
	char sqlstate[6];
	char *detail;
	int attempts;
	struct value *values;  /* business SQL parameters */
};

struct core {
	const struct settings *settings;
	const struct broker *broker;
	struct limits limits;
	PGconn *conn;
	struct core_stats own_stats, *stats;
	struct core_route_stats *own_routes, *routes; /* one per route of the broker */
	size_t n_routes;
	core_tx_hook tx_hook;
	void *tx_hook_arg;
	struct attempts *attempts;   /* failed-attempt counts (bridge/core/attempts.h) */
	uint64_t attempts_evicted;   /* evictions already logged */
	struct buf arr_consumers, arr_ids;
};

/* Result of one statement: FAILURE_NONE or a class, with the SQLSTATE and
 * message kept for the caller. */
struct stmt_result {
	enum failure_class failure;
	char sqlstate[6];
	char *message;
};

void stmt_result_clear(struct stmt_result *sr);

/* Failed attempts of the event of it so far, counting this one and at
 * least the deliveries of m the broker reports. */
int attempt_bump(struct core *c, const struct item *it, const struct message *m);

/* The transactions (apply_tx.c). Each returns FAILURE_NONE when committed,
 * FAILURE_RETRY to ask for tx_plain with savepoints, or FAILURE_TRANSIENT.
 * tx_plain writes dead letters and runs the transaction hook; tx_pipelined
 * takes a batch in two round trips; tx_single one item in one. */
enum failure_class tx_plain(struct core *c, const struct message *msgs, struct item *items, size_t n,
    bool savepoints, struct stmt_result *sr);
enum failure_class tx_pipelined(struct core *c, struct item *items, size_t n, struct stmt_result *sr);
enum failure_class tx_single(struct core *c, struct item *it, struct stmt_result *sr);

#endif
