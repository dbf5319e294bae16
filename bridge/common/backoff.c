/* SPDX-License-Identifier: Apache-2.0 */
/* Capped exponential backoff with "equal jitter", so that many workers
 * reconnecting after one outage do not do so in lockstep. */
#include "config.h"

#include <stdlib.h>

#include "bridge/common/backoff.h"
#include "bridge/common/log.h"
#include "bridge/common/util.h"

void
backoff_init(struct backoff *b, int64_t initial_ms, int64_t max_ms)
{
	b->initial_ms = initial_ms > 0 ? initial_ms : 1;
	b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
	b->current_ms = b->initial_ms;
}

int64_t
backoff_next(struct backoff *b)
{
	int64_t half = b->current_ms / 2;
	int64_t delay = half + (half > 0 ? random() % (half + 1) : 0);

	if (delay < 1)
		delay = 1;
	b->current_ms = b->current_ms * 2 > b->max_ms ? b->max_ms : b->current_ms * 2;
	return delay;
}

void
backoff_reset(struct backoff *b)
{
	b->current_ms = b->initial_ms;
}

void
backoff_wait(struct backoff *b, const char *what, volatile int *stop)
{
	int64_t delay = backoff_next(b);

	log_debug("reconnecting to %s in %lld ms", what, (long long)delay);
	sleep_ms_unless(delay, stop);
}
