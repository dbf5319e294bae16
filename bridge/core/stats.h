/* SPDX-License-Identifier: Apache-2.0 */
/* Histogram buckets of the core's counters (struct core_stats): commit
 * latency and batch size. The bounds live here so that the core and the
 * metrics endpoint agree on them. */
#ifndef ONCEBRIDGE_STATS_H
#define ONCEBRIDGE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/core/apply.h"

/* Upper bounds (inclusive) of the buckets, in microseconds and messages. */
extern const int64_t stats_latency_bounds_us[CORE_LATENCY_BUCKETS];
extern const int64_t stats_batch_bounds[CORE_BATCH_BUCKETS];

void stats_observe_commit(struct core_stats *st, int64_t us);
void stats_observe_batch(struct core_stats *st, size_t n);

#endif
