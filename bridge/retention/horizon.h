/* SPDX-License-Identifier: Apache-2.0 */
/* A consumer worker's redelivery horizon (oncebridge.consumer_horizons):
 * the point before which every event it claimed has been acked on a broker
 * connection that stayed up afterwards, with the redeliveries of its
 * earlier connections settled. Retention prunes no key of a route claimed
 * after the horizon of any of the route's live workers, so a broker outage
 * delays pruning instead of letting a key go while its message may still
 * be redelivered. */
#ifndef ONCEBRIDGE_HORIZON_H
#define ONCEBRIDGE_HORIZON_H

#include <stdbool.h>
#include <stddef.h>

struct settings;
struct broker;
struct horizon;

/* The horizon of worker index of broker b, or NULL when retention is off
 * or b has no routes. Adapters reach it through the worker_* functions
 * (bridge/daemon/worker.h); every call below is safe from any thread. */
struct horizon *horizon_new(const struct settings *s, const struct broker *b, int index);
void horizon_free(struct horizon *h);

/* The broker connection came up (after subscribing) or went away. */
void horizon_connected(struct horizon *h, bool up);

/* A batch of n messages is being applied; fresh: one of them is not
 * flagged as a redelivery. */
void horizon_applying(struct horizon *h, size_t n, bool fresh);

/* The batch was given back without any claim (nacked, or to be retried). */
void horizon_released(struct horizon *h);

/* The batch was acked (its acks written to the connection). */
void horizon_acked(struct horizon *h);

/* Advance the horizon when the rules allow and, every few seconds, write
 * it with a heartbeat on the horizon's own database session. Call it often
 * from the worker's main thread; it does nothing most of the time. */
void horizon_tick(struct horizon *h);

#endif
