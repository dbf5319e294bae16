/* SPDX-License-Identifier: Apache-2.0 */
/* Dedupe retention. processed_events keeps one row per (route, event ID)
 * applied; rows older than retention.dedupe_window_s are deleted so the
 * table stops growing, except while a message of the route may still be
 * redelivered: a route's keys go only when they are also older than the
 * redelivery horizon of each of its live workers (the view
 * oncebridge.retention_holds over consumer_horizons, written by the
 * workers, see bridge/retention/horizon.c), so a worker cut off from its broker
 * delays pruning instead of losing the keys of what it committed but
 * could not ack. Each DELETE takes at most retention.batch_size of the
 * oldest expired rows (found through the processed_at index of migration
 * 3) in its own short transaction, skipping rows another session holds, so
 * the stream's claims never wait behind a long lock. One maintenance
 * process of the supervisor does it, so instances of one worker never race
 * on it; it logs which worker holds pruning back, and for how long. The
 * same process prunes old dead letters (deadletter_prune.c), and counts
 * the dead letters waiting for the metrics (bridge/core/deadletter_count.c),
 * so that a scrape never queries the database; it runs when any of these
 * is on. */
#include "config.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/common/backoff.h"
#include "bridge/core/db.h"
#include "bridge/core/deadletter_count.h"
#include "bridge/core/roundtrip.h"
#include "bridge/common/log.h"
#include "bridge/retention/retention.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"
#include "bridge/daemon/worker.h"

#define SQL_PRUNE \
	"WITH hold AS MATERIALIZED (" \
	"  SELECT consumer, min(safe_before) AS before FROM oncebridge.retention_holds GROUP BY consumer" \
	") DELETE FROM oncebridge.processed_events p USING (" \
	"  SELECT e.consumer, e.event_id FROM oncebridge.processed_events e LEFT JOIN hold USING (consumer)" \
	"  WHERE e.processed_at < now() - make_interval(secs => $1::double precision)" \
	"    AND (hold.before IS NULL OR e.processed_at < hold.before)" \
	"  ORDER BY e.processed_at LIMIT $2::integer FOR UPDATE OF e SKIP LOCKED" \
	") old WHERE p.consumer = old.consumer AND p.event_id = old.event_id"

/* The workers holding pruning back: their horizon is older than the
 * window. Seconds held (-1: not yet settled its first deliveries). */
#define SQL_HELD \
	"SELECT consumer, worker, connected," \
	"  CASE WHEN safe_before = '-infinity' THEN -1" \
	"  ELSE extract(epoch FROM now() - make_interval(secs => $1::double precision) - safe_before)::bigint END" \
	" FROM oncebridge.retention_holds" \
	" WHERE safe_before < now() - make_interval(secs => $1::double precision)" \
	" ORDER BY consumer, worker LIMIT 20"

/* a hold that stays the same is logged again this often */
#define HELD_LOG_MS (300 * 1000)

/* pause between two full batches, so that pruning a backlog yields to the stream */
#define BATCH_PAUSE_MS 10

static volatile int retention_stop;

static void
on_stop(int sig)
{
	(void)sig;
	retention_stop = 1;
}

int64_t
retention_delete_batches(PGconn *conn, const char *sql, const char *table, int64_t window_s, int64_t batch,
    volatile int *stop)
{
	char window[32], limit[32];
	const char *values[2] = { window, limit };
	int64_t total = 0;

	snprintf(window, sizeof(window), "%lld", (long long)window_s);
	snprintf(limit, sizeof(limit), "%lld", (long long)batch);
	while (!(stop && *stop)) {
		PGresult *res = rt_exec_params(conn, sql, 2, NULL, values, NULL, NULL, 0);
		char sqlstate[6], *msg = NULL;
		int64_t n;

		if (!db_ok(conn, res, sqlstate, &msg)) {
			log_warn("could not prune %s: %s%s%s%s", table, msg ? msg : "", sqlstate[0] ? " (SQLSTATE " : "",
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

int64_t
retention_prune(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop)
{
	return retention_delete_batches(conn, SQL_PRUNE, "processed_events", window_s, batch, stop);
}

/* Log the workers that hold pruning back when they change, and every
 * HELD_LOG_MS while they stay. */
static void
report_held(PGconn *conn, int64_t window_s, struct buf *last, int64_t *last_ms)
{
	char window[32];
	const char *values[1] = { window };
	PGresult *res;
	struct buf now = { 0 };
	char sqlstate[6], *msg = NULL;
	int rows;

	snprintf(window, sizeof(window), "%lld", (long long)window_s);
	res = rt_exec_params(conn, SQL_HELD, 1, NULL, values, NULL, NULL, 0);
	if (!db_ok(conn, res, sqlstate, &msg)) {
		log_warn("could not read the redelivery horizons: %s", msg ? msg : "");
		free(msg);
		PQclear(res);
		return;
	}
	rows = PQntuples(res);
	for (int i = 0; i < rows; i++)
		buf_appendf(&now, "%s\x1f%s\x1f%s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
	if ((now.len != last->len || (now.len && strcmp(now.data, last->data) != 0)) ||
	    (rows > 0 && now_ms() - *last_ms >= HELD_LOG_MS)) {
		for (int i = 0; i < rows; i++) {
			long long held = strtoll(PQgetvalue(res, i, 3), NULL, 10);
			bool up = PQgetvalue(res, i, 2)[0] == 't';

			if (held < 0)
				log_notice("pruning of route \"%s\" is held back by worker \"%s\", which has not yet settled "
				    "its first deliveries", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
			else
				log_notice("pruning of route \"%s\" is held back by worker \"%s\" (%s) for %lld s: "
				    "its broker may still redeliver what it committed since", PQgetvalue(res, i, 0),
				    PQgetvalue(res, i, 1), up ? "settling its redeliveries" : "not connected to its broker",
				    held);
		}
		if (rows == 0)
			log_info("pruning is no longer held back");
		*last_ms = now_ms();
	}
	buf_reset(last);
	if (now.len)
		buf_append(last, now.data, now.len);
	buf_free(&now);
	PQclear(res);
}

/* One round of each enabled pruning; false when a statement failed. */
static bool
prune_round(const struct settings *s, PGconn *conn, struct buf *held, int64_t *held_ms)
{
	int64_t t0 = now_ms(), n;

	if (s->dedupe_window_s) {
		n = retention_prune(conn, s->dedupe_window_s, s->retention_batch, &retention_stop);
		if (n < 0)
			return false;
		if (n > 0)
			log_info("pruned %lld processed_events rows older than %lld s in %lld ms", (long long)n,
			    (long long)s->dedupe_window_s, (long long)(now_ms() - t0));
		report_held(conn, s->dedupe_window_s, held, held_ms);
	}
	if (s->dead_letter_window_s) {
		t0 = now_ms();
		n = retention_prune_dead_letters(conn, s->dead_letter_window_s, s->retention_batch, &retention_stop);
		if (n < 0)
			return false;
		if (n > 0)
			log_info("pruned %lld dead letters older than %lld s in %lld ms", (long long)n,
			    (long long)s->dead_letter_window_s, (long long)(now_ms() - t0));
	}
	return true;
}

/* The maintenance process's work that is due at now: the pruning rounds
 * every retention.interval_s, the count of dead letters waiting every
 * RETENTION_COUNT_MS; -1 when the database failed (then it backs off). */
static int
maintain(PGconn *conn, const struct settings *s, struct dl_waiting_board *waiting, int64_t now,
    int64_t *prune_at, int64_t *count_at, struct buf *held, int64_t *held_ms)
{
	if ((s->dedupe_window_s || s->dead_letter_window_s) && now >= *prune_at) {
		if (!prune_round(s, conn, held, held_ms))
			return -1;
		*prune_at = now + s->retention_interval_s * 1000;
	}
	if (waiting && now >= *count_at) {
		if (dl_count_waiting(conn, s, waiting) < 0)
			return -1;
		*count_at = now + RETENTION_COUNT_MS;
	}
	return 0;
}

int
retention_main(const struct settings *s, struct dl_waiting_board *waiting)
{
	struct backoff backoff;
	PGconn *conn = NULL;
	struct buf held = { 0 };
	int64_t held_ms = 0, prune_at = 0, count_at = 0;

	child_signals(on_stop);
	log_set_context("retention");
	log_set_process("retention", NULL, -1);
	backoff_init(&backoff, s->retry_initial_ms, s->retry_max_ms);
	if (s->dedupe_window_s)
		log_info("pruning processed_events older than %lld s and than the redelivery horizons every %lld s",
		    (long long)s->dedupe_window_s, (long long)s->retention_interval_s);
	if (s->dead_letter_window_s)
		log_info("pruning dead letters older than %lld s every %lld s", (long long)s->dead_letter_window_s,
		    (long long)s->retention_interval_s);

	while (!retention_stop) {
		int64_t now, next;

		if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
			if (conn)
				PQfinish(conn);
			conn = db_open(s, "oncebridge retention");
			if (conn == NULL) {
				sleep_ms_unless(backoff_next(&backoff), &retention_stop);
				continue;
			}
			backoff_reset(&backoff);
		}
		now = now_ms();
		if (maintain(conn, s, waiting, now, &prune_at, &count_at, &held, &held_ms) < 0) {
			sleep_ms_unless(backoff_next(&backoff), &retention_stop);
			continue;
		}
		next = s->dedupe_window_s || s->dead_letter_window_s ? prune_at : INT64_MAX;
		if (waiting && count_at < next)
			next = count_at;
		now = now_ms();
		sleep_ms_unless(next > now ? next - now : 0, &retention_stop);
	}
	if (conn)
		PQfinish(conn);
	buf_free(&held);
	return 0;
}
