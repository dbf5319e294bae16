/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the ordered relay's horizon (bridge/outbox/outbox_horizon.c): which
 * outbox ids are settled, given what successive probes saw. */
#include "config.h"

#include <stdlib.h>

#include "bridge/outbox/outbox_horizon.h"
#include "tests/unit/tap.h"

/* One probe: top, and the lock holders in a NULL-terminated list. */
static int64_t
probe(struct outbox_horizon *hz, int64_t top, int64_t now_ms, const char *const *holders)
{
	outbox_horizon_begin(hz);
	for (int i = 0; holders[i]; i++)
		outbox_horizon_saw(hz, holders[i], 100 + i, now_ms);
	return outbox_horizon_end(hz, top);
}

int
main(void)
{
	struct outbox_horizon hz = { 0 };
	const char *none[] = { NULL };
	const char *a[] = { "3/7", NULL };
	const char *ab[] = { "3/7", "4/9", "4/9", NULL };
	const char *b[] = { "4/9", NULL };
	const struct outbox_holder *h;

	outbox_horizon_reset(&hz);
	is_int(probe(&hz, 10, 0, none), 10, "no writer: everything visible is settled");
	is_int(probe(&hz, 15, 0, a), 10, "a new writer may hold ids above the last top: 11..15 wait");
	ok(outbox_horizon_held(&hz), "the writer holds the horizon back");
	is_int(probe(&hz, 20, 100, ab), 10, "a second writer does not move it while the first runs");
	is_int((int64_t)hz.n, 2, "a holder listed twice counts once");
	is_int(probe(&hz, 25, 200, b), 15, "the first writer ended: up to the second's floor");
	is_int(probe(&hz, 30, 300, none), 30, "both ended: everything visible");
	ok(!outbox_horizon_held(&hz), "nothing holds the horizon back");
	is_int(probe(&hz, 12, 400, none), 30, "the horizon never moves back (rows pruned)");

	outbox_horizon_reset(&hz);
	is_int(probe(&hz, 40, 0, a), 0, "a writer seen at the first probe may hold any id");
	is_int(probe(&hz, 45, 1000, a), 0, "and holds everything until it ends");
	ok(outbox_horizon_stuck(&hz, 5000, 10000) == NULL, "not reported before the delay");
	h = outbox_horizon_stuck(&hz, 10000, 10000);
	ok(h && h->pid == 100, "reported once it held the horizon for the delay");
	ok(outbox_horizon_stuck(&hz, 20000, 10000) == NULL, "and reported once");
	is_int(probe(&hz, 45, 11000, none), 45, "it ended: everything visible");

	outbox_horizon_reset(&hz);
	is_int(probe(&hz, 50, 0, none), 50, "after a reset, no writer: everything visible");
	is_int(probe(&hz, 50, 0, b), 50, "a writer that drew nothing yet holds nothing back");
	ok(!outbox_horizon_held(&hz), "its floor is above the top");
	outbox_horizon_free(&hz);
	return tap_done();
}
