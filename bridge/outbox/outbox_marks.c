/* SPDX-License-Identifier: Apache-2.0 */
/* The ordered relay's marks of confirmed outbox rows. A mark (an UPDATE of
 * a batch's rows: a new row version and index entries each) costs the
 * database about as much as the broker spends on confirming those rows,
 * and while the relay waited for it, the broker had only what was still in
 * flight to work on (the profile is in the README, "Performance"). So the
 * marks travel with the relay's next read of the outbox, in one round trip
 * (libpq pipeline mode): the read first, when it cannot return any of the
 * rows being marked (its ids are above those in flight), and the marks
 * behind it, whose results are read only before the connection's next
 * use, while the relay publishes what it read. A row is still marked only
 * after its confirm; a mark that fails or is lost (a crash, the session
 * gone) means the row is published again, and consumers deduplicate. */
#include "config.h"

#include "bridge/common/log.h"
#include "bridge/core/roundtrip.h"
#include "bridge/outbox/outbox_marks.h"

#define SQL_MARK \
	"UPDATE oncebridge.outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])"
#define SQL_FAILED \
	"UPDATE oncebridge.outbox SET attempts = attempts + 1 WHERE id = ANY($1::bigint[])"

void
outbox_marks_add(struct outbox_marks *m, int64_t id, bool confirmed)
{
	struct buf *b = confirmed ? &m->ok : &m->failed;

	buf_appendf(b, "%s%lld", b->len ? "," : "{", (long long)id);
}

bool
outbox_marks_pending(const struct outbox_marks *m)
{
	return m->ok.len > 0 || m->failed.len > 0;
}

void
outbox_marks_reset(struct outbox_marks *m)
{
	buf_free(&m->ok);
	buf_free(&m->failed);
	m->outstanding = 0;
}

/* Queue the marks waiting in the pipeline; returns how many statements. */
static int
send_marks(PGconn *conn, struct outbox_marks *m)
{
	struct buf *bufs[2] = { &m->ok, &m->failed };
	const char *sqls[2] = { SQL_MARK, SQL_FAILED };
	int n = 0;

	for (int i = 0; i < 2; i++) {
		const char *values[1];

		if (bufs[i]->len == 0)
			continue;
		buf_append(bufs[i], "}", 1);
		values[0] = bufs[i]->data;
		if (PQsendQueryParams(conn, sqls[i], 1, NULL, values, NULL, NULL, 0) == 1)
			n++;
		buf_reset(bufs[i]);
	}
	return n;
}

/* The next result of the pipeline, without the NULL that ends it. */
static PGresult *
pipe_result(PGconn *conn)
{
	PGresult *res = PQgetResult(conn), *extra;

	if (res == NULL || PQresultStatus(res) == PGRES_PIPELINE_SYNC)
		return res;
	while ((extra = PQgetResult(conn)) != NULL)
		PQclear(extra);
	return res;
}

static bool
result_ok(PGconn *conn, PGresult *res, const char *what)
{
	ExecStatusType st = PQresultStatus(res);

	if (res != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
		return true;
	if (res == NULL || st != PGRES_PIPELINE_ABORTED) /* the first failure says why */
		log_warn("could not %s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	return false;
}

/* Read n marks' results and the sync, and leave pipeline mode. */
static bool
read_marks(PGconn *conn, int n)
{
	PGresult *res;
	bool ok = true;

	for (int i = 0; i < n; i++) {
		res = pipe_result(conn);
		ok = result_ok(conn, res, "mark outbox rows") && ok;
		PQclear(res);
	}
	while ((res = pipe_result(conn)) != NULL) {
		bool sync = PQresultStatus(res) == PGRES_PIPELINE_SYNC;

		PQclear(res);
		if (sync)
			return PQexitPipelineMode(conn) == 1 && ok;
	}
	log_warn("could not mark outbox rows: %s", PQerrorMessage(conn)); /* the session is gone */
	return false;
}

bool
outbox_marks_collect(PGconn *conn, struct outbox_marks *m)
{
	bool ok;

	if (m->outstanding == 0)
		return true;
	rt_begin(conn);
	ok = read_marks(conn, m->outstanding);
	ok = rt_end(conn) && ok;
	m->outstanding = 0;
	return ok;
}

bool
outbox_marks_flush(PGconn *conn, struct outbox_marks *m)
{
	bool ok;

	if (!outbox_marks_collect(conn, m))
		return false;
	if (!outbox_marks_pending(m))
		return true;
	if (PQenterPipelineMode(conn) != 1) {
		log_warn("could not mark outbox rows: %s", PQerrorMessage(conn));
		return false;
	}
	rt_begin(conn);
	m->outstanding = send_marks(conn, m);
	ok = PQpipelineSync(conn) == 1;
	rt_end(conn);
	return outbox_marks_collect(conn, m) && ok;
}

PGresult *
outbox_marks_read(PGconn *conn, struct outbox_marks *m, bool behind, const char *sql, int n,
    const char *const *values, int result_format)
{
	PGresult *res = NULL;
	int before = 0;
	bool marked = true, ok, fetched;

	if (!outbox_marks_collect(conn, m))
		return NULL;
	if (!outbox_marks_pending(m))
		return rt_exec_params(conn, sql, n, NULL, values, NULL, NULL, result_format);
	if (PQenterPipelineMode(conn) != 1) {
		log_warn("could not mark outbox rows: %s", PQerrorMessage(conn));
		return NULL;
	}
	rt_begin(conn);
	if (!behind)
		before = send_marks(conn, m);
	PQsendQueryParams(conn, sql, n, NULL, values, NULL, NULL, result_format);
	if (behind)
		m->outstanding = send_marks(conn, m);
	PQpipelineSync(conn);
	for (int i = 0; i < before; i++) {
		PGresult *mres = pipe_result(conn);

		marked = result_ok(conn, mres, "mark outbox rows") && marked;
		PQclear(mres);
	}
	res = pipe_result(conn);
	fetched = PQresultStatus(res) == PGRES_TUPLES_OK;
	ok = true;
	if (!behind) {
		ok = read_marks(conn, 0); /* the sync */
	} else if (!fetched) {
		/* the marks behind a read that failed were not run: those rows
		 * are published again */
		(void)read_marks(conn, m->outstanding);
		m->outstanding = 0;
	}
	ok = rt_end(conn) && ok;
	if (marked && (ok || !fetched))
		return res; /* a failed read says why */
	PQclear(res);
	return NULL; /* a failed mark, the deadline or the lost session said why */
}
