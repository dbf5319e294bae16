/* SPDX-License-Identifier: Apache-2.0 */
/* The status board in shared memory: one slot of plain counters per worker,
 * written by the worker's core and read by the supervisor. Counters are
 * aligned 64-bit words written by one process only, so a reader sees each
 * one whole; a sum across fields may be a moment old, which metrics and
 * stall detection tolerate. A slot's per-route counters and the dead
 * letters waiting live in mappings of their own, sized from the
 * configuration when the slot is taken. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bridge/daemon/board.h"
#include "bridge/common/log.h"

void
board_create(struct board *b, size_t n)
{
	void *p = mmap(NULL, n * sizeof(struct board_slot), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		log_error("could not map shared memory for worker counters: %s", strerror(errno));
		exit(1);
	}
	b->n = n;
	b->slots = p; /* anonymous mappings start zeroed */
}

void
board_destroy(struct board *b)
{
	if (b->slots)
		munmap(b->slots, b->n * sizeof(struct board_slot));
	b->slots = NULL;
	b->n = 0;
}

/* Zeroed shared memory of size bytes; exits on failure like board_create
 * (a fork that follows would fail as well). */
static void *
shared_area(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		log_error("could not map shared memory for worker counters: %s", strerror(errno));
		exit(1);
	}
	return p;
}

static size_t
waiting_size(size_t n)
{
	return sizeof(struct dl_waiting_board) + n * sizeof(struct dl_waiting);
}

int
board_take(struct board *b, size_t n_routes, size_t n_waiting)
{
	for (size_t i = 0; i < b->n; i++) {
		struct board_slot *s = &b->slots[i];

		if (s->used)
			continue;
		memset(s, 0, sizeof(*s));
		s->used = true;
		if (n_routes) {
			s->routes = shared_area(n_routes * sizeof(struct core_route_stats));
			s->n_routes = n_routes;
		}
		if (n_waiting) {
			s->waiting = shared_area(waiting_size(n_waiting));
			s->waiting->n = n_waiting;
		}
		return (int)i;
	}
	return -1;
}

void
board_release(struct board *b, int slot)
{
	struct board_slot *s;

	if (slot < 0 || (size_t)slot >= b->n)
		return;
	s = &b->slots[slot];
	if (s->routes)
		munmap(s->routes, s->n_routes * sizeof(struct core_route_stats));
	if (s->waiting)
		munmap(s->waiting, waiting_size(s->waiting->n));
	memset(s, 0, sizeof(*s));
}

int64_t
board_stalled_ms(const struct board *b, int slot, int64_t now)
{
	const volatile struct core_stats *st;
	int64_t since;

	if (slot < 0 || (size_t)slot >= b->n)
		return 0;
	st = &b->slots[slot].core;
	since = st->pending_since_ms;
	return since > 0 && now > since ? now - since : 0;
}
