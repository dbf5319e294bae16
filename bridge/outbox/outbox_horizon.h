/* SPDX-License-Identifier: Apache-2.0 */
/* The ordered outbox relay's publish horizon: the highest outbox id at or
 * below which no row can still commit. See outbox_horizon.c. */
#ifndef ONCEBRIDGE_OUTBOX_HORIZON_H
#define ONCEBRIDGE_OUTBOX_HORIZON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A transaction that held a write lock on oncebridge.outbox at a probe. */
struct outbox_holder {
	char vxid[40];      /* pg_locks.virtualtransaction: unique per transaction */
	int pid;            /* its backend, 0 for a prepared transaction */
	int64_t floor;      /* every id it drew (or will draw) is at least this */
	int64_t since_ms;   /* when a probe first saw it */
	bool seen;          /* seen by the probe being read */
	bool warned;
};

struct outbox_horizon {
	struct outbox_holder *h;
	size_t n, cap;
	int64_t last_top;   /* highest id seen by any probe, -1 before the first */
	int64_t safe;       /* every row with an id up to here committed or aborted */
	int64_t top;        /* highest id seen by the last probe */
};

/* Forget everything (a new database session): the next probe starts over. */
void outbox_horizon_reset(struct outbox_horizon *hz);
void outbox_horizon_free(struct outbox_horizon *hz);
/* A probe, in three steps: begin; one call of outbox_horizon_saw per lock
 * holder; end with top, the highest outbox id visible to the probe's snapshot,
 * which was taken before the locks were read. Returns the new safe id. */
void outbox_horizon_begin(struct outbox_horizon *hz);
void outbox_horizon_saw(struct outbox_horizon *hz, const char *vxid, int pid, int64_t now_ms);
int64_t outbox_horizon_end(struct outbox_horizon *hz, int64_t top);
/* True when a holder keeps ids up to the last probe's top from being safe. */
bool outbox_horizon_held(const struct outbox_horizon *hz);
/* A holder that has kept the horizon back for at least ms and was not
 * returned before (it is marked warned), or NULL. */
const struct outbox_holder *outbox_horizon_stuck(struct outbox_horizon *hz, int64_t now_ms, int64_t ms);

#endif
