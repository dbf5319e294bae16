/* SPDX-License-Identifier: Apache-2.0 */
/* Counting the dead letters waiting for a replay, by broker, route and
 * class, in one aggregate query over oncebridge.dead_letters. The class is
 * derived from the row: no route (consumer NULL), a failed business SQL
 * (a SQLSTATE recorded), else the message itself. The result replaces the
 * whole board; a reader may see a count a moment old, never a torn one
 * (aligned 64-bit words). The query runs under the round-trip deadline
 * (bridge/core/roundtrip.h) like every other. */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/common/log.h"
#include "bridge/common/util.h"
#include "bridge/config/settings.h"
#include "bridge/core/db.h"
#include "bridge/core/deadletter_count.h"
#include "bridge/core/roundtrip.h"

#define SQL_COUNT \
	"SELECT broker, consumer," \
	"  CASE WHEN consumer IS NULL THEN 2 WHEN sqlstate IS NOT NULL THEN 1 ELSE 0 END AS class," \
	"  count(*) FROM oncebridge.dead_letters WHERE replayed_at IS NULL GROUP BY 1, 2, 3"

const char *
dl_class_name(enum dl_class k)
{
	switch (k) {
	case DL_CLASS_INVALID:
		return "invalid";
	case DL_CLASS_SQL:
		return "sql_error";
	case DL_CLASS_UNROUTED:
		return "unrouted";
	case DL_CLASSES:
		break;
	}
	return "?";
}

size_t
dl_waiting_rows(const struct settings *s)
{
	size_t n = 0;

	for (size_t b = 0; b < s->n_brokers; b++)
		n += s->brokers[b].n_routes + 1;
	return n;
}

size_t
dl_waiting_row(const struct settings *s, size_t b, size_t r)
{
	size_t n = 0;

	for (size_t k = 0; k < b; k++)
		n += s->brokers[k].n_routes + 1;
	return n + r;
}

/* The row of (broker, consumer), or -1 when not configured. */
static long
row_of(const struct settings *s, const char *broker, const char *consumer, bool unrouted)
{
	for (size_t b = 0; b < s->n_brokers; b++) {
		const struct broker *br = &s->brokers[b];

		if (strcmp(br->name, broker) != 0)
			continue;
		if (unrouted)
			return (long)dl_waiting_row(s, b, br->n_routes);
		for (size_t r = 0; r < br->n_routes; r++)
			if (strcmp(br->routes[r].name, consumer) == 0)
				return (long)dl_waiting_row(s, b, r);
	}
	return -1;
}

int
dl_count_waiting(PGconn *conn, const struct settings *s, struct dl_waiting_board *board)
{
	PGresult *res = rt_exec_params(conn, SQL_COUNT, 0, NULL, NULL, NULL, NULL, 0);
	struct dl_waiting *rows;
	int n;

	if (!db_ok_or_warn(conn, res, "count the dead letters waiting")) {
		PQclear(res);
		return -1;
	}
	rows = xcalloc(board->n + 1, sizeof(*rows));
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		bool unrouted = PQgetisnull(res, i, 1);
		int k = atoi(PQgetvalue(res, i, 2));
		long row = row_of(s, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), unrouted);

		if (row >= 0 && (size_t)row < board->n && k >= 0 && k < DL_CLASSES)
			rows[row].n[k] += strtoll(PQgetvalue(res, i, 3), NULL, 10);
	}
	PQclear(res);
	for (size_t r = 0; r < board->n; r++)
		for (int k = 0; k < DL_CLASSES; k++)
			board->rows[r].n[k] = rows[r].n[k];
	board->counted_ms = wall_ms();
	free(rows);
	return 0;
}
