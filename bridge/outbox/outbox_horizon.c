/* SPDX-License-Identifier: Apache-2.0 */
/* The ordered outbox relay's publish horizon (not the retention's
 * redelivery horizon, horizon.c). Outbox ids come from a sequence when a row
 * is inserted, not when its transaction commits, so a row can become
 * visible after rows with higher ids were published. An ordered relay
 * publishes only ids up to the horizon: the highest id at or below which
 * every row has committed or aborted for good.
 *
 * A transaction takes its lock on oncebridge.outbox (RowExclusiveLock, as
 * INSERT does) before it draws an id and keeps it until it ends. The relay
 * probes in one statement: top, the highest id visible to the statement's
 * snapshot, then the lock holders (pg_locks, read after the snapshot).
 * A holder not seen by the previous probe took its lock after that probe
 * read pg_locks, so every id it draws is above the previous probe's top:
 * that is its floor. A holder seen at the first probe may hold any id
 * (floor 0). A transaction that drew an id up to top and is not a holder
 * has ended. So every id up to min(top, each holder's floor - 1) is
 * settled, and a later snapshot sees each of those rows that committed. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/outbox/outbox_horizon.h"
#include "bridge/common/util.h"

void
outbox_horizon_reset(struct outbox_horizon *hz)
{
	hz->n = 0;
	hz->last_top = -1;
	hz->safe = 0;
	hz->top = 0;
}

void
outbox_horizon_free(struct outbox_horizon *hz)
{
	free(hz->h);
	memset(hz, 0, sizeof(*hz));
	outbox_horizon_reset(hz);
}

void
outbox_horizon_begin(struct outbox_horizon *hz)
{
	for (size_t i = 0; i < hz->n; i++)
		hz->h[i].seen = false;
}

void
outbox_horizon_saw(struct outbox_horizon *hz, const char *vxid, int pid, int64_t now_ms)
{
	struct outbox_holder *h;

	for (size_t i = 0; i < hz->n; i++)
		if (strcmp(hz->h[i].vxid, vxid) == 0) {
			hz->h[i].seen = true;
			return;
		}
	if (hz->n == hz->cap) {
		hz->cap = hz->cap ? hz->cap * 2 : 16;
		hz->h = xrealloc(hz->h, hz->cap * sizeof(*hz->h));
	}
	h = &hz->h[hz->n++];
	memset(h, 0, sizeof(*h));
	snprintf(h->vxid, sizeof(h->vxid), "%s", vxid);
	h->pid = pid;
	h->floor = hz->last_top + 1;
	h->since_ms = now_ms;
	h->seen = true;
}

int64_t
outbox_horizon_end(struct outbox_horizon *hz, int64_t top)
{
	int64_t safe = top;
	size_t k = 0;

	for (size_t i = 0; i < hz->n; i++) {
		if (!hz->h[i].seen)
			continue; /* ended */
		if (hz->h[i].floor - 1 < safe)
			safe = hz->h[i].floor - 1;
		hz->h[k++] = hz->h[i];
	}
	hz->n = k;
	hz->top = top;
	if (top > hz->last_top)
		hz->last_top = top;
	if (safe > hz->safe)
		hz->safe = safe;
	return hz->safe;
}

bool
outbox_horizon_held(const struct outbox_horizon *hz)
{
	for (size_t i = 0; i < hz->n; i++)
		if (hz->h[i].floor <= hz->top)
			return true;
	return false;
}

const struct outbox_holder *
outbox_horizon_stuck(struct outbox_horizon *hz, int64_t now_ms, int64_t ms)
{
	for (size_t i = 0; i < hz->n; i++) {
		struct outbox_holder *h = &hz->h[i];

		if (!h->warned && h->floor <= hz->top && now_ms - h->since_ms >= ms) {
			h->warned = true;
			return h;
		}
	}
	return NULL;
}
