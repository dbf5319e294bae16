/* Dedupe retention. processed_events keeps one row per (route, event ID)
 * applied; rows older than retention.dedupe_window_s are deleted so the
 * table stops growing. Each DELETE takes at most retention.batch_size of
 * the oldest expired rows (found through the processed_at index of
 * migration 3) in its own short transaction, skipping rows another session
 * holds, so the stream's claims never wait behind a long lock. One
 * maintenance process of the supervisor does it, so instances of one
 * worker never race on it. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/backoff.h"
#include "bridge/db.h"
#include "bridge/log.h"
#include "bridge/retention.h"
#include "bridge/settings.h"
#include "bridge/util.h"
#include "bridge/worker.h"

#define SQL_PRUNE \
	"DELETE FROM oncebridge.processed_events p USING (" \
	"  SELECT consumer, event_id FROM oncebridge.processed_events" \
	"  WHERE processed_at < now() - make_interval(secs => $1::double precision)" \
	"  ORDER BY processed_at LIMIT $2::integer FOR UPDATE SKIP LOCKED" \
	") old WHERE p.consumer = old.consumer AND p.event_id = old.event_id"

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
retention_prune(PGconn *conn, int64_t window_s, int64_t batch, volatile int *stop)
{
	char window[32], limit[32];
	const char *values[2] = { window, limit };
	int64_t total = 0;

	snprintf(window, sizeof(window), "%lld", (long long)window_s);
	snprintf(limit, sizeof(limit), "%lld", (long long)batch);
	while (!(stop && *stop)) {
		PGresult *res = PQexecParams(conn, SQL_PRUNE, 2, NULL, values, NULL, NULL, 0);
		int64_t n;

		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			char sqlstate[6], *msg = NULL;

			db_error(conn, res, sqlstate, &msg);
			log_warn("could not prune processed_events: %s%s%s%s", msg ? msg : "", sqlstate[0] ? " (SQLSTATE " : "",
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

int
retention_main(const struct settings *s)
{
	struct backoff backoff;
	PGconn *conn = NULL;

	child_signals(on_stop);
	log_set_context("retention");
	backoff_init(&backoff, s->retry_initial_ms, s->retry_max_ms);
	log_info("pruning processed_events older than %lld s every %lld s", (long long)s->dedupe_window_s,
	    (long long)s->retention_interval_s);

	while (!retention_stop) {
		int64_t t0, n;

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
		t0 = now_ms();
		n = retention_prune(conn, s->dedupe_window_s, s->retention_batch, &retention_stop);
		if (n > 0)
			log_info("pruned %lld processed_events rows older than %lld s in %lld ms", (long long)n,
			    (long long)s->dedupe_window_s, (long long)(now_ms() - t0));
		if (n < 0) {
			sleep_ms_unless(backoff_next(&backoff), &retention_stop);
			continue;
		}
		sleep_ms_unless(s->retention_interval_s * 1000, &retention_stop);
	}
	if (conn)
		PQfinish(conn);
	return 0;
}
