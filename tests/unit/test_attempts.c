/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the failed-attempt counts (bridge/core/attempts.c): a failure
 * wider than any fixed slot count keeps every count, routes do not share
 * counts, settled events are forgotten, the broker's count is a floor,
 * counts expire, and only a full table evicts. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>

#include "bridge/core/attempts.h"
#include "tests/unit/tap.h"

#define WIDE 5000

static const char *
id(int i)
{
	static char buf[32];

	snprintf(buf, sizeof(buf), "ev-%05d", i);
	return buf;
}

int
main(void)
{
	struct attempts *a = attempts_new(4 * WIDE, 60000);
	int64_t t = 1000;
	bool all = true;

	/* three rounds over 5000 failing events: every one reaches 3 */
	for (int round = 1; round <= 3; round++)
		for (int i = 0; i < WIDE; i++)
			all &= attempts_bump(a, 0, id(i), 1, t++) == round;
	ok(all, "%d distinct failing events each reach attempt 3 in three rounds", WIDE);
	is_int(attempts_held(a), WIDE, "one count per event");
	is_int(attempts_evicted(a), 0, "nothing evicted below the capacity");

	/* the same event ID on another route has its own count */
	is_int(attempts_bump(a, 1, id(7), 1, t++), 1, "the same event ID on another route starts at 1");
	is_int(attempts_bump(a, 0, id(7), 1, t++), 4, "and leaves the first route's count alone");

	/* settled: forgotten */
	attempts_forget(a, 0, id(7));
	attempts_forget(a, 0, "never-seen");
	is_int(attempts_bump(a, 0, id(7), 1, t++), 1, "a forgotten event starts over");
	is_int(attempts_held(a), WIDE + 1, "forgetting removes only that count");

	/* the broker's delivery count is a floor */
	is_int(attempts_bump(a, 2, "q", 5, t++), 5, "a floor of 5 (x-delivery-count 4) counts as attempt 5");
	is_int(attempts_bump(a, 2, "q", 1, t++), 6, "the next failure counts on from there");
	is_int(attempts_bump(a, 2, "q", 3, t++), 7, "a lower floor does not lower the count");
	attempts_free(a);

	/* expiry: a count not bumped within the horizon is dropped */
	a = attempts_new(100, 1000);
	attempts_bump(a, 0, "old", 1, 10000);
	attempts_bump(a, 0, "old", 1, 10100);
	attempts_bump(a, 0, "recent", 1, 10900);
	is_int(attempts_bump(a, 0, "other", 1, 11200), 1, "another event fails after the horizon");
	is_int(attempts_bump(a, 0, "recent", 1, 11300), 2, "a count bumped within the horizon stays");
	is_int(attempts_bump(a, 0, "old", 1, 11400), 1, "a count older than the horizon was dropped");
	is_int(attempts_evicted(a), 0, "expiry is not eviction");
	attempts_free(a);

	/* a full table drops its oldest quarter, not the newest counts */
	a = attempts_new(100, 1000000);
	for (int i = 0; i < 100; i++)
		attempts_bump(a, 0, id(i), 1, 1);
	attempts_bump(a, 0, id(99), 1, 2);
	attempts_bump(a, 0, "one-more", 1, 3);
	ok(attempts_evicted(a) >= 25 && attempts_evicted(a) <= 26, "a full table evicts a quarter (%llu)",
	    (unsigned long long)attempts_evicted(a));
	ok(attempts_held(a) <= 100, "and stays within its capacity (%zu)", attempts_held(a));
	is_int(attempts_bump(a, 0, id(99), 1, 4), 3, "the most recent count survives");
	is_int(attempts_bump(a, 0, id(0), 1, 5), 1, "the oldest one was evicted");
	attempts_free(a);
	return tap_done();
}
