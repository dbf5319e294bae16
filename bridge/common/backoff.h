/* SPDX-License-Identifier: Apache-2.0 */
/* Capped exponential backoff with jitter. */
#ifndef ONCEBRIDGE_BACKOFF_H
#define ONCEBRIDGE_BACKOFF_H

#include <stdint.h>

struct backoff {
	int64_t initial_ms;
	int64_t max_ms;
	int64_t current_ms;
};

void backoff_init(struct backoff *b, int64_t initial_ms, int64_t max_ms);
/* The next delay: uniformly random in [current/2, current], then current
 * doubles up to max. */
int64_t backoff_next(struct backoff *b);
void backoff_reset(struct backoff *b);
/* Log "reconnecting to WHAT in N ms" and sleep the next delay, returning
 * early when *stop becomes non-zero. */
void backoff_wait(struct backoff *b, const char *what, volatile int *stop);

#endif
