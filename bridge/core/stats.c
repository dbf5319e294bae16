/* SPDX-License-Identifier: Apache-2.0 */
/* Histogram buckets for the core's counters: a commit's latency and a
 * batch's size each land in one bucket; the metrics endpoint sums them
 * into Prometheus's cumulative buckets. */
#include "config.h"

#include "bridge/core/stats.h"

const int64_t stats_latency_bounds_us[CORE_LATENCY_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

const int64_t stats_batch_bounds[CORE_BATCH_BUCKETS] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000,
};

static size_t
bucket(const int64_t *bounds, size_t n, int64_t v)
{
	size_t i = 0;

	while (i < n && v > bounds[i])
		i++;
	return i; /* n: +Inf */
}

void
stats_observe_commit(struct core_stats *st, int64_t us)
{
	if (us < 0)
		us = 0;
	st->commit_us_sum += (uint64_t)us;
	st->commit_buckets[bucket(stats_latency_bounds_us, CORE_LATENCY_BUCKETS, us)]++;
}

void
stats_observe_batch(struct core_stats *st, size_t n)
{
	st->batch_buckets[bucket(stats_batch_bounds, CORE_BATCH_BUCKETS, (int64_t)n)]++;
}
