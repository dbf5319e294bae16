/* SPDX-License-Identifier: Apache-2.0 */
/* The core's transactions. tx_plain: BEGIN, claim, business statements
 * (with a savepoint around each when asked), dead letters, COMMIT, one
 * statement at a time. tx_pipelined: the same for a batch without poison in
 * two round trips with libpq's pipeline mode. tx_single: one item in one
 * round trip. A failing business statement in either fast path returns
 * FAILURE_RETRY, and the caller runs tx_plain with savepoints, which
 * dead-letters the failing item (poison), leaves it for a later retry
 * (other errors) or gives up on the batch for now (transient). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bridge/core/apply_int.h"
#include "bridge/core/db.h"
#include "bridge/core/deadletter_row.h"
#include "bridge/core/roundtrip.h"
#include "bridge/common/log.h"
#include "bridge/config/settings.h"
#include "bridge/common/text.h"

#define PIPE_CHUNK 1000 /* business statements per pipeline sync */

/* --- statements */

void
stmt_result_clear(struct stmt_result *sr)
{
	sfree(sr->message);
	sr->failure = FAILURE_NONE;
	sr->sqlstate[0] = '\0';
}

static PGresult *
check_result(struct core *c, PGresult *res, struct stmt_result *sr)
{
	stmt_result_clear(sr);
	if (db_ok(c->conn, res, sr->sqlstate, &sr->message))
		return res;
	sr->failure = db_failure(c->conn, res, sr->sqlstate);
	PQclear(res);
	return NULL;
}

static bool
command(struct core *c, const char *sql, struct stmt_result *sr)
{
	PGresult *res = check_result(c, rt_exec(c->conn, sql), sr);

	PQclear(res);
	return res != NULL;
}

static bool
exec_prepared(struct core *c, const char *name, int n, const char *const *values, const int *lengths,
    const int *formats, struct stmt_result *sr, PGresult **out)
{
	PGresult *res = check_result(c,
	    rt_exec_prepared(c->conn, name, n, values, lengths, formats, 0), sr);

	if (out)
		*out = res;
	else
		PQclear(res);
	return res != NULL;
}

/* Arrays of the claim statement for the pending items: values[0] the
 * consumers, values[1] the event IDs; pos gets the items' indexes. Returns
 * how many items are pending. */
static size_t
claim_arrays(struct core *c, const struct item *items, size_t n, size_t *pos, const char *values[2])
{
	const struct broker *b = c->broker;
	size_t np = 0;

	buf_reset(&c->arr_consumers);
	buf_reset(&c->arr_ids);
	for (size_t i = 0; i < n; i++) {
		if (items[i].state != IT_PENDING)
			continue;
		buf_array_add(&c->arr_consumers, b->routes[items[i].route].name);
		buf_array_add(&c->arr_ids, items[i].event_id);
		pos[np++] = i;
	}
	buf_append(&c->arr_consumers, "}", 1);
	buf_append(&c->arr_ids, "}", 1);
	values[0] = c->arr_consumers.data;
	values[1] = c->arr_ids.data;
	return np;
}

static uint64_t
pair_hash(const char *consumer, const char *event_id)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (const char *p = consumer; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *p = event_id; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

/* Mark the claimed items: IT_NEW for the first item of each pair the
 * claim returned, IT_DUP for the others. The pending items' positions go
 * into an open-addressing table keyed by their pair, first occurrence
 * only. */
static void
claim_marks(struct core *c, const PGresult *res, struct item *items, const size_t *pos, size_t np)
{
	size_t cap = 16, *slot;

	while (cap < 2 * np)
		cap *= 2;
	slot = xcalloc(cap, sizeof(size_t)); /* item index + 1; 0: empty */
	for (size_t k = 0; k < np; k++) {
		const struct item *it = &items[pos[k]];
		size_t h = (size_t)pair_hash(c->broker->routes[it->route].name, it->event_id) & (cap - 1);

		items[pos[k]].state = IT_DUP;
		for (; slot[h]; h = (h + 1) & (cap - 1)) {
			const struct item *o = &items[slot[h] - 1];

			if (o->route == it->route && strcmp(o->event_id, it->event_id) == 0)
				break;
		}
		if (!slot[h])
			slot[h] = pos[k] + 1;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		const char *consumer = PQgetvalue(res, r, 0), *event_id = PQgetvalue(res, r, 1);
		size_t h = (size_t)pair_hash(consumer, event_id) & (cap - 1);

		for (; slot[h]; h = (h + 1) & (cap - 1)) {
			struct item *it = &items[slot[h] - 1];

			if (strcmp(it->event_id, event_id) == 0 && strcmp(c->broker->routes[it->route].name, consumer) == 0) {
				it->state = IT_NEW;
				break;
			}
		}
	}
	free(slot);
}

/* Claim the pending items; mark each IT_NEW or IT_DUP. */
static bool
claim_pending(struct core *c, struct item *items, size_t n, struct stmt_result *sr)
{
	size_t *pos = xcalloc(n + 1, sizeof(size_t));
	const char *values[2];
	size_t np = claim_arrays(c, items, n, pos, values);
	PGresult *res;
	bool ok = true;

	if (np > 0) {
		ok = exec_prepared(c, "ob_dedupe", 2, values, NULL, NULL, sr, &res);
		if (ok) {
			claim_marks(c, res, items, pos, np);
			PQclear(res);
		}
	}
	free(pos);
	return ok;
}

/* Parameters of the business statement of it, and its name. */
struct business_call {
	char name[32];
	int n;
	const char **values;
	int *lengths;
	int *formats;
};

static void
business_call_init(struct core *c, const struct item *it, struct business_call *bc)
{
	const struct route *r = &c->broker->routes[it->route];

	bc->n = (int)r->n_params;
	bc->values = xcalloc(r->n_params + 1, sizeof(char *));
	bc->lengths = xcalloc(r->n_params + 1, sizeof(int));
	bc->formats = xcalloc(r->n_params + 1, sizeof(int));
	for (size_t p = 0; p < r->n_params; p++) {
		bc->values[p] = it->values[p].data;
		bc->lengths[p] = (int)it->values[p].len;
		bc->formats[p] = it->values[p].binary ? 1 : 0;
	}
	db_route_stmt(bc->name, sizeof(bc->name), it->route);
}

static void
business_call_free(struct business_call *bc)
{
	free(bc->values);
	free(bc->lengths);
	free(bc->formats);
}

static bool
run_business(struct core *c, struct item *it, struct stmt_result *sr)
{
	struct business_call bc;
	bool ok;

	business_call_init(c, it, &bc);
	ok = exec_prepared(c, bc.name, bc.n, bc.values, bc.lengths, bc.formats, sr, NULL);
	business_call_free(&bc);
	return ok;
}

/* Insert the dead-letter row of it. claim: also claim its event ID first,
 * and write nothing when it was claimed before. */
static bool
write_dead_letter(struct core *c, const struct message *m, struct item *it, bool claim,
    struct stmt_result *sr)
{
	const struct broker *b = c->broker;
	const char *route = it->route == NO_ROUTE ? NULL : b->routes[it->route].name;
	char *topic = text_sanitize(m->topic, m->topic ? (m->topic_len ? m->topic_len : strlen(m->topic)) : 0);
	char *source = text_sanitize(m->source, m->source ? strlen(m->source) : 0);
	char *exchange = text_sanitize(m->exchange, m->exchange ? strlen(m->exchange) : 0);
	char *props = deadletter_properties_json(m);
	char size[24], attempts[16];
	unsigned char digest[32];
	size_t stored = deadletter_kept_bytes(&c->limits, m->payload_len);
	const char *values[14];
	int lengths[14] = { 0 }, formats[14] = { 0 };
	bool ok = true;

	if (claim && route && it->event_id) {
		const char *cv[2] = { route, it->event_id };
		PGresult *res;

		ok = exec_prepared(c, "ob_claim", 2, cv, NULL, NULL, sr, &res);
		if (ok) {
			bool fresh = PQntuples(res) == 1;

			PQclear(res);
			if (!fresh) {
				it->state = IT_DUP; /* dead-lettered before a crash, then redelivered */
				goto out;
			}
		}
		if (!ok)
			goto out;
	}
	snprintf(size, sizeof(size), "%zu", m->payload_len);
	snprintf(attempts, sizeof(attempts), "%d", it->attempts > 0 ? it->attempts : 1);
	values[0] = b->name;
	values[1] = route;
	values[2] = it->event_id;
	values[3] = source;
	values[4] = exchange;
	values[5] = topic;
	values[6] = props;
	values[7] = m->payload ? m->payload : "";
	lengths[7] = (int)stored;
	formats[7] = 1;
	values[8] = size;
	values[9] = it->reason;
	values[10] = it->sqlstate[0] ? it->sqlstate : NULL;
	values[11] = it->detail;
	values[12] = attempts;
	deadletter_sha256(m->payload, m->payload_len, digest);
	values[13] = (const char *)digest;
	lengths[13] = (int)sizeof(digest);
	formats[13] = 1;
	ok = exec_prepared(c, "ob_dead", 14, values, lengths, formats, sr, NULL);
	if (ok) {
		struct log_ctx lc = { route, it->event_id, it->sqlstate, NULL, NULL, -1, -1 };

		it->state = IT_DEAD;
		log_warn_ctx(&lc, "dead-lettered a message on \"%s\" for route \"%s\"%s%s: %s",
		    topic ? topic : "", route ? route : "(none)", it->event_id ? ", event ID " : "",
		    it->event_id ? it->event_id : "", it->reason);
	}
out:
	free(topic);
	free(source);
	free(exchange);
	free(props);
	return ok;
}

/* Business SQL of it failed inside a savepoint with sr: decide its fate. */
static bool
settle_failed_item(struct core *c, const struct message *m, struct item *it, struct stmt_result *sr)
{
	const struct route *r = &c->broker->routes[it->route];
	struct stmt_result sr2 = { 0 };
	bool ok;

	memcpy(it->sqlstate, sr->sqlstate, 6);
	free(it->detail);
	it->detail = sr->message ? xstrdup(sr->message) : NULL;
	if (sr->failure == FAILURE_RETRY) {
		it->attempts = attempt_bump(c, it, m);
		if (it->attempts < c->settings->max_attempts) {
			const char *cv[2] = { r->name, it->event_id };
			struct log_ctx lc = { r->name, it->event_id, it->sqlstate, NULL, NULL, -1, -1 };

			log_warn_ctx(&lc, "business SQL of route \"%s\" failed for event ID %s (attempt %d of %lld), "
			    "will retry: %s (SQLSTATE %s)", r->name, it->event_id, it->attempts,
			    (long long)c->settings->max_attempts, it->detail ? it->detail : "", it->sqlstate);
			it->state = IT_DEFER;
			ok = exec_prepared(c, "ob_unclaim", 2, cv, NULL, NULL, &sr2, NULL);
			goto out;
		}
		free(it->reason);
		it->reason = xasprintf("business SQL failed %d times%s: %s", it->attempts,
		    m->delivery_count > 0 && it->attempts == m->delivery_count + 1
		    ? " (counting the deliveries the broker reports in x-delivery-count)" : "",
		    it->detail ? it->detail : "");
	} else {
		free(it->reason);
		it->reason = xasprintf("business SQL failed: %s", it->detail ? it->detail : "");
	}
	/* the event ID is already claimed in this transaction */
	ok = write_dead_letter(c, m, it, false, &sr2);
out:
	if (!ok) {
		stmt_result_clear(sr);
		*sr = sr2;
	} else {
		stmt_result_clear(&sr2);
	}
	return ok;
}

static void
rollback(struct core *c)
{
	struct stmt_result sr = { 0 };

	if (PQstatus(c->conn) == CONNECTION_OK && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
		command(c, "ROLLBACK", &sr);
	stmt_result_clear(&sr);
}

/* One transaction over the items. Returns FAILURE_NONE when committed;
 * FAILURE_RETRY asks for another attempt with savepoints; FAILURE_TRANSIENT
 * gives up on the batch for now. */
/* Back to the state before a transaction that was rolled back. */
static void
items_reset(struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (items[i].state == IT_NEW || items[i].state == IT_DUP || items[i].state == IT_APPLIED)
			items[i].state = IT_PENDING;
		else if (items[i].state == IT_DEAD)
			items[i].state = IT_POISON;
}

enum failure_class
tx_plain(struct core *c, const struct message *msgs, struct item *items, size_t n, bool savepoints,
    struct stmt_result *sr)
{
	items_reset(items, n);

	if (!command(c, "BEGIN", sr))
		return FAILURE_TRANSIENT;
	if (c->tx_hook && !c->tx_hook(c->conn, c->tx_hook_arg))
		goto failed;
	if (!claim_pending(c, items, n, sr))
		goto failed;
	for (size_t i = 0; i < n; i++) {
		struct item *it = &items[i];

		if (it->state != IT_NEW)
			continue;
		if (savepoints && !command(c, "SAVEPOINT ob_item", sr))
			goto failed;
		if (run_business(c, it, sr)) {
			it->state = IT_APPLIED;
			if (savepoints && !command(c, "RELEASE SAVEPOINT ob_item", sr))
				goto failed;
			continue;
		}
		if (!savepoints || sr->failure == FAILURE_TRANSIENT) {
			if (sr->failure != FAILURE_TRANSIENT) {
				rollback(c);
				return FAILURE_RETRY; /* again, with savepoints */
			}
			goto failed;
		}
		{
			struct stmt_result sr2 = { 0 };

			if (!command(c, "ROLLBACK TO SAVEPOINT ob_item", &sr2)) {
				stmt_result_clear(sr);
				*sr = sr2;
				goto failed;
			}
		}
		if (!settle_failed_item(c, &msgs[it->msg], it, sr))
			goto failed;
	}
	for (size_t i = 0; i < n; i++)
		if (items[i].state == IT_POISON && !write_dead_letter(c, &msgs[items[i].msg], &items[i], true, sr))
			goto failed;
	if (!command(c, "COMMIT", sr))
		goto failed;
	return FAILURE_NONE;
failed:
	rollback(c);
	/* an error writing a dead letter or claiming cannot be put on one
	 * message: the batch waits for a retry */
	return FAILURE_TRANSIENT;
}

/* --- the fast path: libpq pipeline mode */

/* The result of the next query of a pipeline, with the NULL that ends it
 * consumed (a PGRES_PIPELINE_SYNC has none). NULL when the connection is
 * gone. Each result moves the round trip's deadline (apply.c starts it
 * before the pipeline is sent): a long batch of live statements is not
 * cut, a server that stops answering is. */
static PGresult *
pipe_next(PGconn *conn)
{
	PGresult *res, *extra;

	rt_begin(conn);
	res = PQgetResult(conn);

	if (res == NULL || PQresultStatus(res) == PGRES_PIPELINE_SYNC)
		return res;
	while ((extra = PQgetResult(conn)) != NULL)
		PQclear(extra);
	return res;
}

/* Read what is left up to the sync and leave pipeline mode. */
static void
pipe_finish(PGconn *conn)
{
	PGresult *res;

	while ((res = pipe_next(conn)) != NULL) {
		bool sync = PQresultStatus(res) == PGRES_PIPELINE_SYNC;

		PQclear(res);
		if (sync)
			break;
	}
	PQexitPipelineMode(conn);
}

/* true when res succeeded; otherwise sr describes the failure (the first
 * one only: later statements of the pipeline were just aborted). */
static bool
pipe_ok(struct core *c, PGresult *res, struct stmt_result *sr)
{
	if (sr->failure != FAILURE_NONE || PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
		return db_ok(c->conn, res, NULL, NULL);
	if (db_ok(c->conn, res, sr->sqlstate, &sr->message))
		return true;
	sr->failure = db_failure(c->conn, res, sr->sqlstate);
	return false;
}

/* true when res is COMMIT's own "COMMIT" tag: a transaction that failed
 * earlier answers COMMIT with "ROLLBACK". */
static bool
pipe_committed(struct core *c, PGresult *res, struct stmt_result *sr)
{
	return pipe_ok(c, res, sr) && strcmp(PQcmdStatus(res), "COMMIT") == 0;
}

/* What a fast path returns when it did not commit (after ROLLBACK): a
 * business statement that failed asks for the savepoint path; anything
 * else, including a COMMIT that rolled back without an error, is
 * transient. */
static enum failure_class
pipe_failure(struct stmt_result *sr)
{
	if (sr->failure == FAILURE_NONE) {
		sr->failure = FAILURE_TRANSIENT;
		sr->message = xstrdup("the transaction was rolled back at COMMIT");
	}
	return sr->failure == FAILURE_TRANSIENT ? FAILURE_TRANSIENT : FAILURE_RETRY;
}

/* One transaction in two round trips: BEGIN and the claim, then every
 * business statement and COMMIT. The results are a command tag each, so
 * even thousands of statements cannot fill the socket buffers both ways.
 * Batches with poison go the plain way (tx_plain), which writes dead
 * letters. Returns like tx_plain. */
enum failure_class
tx_pipelined(struct core *c, struct item *items, size_t n, struct stmt_result *sr)
{
	PGconn *conn = c->conn;
	size_t *pos = xcalloc(n + 1, sizeof(size_t)), np;
	const char *values[2];
	PGresult *res;
	bool ok = true, committed;

	items_reset(items, n);
	stmt_result_clear(sr);
	np = claim_arrays(c, items, n, pos, values);
	if (PQenterPipelineMode(conn) != 1) {
		free(pos);
		return FAILURE_TRANSIENT;
	}
	/* round trip 1 */
	PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	if (np > 0)
		PQsendQueryPrepared(conn, "ob_dedupe", 2, values, NULL, NULL, 0);
	PQpipelineSync(conn);
	res = pipe_next(conn);
	ok = pipe_ok(c, res, sr);
	PQclear(res);
	if (np > 0) {
		res = pipe_next(conn);
		if (pipe_ok(c, res, sr) && ok)
			claim_marks(c, res, items, pos, np);
		else
			ok = false;
		PQclear(res);
	}
	free(pos);
	res = pipe_next(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		/* BEGIN and the claims may have run: roll them back, or a retry
		 * on this session takes its own claims for duplicates */
		if (sr->failure == FAILURE_NONE) {
			sr->failure = FAILURE_TRANSIENT;
			sr->message = xstrdup("the pipeline ended without its sync");
		}
		ok = false;
	}
	PQclear(res);
	if (!ok)
		goto failed;
	/* round trip 2, in chunks of PIPE_CHUNK statements: libpq is in
	 * blocking mode, so the results the server writes back must never fill
	 * the socket buffers while we are still writing */
	committed = false;
	for (size_t from = 0; from < n && ok;) {
		size_t to = from, sent = 0;
		bool last;

		for (; to < n && sent < PIPE_CHUNK; to++) {
			struct business_call bc;

			if (items[to].state != IT_NEW)
				continue;
			business_call_init(c, &items[to], &bc);
			PQsendQueryPrepared(conn, bc.name, bc.n, bc.values, bc.lengths, bc.formats, 0);
			business_call_free(&bc);
			sent++;
		}
		last = to >= n;
		if (last)
			PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
		PQpipelineSync(conn);
		for (size_t i = from; i < to; i++) {
			if (items[i].state != IT_NEW)
				continue;
			res = pipe_next(conn);
			if (pipe_ok(c, res, sr))
				items[i].state = IT_APPLIED;
			else
				ok = false;
			PQclear(res);
		}
		if (last) {
			res = pipe_next(conn);
			committed = pipe_committed(c, res, sr);
			PQclear(res);
		}
		res = pipe_next(conn);
		if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
			ok = false;
			if (sr->failure == FAILURE_NONE)
				pipe_ok(c, res, sr);
		}
		PQclear(res);
		from = to;
	}
	PQexitPipelineMode(conn);
	if (ok && committed)
		return FAILURE_NONE;
failed:
	if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
		pipe_finish(conn);
	rollback(c);
	return pipe_failure(sr);
}

/* One message, one route: BEGIN, a strict claim, the business SQL and
 * COMMIT in a single round trip. A duplicate fails the claim with
 * unique_violation, which aborts the rest of the pipeline: nothing ran, and
 * the item is a duplicate. This is the path of a broker that hands over
 * one message at a time (one message per transaction), where round trips
 * are the cost. */
enum failure_class
tx_single(struct core *c, struct item *it, struct stmt_result *sr)
{
	PGconn *conn = c->conn;
	const char *claim[2] = { c->broker->routes[it->route].name, it->event_id };
	struct business_call bc;
	PGresult *res;
	bool begun, claimed, applied, committed, duplicate = false;

	items_reset(it, 1);
	stmt_result_clear(sr);
	if (PQenterPipelineMode(conn) != 1)
		return FAILURE_TRANSIENT;
	business_call_init(c, it, &bc);
	PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	PQsendQueryPrepared(conn, "ob_claim_strict", 2, claim, NULL, NULL, 0);
	PQsendQueryPrepared(conn, bc.name, bc.n, bc.values, bc.lengths, bc.formats, 0);
	PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	PQpipelineSync(conn);
	business_call_free(&bc);

	res = pipe_next(conn);
	begun = pipe_ok(c, res, sr);
	PQclear(res);
	res = pipe_next(conn);
	if (res && PQresultStatus(res) == PGRES_FATAL_ERROR && PQstatus(conn) == CONNECTION_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		duplicate = state && strcmp(state, "23505") == 0;
	}
	claimed = !duplicate && pipe_ok(c, res, sr);
	PQclear(res);
	res = pipe_next(conn);
	applied = pipe_ok(c, res, sr);
	PQclear(res);
	res = pipe_next(conn);
	committed = pipe_committed(c, res, sr);
	PQclear(res);
	pipe_finish(conn);
	if (begun && claimed && applied && committed) {
		it->state = IT_APPLIED;
		return FAILURE_NONE;
	}
	rollback(c);
	if (begun && duplicate && PQstatus(conn) == CONNECTION_OK) {
		it->state = IT_DUP;
		return FAILURE_NONE;
	}
	return pipe_failure(sr);
}
