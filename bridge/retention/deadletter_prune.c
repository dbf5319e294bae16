/* SPDX-License-Identifier: Apache-2.0 */
/* Dead-letter retention: with retention.dead_letter_window_s set, the
 * retention process deletes dead letters older than the window, replayed
 * or not, so that a publisher sending poison cannot fill the database
 * over time (the payload cap, limits.dead_letter_payload, bounds each
 * row). Each DELETE takes at most retention.batch_size of the oldest rows,
 * found through the created_at index of migration 5, in its own short
 * transaction. Nothing else depends on a dead letter, so no horizon
 * applies: the window is the operator's promise of how long a poison
 * message stays inspectable and replayable. */
#include "config.h"

#include "bridge/retention/retention.h"

#define SQL_PRUNE_DEAD_LETTERS \
	"DELETE FROM oncebridge.dead_letters WHERE id IN (" \
	"  SELECT id FROM oncebridge.dead_letters" \
	"  WHERE created_at < now() - make_interval(secs => $1::double precision)" \
	"  ORDER BY created_at LIMIT $2::integer)"

int64_t
retention_prune_dead_letters(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop)
{
	return retention_delete_batches(conn, SQL_PRUNE_DEAD_LETTERS, "dead_letters", window_s, batch, stop);
}
