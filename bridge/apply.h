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

#include "bridge/message.h"

struct settings;
struct broker;
struct core;

struct core_stats {
	uint64_t received;
	uint64_t applied;      /* business SQL committed (per route) */
	uint64_t duplicates;   /* (route, event_id) seen before */
	uint64_t dead_letters; /* dead-letter rows committed */
	uint64_t deferred;     /* messages left unsettled for a retry */
	uint64_t batches;
	uint64_t transient_failures;
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

#endif
