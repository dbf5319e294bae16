/* Retention: pruning of processed_events rows and of dead letters older
 * than their configured windows, in a maintenance process of the
 * supervisor. */
#ifndef ONCEBRIDGE_RETENTION_H
#define ONCEBRIDGE_RETENTION_H

#include <stdint.h>

#include <libpq-fe.h>

struct settings;

/* Delete expired rows in batches of batch rows until none is left (or
 * *stop is set); returns the number deleted, or -1 when a statement
 * failed (logged). */
int64_t retention_prune(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop);

/* The same for dead letters older than window_s (deadletter_prune.c). */
int64_t retention_prune_dead_letters(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop);

/* The maintenance process: prune every retention.interval_s until
 * SIGTERM. Returns its exit status. */
int retention_main(const struct settings *s);

#endif
