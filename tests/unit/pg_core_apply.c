/* SPDX-License-Identifier: Apache-2.0 */
/* The idempotent-apply core against a real PostgreSQL, fed by the null
 * adapter (adapters/null.h): claims, duplicates within and across
 * batches and routes, every failure class, savepoint isolation and the
 * dead-letter rows, each checked per message (outcome, acks, nacks) and
 * in the tables (rows of "applied" have no unique key, so a second
 * application shows). Run by tests/integration/core_null.py, which
 * creates the tables, the fault trigger (table "faults": a SQLSTATE to
 * raise for a (route, event ID), or 'kill') and the routes:
 * r_main on q.main, r_a and r_b on q.both, r_uniq on q.uniq (a business
 * unique key), r_nowait and r_wait on q.nowait and q.wait (a row lock,
 * without and with waiting), statement_timeout_ms 1000, max_payload 1024,
 * max_attempts 3. Prints TAP. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/pg_fixture.h"
#include "tests/unit/tap.h"

static struct fixture fx;

/* A column of the dead letter of event_id, as text. */
static char *
dl_sqlstate(const char *event_id)
{
	return fx_text(&fx, "SELECT sqlstate FROM oncebridge.dead_letters WHERE event_id = $1", event_id, NULL);
}

static void
test_claims(void)
{
	size_t id[3];
	long rows = 0;

	id[0] = fx_event("q.main", "ap-c1", 1);
	id[1] = fx_event("q.main", "ap-c2", 2);
	id[2] = fx_event("q.main", "ap-c3", 3);
	is_int(fx_step(&fx), APPLY_OK, "claims: a batch of three new events commits");
	for (int i = 0; i < 3; i++)
		rows += null_record(id[i])->outcome == OUTCOME_APPLIED && null_record(id[i])->acks == 1;
	is_int(rows, 3, "claims: each of the three is applied and acked once");
	is_int(fx_long(&fx, "SELECT count(*) FROM applied WHERE event_id LIKE 'ap-c%'", NULL, NULL), 3,
	    "claims: three business rows");
	is_int(fx_long(&fx, "SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'r_main'"
	    " AND event_id LIKE 'ap-c%'", NULL, NULL), 3, "claims: three claims (r_main, event ID) committed");
	is_int(fx_long(&fx, "SELECT sum(n) FROM applied WHERE event_id LIKE 'ap-c%'", NULL, NULL), 6,
	    "claims: the parameters came from each message's payload");
}

static void
test_duplicates(void)
{
	size_t a, b, c, d, e, f, g;
	uint64_t dups = core_stats(fx.worker.core)->duplicates;

	a = fx_event("q.main", "ap-d1", 1);
	b = fx_event("q.main", "ap-d1", 1);
	c = fx_event("q.main", "ap-d2", 2);
	fx_step(&fx);
	fx_is_outcome(a, OUTCOME_APPLIED, "duplicates: the first copy in a batch is applied");
	fx_is_outcome(b, OUTCOME_DUPLICATE, "duplicates: the second copy in the same batch is a duplicate");
	ok(null_record(b)->acks == 1, "duplicates: the duplicate in the batch is acked");
	is_int(fx_applied(&fx, "r_main", "ap-d1"), 1, "duplicates: one row for two copies in a batch");
	d = fx_event("q.main", "ap-d1", 1);
	e = fx_event("q.main", "ap-d2", 2);
	f = fx_event("q.main", "ap-d3", 3);
	fx_step(&fx);
	ok(null_record(d)->outcome == OUTCOME_DUPLICATE && null_record(e)->outcome == OUTCOME_DUPLICATE,
	    "duplicates: copies in a later batch are duplicates");
	fx_is_outcome(f, OUTCOME_APPLIED, "duplicates: a new event beside them is applied");
	g = fx_event("q.main", "ap-d3", 3);
	fx_step(&fx);
	fx_is_outcome(g, OUTCOME_DUPLICATE, "duplicates: a copy alone in its batch (the one-message path) is a duplicate");
	is_int(fx_applied(&fx, "r_main", "ap-d1") + fx_applied(&fx, "r_main", "ap-d2") +
	    fx_applied(&fx, "r_main", "ap-d3"), 3, "duplicates: seven copies of three events, three rows");
	is_int(core_stats(fx.worker.core)->duplicates - dups, 4, "duplicates: the core counted four duplicates");
	fx_is_outcome(c, OUTCOME_APPLIED, "duplicates: a new event after two copies in the batch is applied");
}

static void
test_two_routes(void)
{
	size_t a, b, c, d, e;

	a = fx_event("q.both", "ap-b1", 1);
	fx_step(&fx);
	fx_is_outcome(a, OUTCOME_APPLIED, "two routes: a message both routes take is applied");
	is_int(fx_applied(&fx, "r_a", "ap-b1") + fx_applied(&fx, "r_b", "ap-b1"), 2, "two routes: once by each");
	b = fx_event("q.both", "ap-b1", 1);
	fx_step(&fx);
	fx_is_outcome(b, OUTCOME_DUPLICATE, "two routes: its copy is a duplicate for both");
	fx_fault(&fx, "r_b", "ap-b2", "XX000");
	c = fx_event("q.both", "ap-b2", 2);
	fx_step(&fx);
	fx_is_outcome(c, OUTCOME_DEFERRED, "two routes: one route retrying defers the message");
	ok(null_record(c)->nacks == 1 && null_record(c)->acks == 0, "two routes: the deferred message is nacked, not acked");
	ok(fx_applied(&fx, "r_a", "ap-b2") == 1 && fx_applied(&fx, "r_b", "ap-b2") == 0,
	    "two routes: the other route's effect committed on its own");
	fx_clear_fault(&fx, "r_b", "ap-b2");
	fx_step(&fx);
	fx_is_outcome(c, OUTCOME_APPLIED, "two routes: the redelivery applies the retrying route");
	ok(fx_applied(&fx, "r_a", "ap-b2") == 1 && fx_applied(&fx, "r_b", "ap-b2") == 1,
	    "two routes: after the redelivery each route applied the event once");
	fx_fault(&fx, "r_b", "ap-b3", "22012");
	d = fx_event("q.both", "ap-b3", 3);
	e = fx_event("q.both", "ap-b4", 4);
	fx_step(&fx);
	fx_is_outcome(d, OUTCOME_DEAD_LETTERED, "two routes: a dead letter on one route is not hidden by the other's effect");
	fx_is_outcome(e, OUTCOME_APPLIED, "two routes: its neighbour is applied");
	is_int(fx_long(&fx, "SELECT count(*) FROM oncebridge.dead_letters WHERE event_id = 'ap-b3' AND consumer = 'r_b'",
	    NULL, NULL), 1, "two routes: the dead letter names the route that failed");
	is_int(fx_applied(&fx, "r_a", "ap-b3"), 1, "two routes: the other route applied the dead-lettered event");
}

/* A full batch on two routes mixing new events, events claimed by an
 * earlier batch and second copies within the batch: the claim's answer
 * (the pairs it inserted) is mapped back to the first copy of each. */
static void
test_mixed_batch(void)
{
	size_t id[50];
	char ev[32];
	int wrong = 0;

	for (int i = 0; i < 15; i++) {
		snprintf(ev, sizeof(ev), "ap-m%02d", i);
		fx_event("q.both", ev, i);
	}
	is_int(fx_step(&fx), APPLY_OK, "mixed batch: fifteen events commit first");
	for (int i = 0; i < 35; i++) { /* ap-m00..14 again, ap-m15..34 new */
		snprintf(ev, sizeof(ev), "ap-m%02d", i);
		id[i] = fx_event("q.both", ev, i);
	}
	for (int i = 35; i < 50; i++) { /* second copies of ap-m20..34 */
		snprintf(ev, sizeof(ev), "ap-m%02d", i - 15);
		id[i] = fx_event("q.both", ev, i - 15);
	}
	is_int(fx_step(&fx), APPLY_OK, "mixed batch: a batch of fifty messages commits");
	for (int i = 0; i < 50; i++)
		wrong += null_record(id[i])->outcome != (i >= 15 && i < 35 ? OUTCOME_APPLIED : OUTCOME_DUPLICATE);
	is_int(wrong, 0, "mixed batch: the first copy of each new event is applied, every other message is a duplicate");
	is_int(fx_long(&fx, "SELECT count(*) FROM applied WHERE event_id LIKE 'ap-m%'", NULL, NULL), 70,
	    "mixed batch: 35 events applied once on each of two routes");
	is_int(fx_long(&fx, "SELECT count(DISTINCT (route, event_id)) FROM applied WHERE event_id LIKE 'ap-m%'", NULL, NULL), 70,
	    "mixed batch: no (route, event) applied twice");
}

static void
test_savepoints(void)
{
	size_t id[5];
	char eid[16];
	int applied = 0;
	char *s;

	fx_fault(&fx, "r_main", "ap-s3", "22012");
	for (int i = 0; i < 5; i++) {
		snprintf(eid, sizeof(eid), "ap-s%d", i + 1);
		id[i] = fx_event("q.main", eid, i);
	}
	is_int(fx_step(&fx), APPLY_OK, "savepoints: a batch with one failing statement commits");
	fx_is_outcome(id[2], OUTCOME_DEAD_LETTERED, "savepoints: the failing event (22012) is dead-lettered");
	for (int i = 0; i < 5; i++)
		applied += i != 2 && null_record(id[i])->outcome == OUTCOME_APPLIED && null_record(id[i])->acks == 1;
	is_int(applied, 4, "savepoints: its four neighbours are applied and acked");
	is_int(fx_long(&fx, "SELECT count(*) FROM applied WHERE event_id IN ('ap-s1','ap-s2','ap-s4','ap-s5')",
	    NULL, NULL), 4, "savepoints: one row for each neighbour");
	is_int(fx_applied(&fx, "r_main", "ap-s3"), 0, "savepoints: no row for the failing event");
	is_int(fx_claims(&fx, "r_main", "ap-s3"), 1, "savepoints: the dead-lettered event stays claimed");
	s = dl_sqlstate("ap-s3");
	is_str(s, "22012", "savepoints: the dead letter keeps the SQLSTATE");
	free(s);
	s = fx_text(&fx, "SELECT reason || ' | ' || error_detail || ' | ' || attempts || ' | ' || source || ' | ' || topic"
	    " FROM oncebridge.dead_letters WHERE event_id = 'ap-s3'", NULL, NULL);
	is_str(s, "business SQL failed: injected fault 22012 for event ap-s3 | injected fault 22012 for event ap-s3 | 1"
	    " | q.main | ev.q.main", "savepoints: reason, detail, attempts, source and topic of the dead letter");
	free(s);
	s = fx_text(&fx, "SELECT convert_from(payload, 'UTF8') FROM oncebridge.dead_letters WHERE event_id = 'ap-s3'",
	    NULL, NULL);
	is_str(s, "{\"id\": \"ap-s3\", \"n\": 2}", "savepoints: the dead letter keeps the raw payload");
	free(s);
	fx_clear_fault(&fx, "r_main", "ap-s3");
}

/* Business SQL failing with sqlstate (injected, or real when NULL: n is
 * not an integer) beside a good event: the failing one is dead-lettered. */
static void
poison_case(const char *sqlstate, const char *eid, const char *want_state)
{
	char good[32], body[128];
	size_t bad, ok_id;
	char *s;

	snprintf(good, sizeof(good), "%s-ok", eid);
	if (sqlstate)
		fx_fault(&fx, "r_main", eid, sqlstate);
	snprintf(body, sizeof(body), "{\"id\": \"%s\", \"n\": %s}", eid, sqlstate ? "1" : "\"abc\"");
	bad = fx_send("q.main", body);
	ok_id = fx_event("q.main", good, 1);
	fx_step(&fx);
	s = dl_sqlstate(eid);
	ok(null_record(bad)->outcome == OUTCOME_DEAD_LETTERED && null_record(bad)->acks == 1 &&
	    null_record(ok_id)->outcome == OUTCOME_APPLIED && s && strcmp(s, want_state) == 0,
	    "poison: %s from the business SQL is dead-lettered (SQLSTATE kept) and acked, its neighbour applied",
	    want_state);
	free(s);
}

static void
test_poison_sql(void)
{
	size_t a, b;

	poison_case("23514", "ap-p1", "23514");
	poison_case("P0001", "ap-p2", "P0001");
	poison_case(NULL, "ap-p3", "22P02");
	a = fx_send("q.uniq", "{\"id\": \"ap-u1\", \"k\": \"same\"}");
	b = fx_send("q.uniq", "{\"id\": \"ap-u2\", \"k\": \"same\"}");
	fx_step(&fx);
	ok(null_record(a)->outcome == OUTCOME_APPLIED && null_record(b)->outcome == OUTCOME_DEAD_LETTERED,
	    "poison: a real unique violation of the business table dead-letters the second event only");
	{
		char *s = dl_sqlstate("ap-u2");

		is_str(s, "23505", "poison: its dead letter has SQLSTATE 23505");
		free(s);
	}
	is_int(fx_long(&fx, "SELECT count(*) FROM uniq WHERE event_id = 'ap-u1'", NULL, NULL), 1,
	    "poison: the first event's business row is there");
}

/* The dead letter whose payload is text: its column col as text. */
static char *
dl_by_payload(const char *what, const char *payload)
{
	if (strcmp(what, "reason") == 0)
		return fx_text(&fx, "SELECT reason FROM oncebridge.dead_letters WHERE payload = convert_to($1, 'UTF8')",
		    payload, NULL);
	return fx_text(&fx, "SELECT coalesce(consumer, '(null)') || ' ' || coalesce(event_id, '(null)')"
	    " FROM oncebridge.dead_letters WHERE payload = convert_to($1, 'UTF8')", payload, NULL);
}

static void
test_poison_input(void)
{
	static const struct { const char *source, *payload, *reason, *who, *desc; } cases[] = {
		{ "q.main", "{not json", "invalid JSON", "r_main (null)", "invalid JSON" },
		{ "q.main", "{\"n\": 1}", "missing event ID", "r_main (null)", "a payload without an event ID" },
		{ "q.main", "{\"id\": \"\", \"n\": 1}", "event ID is empty", "r_main (null)", "an empty event ID" },
		{ "q.main", "{\"id\": [1], \"n\": 1}", "event ID is neither a string nor an integer", "r_main (null)",
		    "an event ID that is an array" },
		{ "q.none", "{\"id\": \"ap-i5\", \"n\": 1}", "no route of broker \"mem\" matches this message",
		    "(null) (null)", "a message no route takes" },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]), ids[8], good;

	for (size_t i = 0; i < n; i++)
		ids[i] = fx_send(cases[i].source, cases[i].payload);
	good = fx_event("q.main", "ap-i-ok", 1);
	is_int(fx_step(&fx), APPLY_OK, "input: a batch of poison and one good event commits");
	fx_is_outcome(good, OUTCOME_APPLIED, "input: the good event among the poison is applied");
	for (size_t i = 0; i < n; i++) {
		char *reason = dl_by_payload("reason", cases[i].payload), *who = dl_by_payload("who", cases[i].payload);

		ok(null_record(ids[i])->outcome == OUTCOME_DEAD_LETTERED && null_record(ids[i])->acks == 1 &&
		    reason && strstr(reason, cases[i].reason) && who && strcmp(who, cases[i].who) == 0,
		    "input: %s is dead-lettered with reason \"%s\", route and event ID \"%s\"", cases[i].desc,
		    cases[i].reason, cases[i].who);
		if (reason == NULL || who == NULL || !strstr(reason, cases[i].reason) || strcmp(who, cases[i].who) != 0)
			printf("#   got: %s / %s\n", reason ? reason : "(none)", who ? who : "(none)");
		free(reason);
		free(who);
	}
}

static void
test_oversized(void)
{
	char big[2100], body[400], want[128], longid[201];
	size_t a, b;
	char *s;

	snprintf(big, sizeof(big), "{\"id\": \"ap-big\", \"n\": 1, \"pad\": \"%01980d\"}", 0);
	a = fx_send("q.main", big);
	memset(longid, 'x', 200);
	longid[200] = '\0';
	snprintf(body, sizeof(body), "{\"id\": \"%s\", \"n\": 1}", longid);
	b = fx_send("q.main", body);
	fx_step(&fx);
	fx_is_outcome(a, OUTCOME_DEAD_LETTERED, "limits: a payload over limits.max_payload is dead-lettered");
	s = fx_text(&fx, "SELECT payload_size || ' ' || octet_length(payload) || ' ' || reason"
	    " FROM oncebridge.dead_letters WHERE position(convert_to($1, 'UTF8') in payload) = 1",
	    "{\"id\": \"ap-big\", ", NULL);
	snprintf(want, sizeof(want), "%zu 1024 payload of %zu bytes exceeds limits.max_payload (1024)", strlen(big),
	    strlen(big));
	is_str(s, want, "limits: its dead letter keeps the size, the reason and the first max_payload bytes");
	free(s);
	fx_is_outcome(b, OUTCOME_DEAD_LETTERED, "limits: an event ID over limits.max_event_id_length is dead-lettered");
	s = fx_text(&fx, "SELECT reason FROM oncebridge.dead_letters WHERE payload = convert_to($1, 'UTF8')", body, NULL);
	is_str(s, "event ID is too long", "limits: its dead letter says why");
	free(s);
}

int
main(int argc, char **argv)
{
	fx_open(&fx, argc, argv);
	ok(core_ready(fx.worker.core) == 0, "the core connects to the database");
	test_claims();
	test_duplicates();
	test_two_routes();
	test_mixed_batch();
	test_savepoints();
	test_poison_sql();
	test_poison_input();
	test_oversized();
	fx_close(&fx);
	return tap_done();
}
