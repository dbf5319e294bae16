/* The status board in shared memory: one slot of plain counters per worker,
 * written by the worker's core and read by the supervisor. Counters are
 * aligned 64-bit words written by one process only, so a reader sees each
 * one whole; a sum across fields may be a moment old, which metrics and
 * stall detection tolerate. */
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

int
board_take(struct board *b)
{
	for (size_t i = 0; i < b->n; i++) {
		if (!b->slots[i].used) {
			memset(&b->slots[i], 0, sizeof(b->slots[i]));
			b->slots[i].used = true;
			return (int)i;
		}
	}
	return -1;
}

void
board_release(struct board *b, int slot)
{
	if (slot >= 0 && (size_t)slot < b->n)
		memset(&b->slots[slot], 0, sizeof(b->slots[slot]));
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
