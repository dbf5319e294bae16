/* SPDX-License-Identifier: Apache-2.0 */
/* The dead-letter command: "oncebridge dead-letters list|show|replay|purge". */
#ifndef ONCEBRIDGE_DEADLETTER_H
#define ONCEBRIDGE_DEADLETTER_H

#include <libpq-fe.h>

struct settings;

/* Run the command in argv[0..argc) (argv[0] is "dead-letters"); returns
 * the exit status. */
int deadletter_cli(const struct settings *s, int argc, char **argv);

/* Replay dead letter id through the core. Returns 1 when it was replayed
 * (applied, found a duplicate, or dead-lettered again), 0 when it was
 * skipped (already replayed, or not replayable: printed), -1 on a
 * database error. */
int deadletter_replay_one(const struct settings *s, PGconn *conn, const char *id);

#endif
