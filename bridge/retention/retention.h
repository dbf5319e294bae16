/* SPDX-License-Identifier: Apache-2.0 */
/* Retention: pruning of processed_events rows and of dead letters older
 * than their configured windows, in a maintenance process of the
 * supervisor. */
#ifndef ONCEBRIDGE_RETENTION_H
#define ONCEBRIDGE_RETENTION_H

#include <stdint.h>

#include <libpq-fe.h>

struct settings;
struct dl_waiting_board;

/* Run sql, a DELETE of at most $2 rows older than $1 seconds, until it
 * deletes fewer than batch rows (or *stop is set); returns the number
 * deleted, or -1 when a statement failed (logged, naming table). */
int64_t retention_delete_batches(PGconn *conn, const char *sql, const char *table, int64_t window_s, int64_t batch,
    volatile int *stop);

/* Delete expired rows in batches of batch rows until none is left (or
 * *stop is set); returns the number deleted, or -1 when a statement
 * failed (logged). */
int64_t retention_prune(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop);

/* The same for dead letters older than window_s (deadletter_prune.c). */
int64_t retention_prune_dead_letters(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop);

/* The maintenance process until SIGTERM: prune every
 * retention.interval_s when retention.dedupe_window_s or
 * retention.dead_letter_window_s is set, and count the dead letters
 * waiting into waiting (NULL: not) every RETENTION_COUNT_MS for the
 * metrics. Returns its exit status. */
#define RETENTION_COUNT_MS 10000
int retention_main(const struct settings *s, struct dl_waiting_board *waiting);

#endif
