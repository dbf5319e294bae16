/* SPDX-License-Identifier: Apache-2.0 */
/* The outbox relay: publishes committed outbox rows to one broker. */
#ifndef ONCEBRIDGE_RELAY_H
#define ONCEBRIDGE_RELAY_H

#include <stdbool.h>
#include <stdint.h>

struct worker;

/* What a relay reports to the supervisor's status board for metrics. */
struct relay_stats {
	uint64_t published, confirmed, unconfirmed;
	int64_t pending;      /* rows waiting for this destination; -1: not known yet */
	int64_t oldest_ms;    /* age of the oldest of them */
	bool active;          /* ordered mode: holds the destination's lock */
};

/* Relay until w->stop is set; returns the worker's exit status. */
int relay_run(struct worker *w);

#endif
