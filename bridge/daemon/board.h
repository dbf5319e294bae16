/* SPDX-License-Identifier: Apache-2.0 */
/* The status board: a small array in shared memory, created by the
 * supervisor before it forks, where each worker keeps its counters (struct
 * core_stats) so that the supervisor can serve them as metrics and notice a
 * worker that has stalled. */
#ifndef ONCEBRIDGE_BOARD_H
#define ONCEBRIDGE_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/apply.h"
#include "bridge/core/deadletter_count.h"
#include "bridge/outbox/relay.h"

struct board_slot {
	bool used;
	struct core_stats core;   /* inbound worker */
	struct relay_stats relay; /* outbox relay */
	/* Mapped by the supervisor when it takes the slot, sized from the
	 * configuration, and shared with the child it forks afterwards. */
	struct core_route_stats *routes; /* inbound worker: one per route of its broker */
	size_t n_routes;
	struct dl_waiting_board *waiting; /* maintenance process: dead letters waiting */
};

struct board {
	size_t n;
	struct board_slot *slots;
};

/* Map n zeroed slots shared with every process forked afterwards; exits
 * on failure (at start-up only). */
void board_create(struct board *b, size_t n);
void board_destroy(struct board *b);

/* Index of a free slot, marked used and zeroed, with n_routes route
 * counters and n_waiting rows of dead letters waiting mapped (0: none);
 * -1 when all are taken. */
int board_take(struct board *b, size_t n_routes, size_t n_waiting);
void board_release(struct board *b, int slot);

/* Milliseconds slot has had a batch waiting to be applied without a
 * commit, 0 when it has none. */
int64_t board_stalled_ms(const struct board *b, int slot, int64_t now);

#endif
