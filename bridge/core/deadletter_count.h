/* SPDX-License-Identifier: Apache-2.0 */
/* The dead letters waiting (not replayed), counted by route and reason
 * class for the metrics: one process (the maintenance process,
 * bridge/retention/retention.c) counts them now and then into shared
 * memory that the supervisor serves, so that a scrape never queries the
 * database. */
#ifndef ONCEBRIDGE_DEADLETTER_COUNT_H
#define ONCEBRIDGE_DEADLETTER_COUNT_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

struct settings;

/* Why a dead letter was written, coarsely. */
enum dl_class {
	DL_CLASS_INVALID,  /* the message itself: unparsable, no usable event ID or parameter, too large */
	DL_CLASS_SQL,      /* its business SQL failed (a SQLSTATE is recorded) */
	DL_CLASS_UNROUTED, /* no route matched */
	DL_CLASSES
};

/* The class's value in the "class" label. */
const char *dl_class_name(enum dl_class k);

struct dl_waiting {
	int64_t n[DL_CLASSES];
};

/* In shared memory: one row per route of each broker in the order of the
 * configuration, then one for the broker's messages no route matched. */
struct dl_waiting_board {
	int64_t counted_ms; /* wall clock of the last count; 0: not counted yet */
	size_t n;
	struct dl_waiting rows[];
};

/* Rows for s, and the row of route r of broker b (r == n_routes: no route). */
size_t dl_waiting_rows(const struct settings *s);
size_t dl_waiting_row(const struct settings *s, size_t b, size_t r);

/* Count into board (sized for s) in one query; 0, or -1 after logging why.
 * Dead letters of brokers or routes no longer configured are left out. */
int dl_count_waiting(PGconn *conn, const struct settings *s, struct dl_waiting_board *board);

#endif
