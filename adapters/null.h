/* SPDX-License-Identifier: Apache-2.0 */
/* The null adapter: a broker in memory, so that the core (bridge/core/apply.h)
 * can be tested against a real PostgreSQL without any broker, as
 * OpenSMTPD's queue_null and chrony's refclock drivers stand in for the
 * real thing. It is linked into the test programs only, not into the
 * daemon: a test calls null_register() before settings_load() and names
 * it in a broker file,
 *
 *   broker = { name = "mem"; type = "null"; url = "null:"; batch_size = 50; };
 *   routes = ( { name = "r1"; source = "q1"; event_id = "json:id"; sql = "..."; params = [...]; } );
 *
 * A route with "source" takes the messages enqueued with that source (as
 * an AMQP route takes its queue's); one without takes every message.
 * Topic levels are split at '.'.
 *
 * Deliveries wait in one queue per process. null_step() hands the oldest
 * (at most batch_size) to the core as one batch through worker_apply(),
 * the path every adapter takes; it acks each message whose outcome is
 * settled and gives the others back at the head of the queue, marked
 * redelivered (a nack with requeue), and records what became of each
 * message. run() does the same until the queue is empty or the worker is
 * asked to stop, backing off after a batch left anything unsettled.
 * May call bridge/core/apply.h, bridge/daemon/worker.h, bridge/config/settings.h,
 * bridge/config/cfgtable.h, bridge/common/backoff.h and bridge/common/util.h. */
#ifndef ONCEBRIDGE_NULL_H
#define ONCEBRIDGE_NULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapters/adapter.h"
#include "bridge/core/apply.h"
#include "bridge/config/settings.h"
#include "bridge/daemon/worker.h"

/* The null part of a broker: at most this many messages per batch. */
struct null_broker_cfg {
	int64_t batch_size;
};

/* The null part of a route. */
struct null_route_cfg {
	char *source; /* NULL: every message */
};

/* What became of one enqueued message so far. */
struct null_record {
	int deliveries;             /* times handed to the core */
	int acks;                   /* times acked (more than one would be a bug) */
	int nacks;                  /* times given back for a redelivery */
	enum apply_outcome outcome; /* of the last delivery */
	enum apply_status status;   /* of the last delivery's batch */
};

extern const struct adapter null_adapter;

/* Make type "null" known to the configuration loader (adapter_register). */
void null_register(void);

/* Queue a copy of m (every string and the payload are copied) at the
 * tail; returns the message's number, 0 for the first since the last
 * null_reset(). */
size_t null_enqueue(const struct message *m);

/* Messages waiting for a delivery. */
size_t null_queued(void);

/* Deliver one batch (see above) to the core of w. Returns how many
 * messages it held, 0 when the queue was empty; *st (when not NULL) gets
 * the batch's status. */
size_t null_step(struct worker *w, enum apply_status *st);

/* The record of message number id, NULL when there is none. */
const struct null_record *null_record(size_t id);

/* Forget every message and record. */
void null_reset(void);

/* A consumer worker of broker b as worker_main() builds one, with its own
 * core and without a status board or redelivery horizon; stop is the flag
 * run() watches. null_worker_close() frees the core. */
void null_worker_open(struct worker *w, const struct settings *s, const struct broker *b, volatile int *stop);
void null_worker_close(struct worker *w);

#endif
