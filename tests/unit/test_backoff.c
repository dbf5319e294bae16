/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the capped exponential backoff with jitter. */
#include "config.h"

#include <stdlib.h>

#include "bridge/common/backoff.h"
#include "tests/unit/tap.h"

int
main(void)
{
	struct backoff b;
	int64_t prev_cap = 100;
	int in_bounds = 1, capped = 1, varied = 0;
	int64_t first = -1;

	srandom(1);
	backoff_init(&b, 100, 5000);
	for (int i = 0; i < 20; i++) {
		int64_t cap = b.current_ms;
		int64_t d = backoff_next(&b);

		in_bounds &= d >= cap / 2 && d <= cap;
		capped &= d <= 5000;
		prev_cap = cap;
	}
	ok(in_bounds, "every delay lies in [current/2, current]");
	ok(capped, "no delay exceeds the cap");
	is_int(prev_cap, 5000, "the window grows to the cap");
	backoff_reset(&b);
	is_int(b.current_ms, 100, "reset returns to the initial delay");
	for (int i = 0; i < 50; i++) {
		struct backoff c;
		int64_t d;

		backoff_init(&c, 1000, 1000);
		d = backoff_next(&c);
		if (first < 0)
			first = d;
		varied |= d != first;
	}
	ok(varied, "jitter spreads equal backoffs apart");
	return tap_done();
}
