/* SPDX-License-Identifier: Apache-2.0 */
/* Failed-attempt counts keyed by (route index, event ID) in a hash table
 * that never drops a count to make room for another while it holds fewer
 * than its capacity, which the core sets well above what a worker can have
 * in flight (prefetch and batch): however many events of a batch fail, each
 * keeps its count until it is applied, dead-lettered or found a duplicate
 * (attempts_forget). Counts of events that do not come back (taken by
 * another consumer, purged) expire after a horizon; only a table at its
 * capacity drops its oldest quarter, and says so (attempts_evicted). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bridge/core/attempts.h"
#include "bridge/common/util.h"

#define MIN_BUCKETS 64

struct attempt {
	struct attempt *next;
	size_t route;
	uint64_t hash;
	int count;
	uint64_t seq;      /* order of the last failure, for eviction */
	int64_t seen_ms;   /* time of the last failure, for expiry */
	char event_id[];
};

struct attempts {
	struct attempt **buckets;
	size_t n_buckets;  /* a power of two */
	size_t n, cap;
	int64_t horizon_ms, swept_ms;
	uint64_t seq, evicted;
};

struct attempts *
attempts_new(size_t cap, int64_t horizon_ms)
{
	struct attempts *a = xcalloc(1, sizeof(*a));

	a->n_buckets = MIN_BUCKETS;
	a->buckets = xcalloc(a->n_buckets, sizeof(struct attempt *));
	a->cap = cap > 0 ? cap : 1;
	a->horizon_ms = horizon_ms;
	return a;
}

void
attempts_free(struct attempts *a)
{
	if (a == NULL)
		return;
	for (size_t b = 0; b < a->n_buckets; b++) {
		struct attempt *e = a->buckets[b], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(a->buckets);
	free(a);
}

/* FNV-1a over the route index and the event ID */
static uint64_t
key_hash(size_t route, const char *event_id)
{
	uint64_t h = 14695981039346656037ULL;
	const unsigned char *p = (const unsigned char *)&route;

	for (size_t i = 0; i < sizeof(route); i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	for (p = (const unsigned char *)event_id; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return h;
}

/* The link that points at the entry of the key, or at the NULL ending its
 * bucket when there is none. */
static struct attempt **
find(struct attempts *a, size_t route, const char *event_id, uint64_t hash)
{
	struct attempt **link = &a->buckets[hash & (a->n_buckets - 1)];

	for (; *link; link = &(*link)->next)
		if ((*link)->hash == hash && (*link)->route == route && strcmp((*link)->event_id, event_id) == 0)
			break;
	return link;
}

static void
grow(struct attempts *a)
{
	size_t nb = a->n_buckets * 2;
	struct attempt **buckets = xcalloc(nb, sizeof(struct attempt *));

	for (size_t b = 0; b < a->n_buckets; b++) {
		struct attempt *e = a->buckets[b], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = buckets[e->hash & (nb - 1)];
			buckets[e->hash & (nb - 1)] = e;
		}
	}
	free(a->buckets);
	a->buckets = buckets;
	a->n_buckets = nb;
}

/* Remove the entries last seen before min_ms or with a sequence number up
 * to max_seq; returns how many. */
static size_t
remove_old(struct attempts *a, int64_t min_ms, uint64_t max_seq)
{
	size_t removed = 0;

	for (size_t b = 0; b < a->n_buckets; b++) {
		struct attempt **link = &a->buckets[b];

		while (*link) {
			struct attempt *e = *link;

			if (e->seen_ms < min_ms || e->seq <= max_seq) {
				*link = e->next;
				free(e);
				removed++;
			} else {
				link = &e->next;
			}
		}
	}
	a->n -= removed;
	return removed;
}

static int
seq_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* The table is full: drop the quarter of the counts that failed longest ago. */
static void
make_room(struct attempts *a)
{
	uint64_t *seqs = xcalloc(a->n + 1, sizeof(uint64_t));
	size_t k = 0;

	for (size_t b = 0; b < a->n_buckets; b++)
		for (struct attempt *e = a->buckets[b]; e; e = e->next)
			seqs[k++] = e->seq;
	qsort(seqs, k, sizeof(uint64_t), seq_cmp);
	a->evicted += remove_old(a, INT64_MIN, seqs[k / 4]);
	free(seqs);
}

int
attempts_bump(struct attempts *a, size_t route, const char *event_id, int floor, int64_t now_ms)
{
	uint64_t hash = key_hash(route, event_id);
	struct attempt **link, *e;

	if (now_ms - a->swept_ms >= a->horizon_ms / 2) {
		remove_old(a, now_ms - a->horizon_ms, 0);
		a->swept_ms = now_ms;
	}
	link = find(a, route, event_id, hash);
	e = *link;
	if (e == NULL) {
		size_t len = strlen(event_id);

		if (a->n >= a->cap) {
			make_room(a);
			link = find(a, route, event_id, hash);
		}
		e = xcalloc(1, sizeof(*e) + len + 1);
		memcpy(e->event_id, event_id, len + 1);
		e->route = route;
		e->hash = hash;
		*link = e;
		if (++a->n > a->n_buckets)
			grow(a);
	}
	e->count = e->count + 1 > floor ? e->count + 1 : floor;
	e->seq = ++a->seq;
	e->seen_ms = now_ms;
	return e->count;
}

void
attempts_forget(struct attempts *a, size_t route, const char *event_id)
{
	struct attempt **link, *e;

	if (a->n == 0)
		return;
	link = find(a, route, event_id, key_hash(route, event_id));
	e = *link;
	if (e == NULL)
		return;
	*link = e->next;
	free(e);
	a->n--;
}

size_t
attempts_held(const struct attempts *a)
{
	return a->n;
}

uint64_t
attempts_evicted(const struct attempts *a)
{
	return a->evicted;
}
