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

#include <stdio.h>
#include <stdlib.h>

#include "bridge/common/log.h"
#include "bridge/common/util.h"
#include "bridge/core/db.h"
#include "bridge/core/roundtrip.h"
#include "bridge/retention/retention.h"

#define SQL_PRUNE_DEAD_LETTERS \
	"DELETE FROM oncebridge.dead_letters WHERE id IN (" \
	"  SELECT id FROM oncebridge.dead_letters" \
	"  WHERE created_at < now() - make_interval(secs => $1::double precision)" \
	"  ORDER BY created_at LIMIT $2::integer)"

/* pause between two full batches, so that pruning a backlog yields */
#define BATCH_PAUSE_MS 10

int64_t
retention_prune_dead_letters(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop)
{
	char window[32], limit[32];
	const char *values[2] = { window, limit };
	int64_t total = 0;

	snprintf(window, sizeof(window), "%lld", (long long)window_s);
	snprintf(limit, sizeof(limit), "%lld", (long long)batch);
	while (!(stop && *stop)) {
		PGresult *res = rt_exec_params(conn, SQL_PRUNE_DEAD_LETTERS, 2, NULL, values, NULL, NULL, 0);
		char sqlstate[6], *msg = NULL;
		int64_t n;

		if (!db_ok(conn, res, sqlstate, &msg)) {
			log_warn("could not prune dead_letters: %s%s%s%s", msg ? msg : "", sqlstate[0] ? " (SQLSTATE " : "",
			    sqlstate, sqlstate[0] ? ")" : "");
			free(msg);
			PQclear(res);
			return -1;
		}
		n = strtoll(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		total += n;
		if (n < batch)
			break;
		sleep_ms_unless(BATCH_PAUSE_MS, stop);
	}
	return total;
}
