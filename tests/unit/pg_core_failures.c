/* SPDX-License-Identifier: Apache-2.0 */
/* The core's failure classes against a real PostgreSQL, fed by the null
 * adapter (adapters/null.h). Transient (a SQLSTATE of the class, the
 * session terminated between batches and in the middle of one, a row lock
 * with NOWAIT: 55P03, and one that outlasts statement_timeout: 57014):
 * the whole batch is nacked, nothing of it commits, no dead letter, and
 * the redelivery applies it once. Unclassified (XX000 from a trigger):
 * only that event is retried, its claim released, and it is dead-lettered
 * after retry.max_attempts, also counting the deliveries a broker
 * reports; the adapter's run() takes that path by itself. Run by
 * tests/integration/core_null.py (see tests/unit/pg_core_apply.c for the
 * tables and routes). Prints TAP. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/pg_fixture.h"
#include "tests/unit/tap.h"

static struct fixture fx;

static long
dead_letters(const char *event_id)
{
	return fx_long(&fx, "SELECT count(*) FROM oncebridge.dead_letters WHERE event_id = $1", event_id, NULL);
}

/* A batch of two events on source, the second failing transiently by
 * cause (set up by the caller, undone by undo): all of it comes back. */
static void
transient_case(const char *source, const char *route, const char *id1, const char *id2, const char *cause,
    void (*undo)(void))
{
	size_t a = fx_event(source, id1, 1), b = fx_event(source, id2, 2);
	enum apply_status st = fx_step(&fx);

	ok(st == APPLY_TRANSIENT && null_record(a)->outcome == OUTCOME_DEFERRED &&
	    null_record(b)->outcome == OUTCOME_DEFERRED && null_record(a)->nacks == 1 && null_record(b)->nacks == 1,
	    "transient (%s): the whole batch is deferred and nacked", cause);
	ok(fx_applied(&fx, route, id1) == 0 && fx_claims(&fx, route, id1) == 0 && fx_claims(&fx, route, id2) == 0,
	    "transient (%s): nothing of the batch committed, not even its neighbour's claim", cause);
	is_int(dead_letters(id2), 0, "transient (%s): no dead letter", cause);
	undo();
	st = fx_step(&fx);
	ok(st == APPLY_OK && null_record(a)->outcome == OUTCOME_APPLIED && null_record(b)->outcome == OUTCOME_APPLIED &&
	    null_record(a)->acks == 1 && null_record(b)->acks == 1,
	    "transient (%s): the redelivery applies both and acks each once", cause);
	ok(fx_applied(&fx, route, id1) == 1 && fx_applied(&fx, route, id2) == 1,
	    "transient (%s): one business row each", cause);
}

static void
undo_40001(void)
{
	fx_clear_fault(&fx, "r_main", "fl-t2");
}

static void
undo_kill(void)
{
	fx_clear_fault(&fx, "r_main", "fl-k2");
}

static void
undo_nothing(void)
{
}

static PGconn *locker;

static void
lock_row(void)
{
	PGresult *res;

	locker = PQconnectdb(fx.settings->db_conninfo);
	res = PQexec(locker, "BEGIN; SELECT id FROM lockme WHERE id = 1 FOR UPDATE");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		printf("# could not lock the row: %s", PQresultErrorMessage(res));
	PQclear(res);
}

static void
unlock_row(void)
{
	/* ROLLBACK and wait for it: a closed session's lock may outlive the
	 * close for a moment */
	PQclear(PQexec(locker, "ROLLBACK"));
	PQfinish(locker);
	locker = NULL;
}

static void
test_transient(void)
{
	long pid;

	fx_fault(&fx, "r_main", "fl-t2", "40001");
	transient_case("q.main", "r_main", "fl-t1", "fl-t2", "40001 from the business SQL", undo_40001);
	fx_fault(&fx, "r_main", "fl-k2", "kill");
	transient_case("q.main", "r_main", "fl-k1", "fl-k2", "the session terminated mid-batch", undo_kill);
	pid = fx_long(&fx, "SELECT pg_terminate_backend(pid)::int FROM pg_stat_activity WHERE application_name = $1",
	    "oncebridge/mem", NULL);
	is_int(pid, 1, "the core's idle session was terminated from outside");
	transient_case("q.main", "r_main", "fl-x1", "fl-x2", "the session terminated between batches", undo_nothing);
	lock_row();
	transient_case("q.nowait", "r_nowait", "fl-n1", "fl-n2", "55P03, a row locked elsewhere, NOWAIT", unlock_row);
	lock_row();
	transient_case("q.wait", "r_wait", "fl-w1", "fl-w2", "57014, statement_timeout while waiting for a lock",
	    unlock_row);
}

static void
test_unclassified(void)
{
	size_t good, bad;
	char *s;

	fx_fault(&fx, "r_main", "fl-u2", "XX000");
	good = fx_event("q.main", "fl-u1", 1);
	bad = fx_event("q.main", "fl-u2", 2);
	is_int(fx_step(&fx), APPLY_OK, "unclassified: the batch commits");
	fx_is_outcome(good, OUTCOME_APPLIED, "unclassified: the neighbour is applied");
	fx_is_outcome(bad, OUTCOME_DEFERRED, "unclassified: XX000 from a trigger defers the event (attempt 1 of 3)");
	ok(fx_claims(&fx, "r_main", "fl-u2") == 0 && dead_letters("fl-u2") == 0,
	    "unclassified: its claim was released and no dead letter written");
	fx_step(&fx);
	fx_is_outcome(bad, OUTCOME_DEFERRED, "unclassified: the second delivery is deferred again");
	fx_step(&fx);
	fx_is_outcome(bad, OUTCOME_DEAD_LETTERED, "unclassified: the third delivery (retry.max_attempts) is dead-lettered");
	ok(null_record(bad)->deliveries == 3 && null_record(bad)->nacks == 2 && null_record(bad)->acks == 1,
	    "unclassified: three deliveries, two nacks, one ack");
	s = fx_text(&fx, "SELECT sqlstate || ' ' || attempts || ' ' || reason FROM oncebridge.dead_letters"
	    " WHERE event_id = 'fl-u2'", NULL, NULL);
	is_str(s, "XX000 3 business SQL failed 3 times: injected fault XX000 for event fl-u2",
	    "unclassified: the dead letter has the SQLSTATE, three attempts and the reason");
	free(s);
	ok(fx_claims(&fx, "r_main", "fl-u2") == 1 && fx_applied(&fx, "r_main", "fl-u2") == 0,
	    "unclassified: the dead-lettered event is claimed, never applied");
}

static void
test_delivery_count(void)
{
	struct message m;
	const char *body = "{\"id\": \"fl-q1\", \"n\": 1}";
	size_t id;
	char *s;

	fx_fault(&fx, "r_main", "fl-q1", "XX000");
	memset(&m, 0, sizeof(m));
	m.payload = body;
	m.payload_len = strlen(body);
	m.topic = "ev.q.main";
	m.source = "q.main";
	m.redelivered = true;
	m.delivery_count = 4;
	id = null_enqueue(&m);
	fx_step(&fx);
	fx_is_outcome(id, OUTCOME_DEAD_LETTERED,
	    "unclassified: a message the broker delivered 4 times before is dead-lettered at its first failure here");
	s = fx_text(&fx, "SELECT attempts || ' ' || reason FROM oncebridge.dead_letters WHERE event_id = 'fl-q1'",
	    NULL, NULL);
	if (!ok(s && strncmp(s, "5 business SQL failed 5 times (counting the deliveries the broker reports", 73) == 0,
	    "unclassified: its dead letter counts the broker's deliveries"))
		printf("#   got: %s\n", s ? s : "(none)");
	free(s);
}

static void
test_run(void)
{
	static const char *const ids[3] = { "fl-r1", "fl-r2", "fl-r3" };
	size_t id[4];
	int applied = 0;

	fx_fault(&fx, "r_main", "fl-r4", "XX000");
	id[0] = fx_event("q.main", "fl-r1", 1);
	id[1] = fx_event("q.main", "fl-r2", 2);
	id[2] = fx_event("q.main", "fl-r3", 3);
	id[3] = fx_event("q.main", "fl-r4", 4);
	is_int(null_adapter.run(&fx.worker), 0, "run: the adapter's run() returns once its queue is empty");
	is_int(null_queued(), 0, "run: nothing is left in the queue");
	for (int i = 0; i < 3; i++)
		applied += null_record(id[i])->outcome == OUTCOME_APPLIED && null_record(id[i])->acks == 1 &&
		    fx_applied(&fx, "r_main", ids[i]) == 1;
	is_int(applied, 3, "run: three good events applied and acked once, one row each");
	ok(null_record(id[3])->outcome == OUTCOME_DEAD_LETTERED && null_record(id[3])->deliveries == 3 &&
	    dead_letters("fl-r4") == 1, "run: the failing event is retried and dead-lettered after three deliveries");
}

/* No message was acked twice, and every one was acked in the end. */
static void
test_acks(size_t n)
{
	size_t twice = 0, never = 0;

	for (size_t i = 0; i < n; i++) {
		twice += null_record(i)->acks > 1;
		never += null_record(i)->acks == 0;
	}
	is_int(twice, 0, "no message was acked twice");
	is_int(never, 0, "every message was acked in the end");
}

int
main(int argc, char **argv)
{
	size_t n;

	fx_open(&fx, argc, argv);
	ok(core_ready(fx.worker.core) == 0, "the core connects to the database");
	test_transient();
	test_unclassified();
	test_delivery_count();
	n = fx_event("q.main", "fl-end", 0) + 1;
	fx_step(&fx);
	test_acks(n);
	test_run();
	fx_close(&fx);
	return tap_done();
}
