/* SPDX-License-Identifier: Apache-2.0 */
/* Failed-attempt counts of events whose business SQL failed with an error
 * that is neither transient nor poison, keyed by (route, event ID), so
 * that such an event is dead-lettered after retry.max_attempts. */
#ifndef ONCEBRIDGE_ATTEMPTS_H
#define ONCEBRIDGE_ATTEMPTS_H

#include <stddef.h>
#include <stdint.h>

struct attempts;

/* A table holding at most cap counts; a count whose event has not failed
 * again for horizon_ms is forgotten. */
struct attempts *attempts_new(size_t cap, int64_t horizon_ms);
void attempts_free(struct attempts *a);

/* Count one more failure of (route, event_id) at now_ms and return the
 * failures so far, this one included, and at least floor (what the broker
 * says about earlier deliveries). */
int attempts_bump(struct attempts *a, size_t route, const char *event_id, int floor, int64_t now_ms);

/* Drop the count of (route, event_id): its event is settled. */
void attempts_forget(struct attempts *a, size_t route, const char *event_id);

/* Counts held, and counts dropped so far because the table was full. */
size_t attempts_held(const struct attempts *a);
uint64_t attempts_evicted(const struct attempts *a);

#endif
