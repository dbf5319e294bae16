/* SPDX-License-Identifier: Apache-2.0 */
/* Dead-letter replay (bridge/core/deadletter_replay.c, deadletter_replay_one
 * in bridge/core/deadletter.h) against a real PostgreSQL, on dead letters the
 * core wrote for messages of the null adapter (adapters/null.h): a replay
 * after the fix applies the event once and marks the row; a second replay
 * is skipped, and with the mark cleared by hand it finds a duplicate; a
 * replay that fails the same way writes a new dead letter; an unclassified
 * failure leaves the row unmarked; rows that cannot be replayed are
 * skipped with the reason. Checks the return value, what it prints and the
 * rows. Run by tests/integration/core_null.py (see
 * tests/unit/pg_core_apply.c for the tables and routes). Prints TAP. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/deadletter.h"
#include "tests/unit/pg_fixture.h"
#include "tests/unit/tap.h"

static struct fixture fx;

/* Replay dead letter id; *printed gets what it printed (malloc'd). */
static int
replay(const char *id, char **printed)
{
	int rc;

	fx_capture_begin();
	rc = deadletter_replay_one(fx.settings, fx.side, id);
	*printed = fx_capture_end();
	return rc;
}

/* Replay id and check its return value and output (after "ID\t"). */
static void
replay_is(const char *id, int want_rc, const char *want_text, const char *desc)
{
	char *printed, want[512];
	int rc = replay(id, &printed);

	snprintf(want, sizeof(want), "%s\t%s\n", id, want_text);
	is_int(rc, want_rc, "%s: returns %d", desc, want_rc);
	is_str(printed, want, "%s: says so", desc);
	free(printed);
}

/* The id of the newest dead letter of event_id, as text. */
static char *
dl_id(const char *event_id)
{
	return fx_text(&fx, "SELECT max(id)::text FROM oncebridge.dead_letters WHERE event_id = $1", event_id, NULL);
}

static bool
replayed(const char *id)
{
	return fx_long(&fx, "SELECT count(*) FROM oncebridge.dead_letters WHERE id = $1::bigint AND replayed_at IS NOT NULL",
	    id, NULL) == 1;
}

/* Dead-letter event_id on r_main with a fault of sqlstate, delivered
 * until it is; returns the dead letter's id. */
static char *
dead_letter(const char *event_id, const char *sqlstate)
{
	size_t m;

	fx_fault(&fx, "r_main", event_id, sqlstate);
	m = fx_event("q.main", event_id, 7);
	for (int i = 0; i < 5 && null_record(m)->acks == 0; i++)
		fx_step(&fx);
	return dl_id(event_id);
}

static void
test_fixed(void)
{
	char *id = dead_letter("rp-1", "22012");

	ok(id != NULL, "a poison event left a dead letter");
	if (id == NULL)
		return;
	fx_clear_fault(&fx, "r_main", "rp-1");
	replay_is(id, 1, "replayed: applied by route \"r_main\"", "replay after the fix");
	is_int(fx_applied(&fx, "r_main", "rp-1"), 1, "replay after the fix: the event is applied once");
	ok(replayed(id), "replay after the fix: the row is marked replayed");
	is_int(fx_long(&fx, "SELECT count(*) FROM oncebridge.processed_events p JOIN oncebridge.dead_letters d"
	    " ON d.consumer = p.consumer AND d.event_id = p.event_id WHERE d.id = $1::bigint"
	    " AND p.processed_at > d.created_at", id, NULL), 1,
	    "replay after the fix: the claim is the replay's own, newer than the dead letter");
	replay_is(id, 0, "skipped: already replayed", "a second replay");
	fx_exec(&fx, "UPDATE oncebridge.dead_letters SET replayed_at = NULL WHERE id = $1::bigint", id, NULL, NULL);
	replay_is(id, 1, "replayed: route \"r_main\" had applied event rp-1 already, no effect",
	    "a replay with the mark cleared by hand");
	is_int(fx_applied(&fx, "r_main", "rp-1"), 1, "a replay with the mark cleared: still one business row");
	free(id);
}

static void
test_still_poison(void)
{
	char *id = dead_letter("rp-2", "22012"), *newer;

	replay_is(id ? id : "0", 1, "replayed: dead-lettered again (see the newest dead letters)",
	    "a replay that fails the same way");
	newer = dl_id("rp-2");
	ok(id && newer && strcmp(id, newer) != 0 && !replayed(newer),
	    "a replay that fails the same way: a new, unreplayed dead letter");
	ok(id && replayed(id), "a replay that fails the same way: the old row is marked replayed");
	is_int(fx_applied(&fx, "r_main", "rp-2"), 0, "a replay that fails the same way: no business row");
	free(id);
	free(newer);
}

static void
test_unclassified(void)
{
	char *id = dead_letter("rp-3", "XX000");

	ok(id != NULL, "an event failing with XX000 three times left a dead letter");
	if (id == NULL)
		return;
	replay_is(id, -1, "not replayed: the business SQL failed (see the log above); fix it and try again",
	    "a replay failing with an unclassified error");
	ok(!replayed(id), "a replay failing with an unclassified error: the row stays unmarked");
	is_int(fx_long(&fx, "SELECT count(*) FROM oncebridge.dead_letters WHERE event_id = 'rp-3'", NULL, NULL), 1,
	    "a replay failing with an unclassified error: no new dead letter");
	is_int(fx_claims(&fx, "r_main", "rp-3"), 0,
	    "a replay failing with an unclassified error: the released claim stays released, as for any retry");
	fx_clear_fault(&fx, "r_main", "rp-3");
	replay_is(id, 1, "replayed: applied by route \"r_main\"", "its replay after the fix");
	is_int(fx_applied(&fx, "r_main", "rp-3"), 1, "its replay after the fix: applied once");
	free(id);
}

static void
test_skipped(void)
{
	char big[1400], want[128], *id;
	size_t m;

	snprintf(big, sizeof(big), "{\"id\": \"rp-4\", \"n\": 1, \"pad\": \"%01300d\"}", 0);
	m = fx_send("q.main", big);
	fx_step(&fx);
	id = fx_text(&fx, "SELECT max(id)::text FROM oncebridge.dead_letters WHERE octet_length(payload) < payload_size",
	    NULL, NULL);
	ok(null_record(m)->outcome == OUTCOME_DEAD_LETTERED && id, "a payload over the limit left a dead letter");
	snprintf(want, sizeof(want), "skipped: only the first 1024 of %zu bytes were kept, it cannot be replayed",
	    strlen(big));
	replay_is(id ? id : "0", 0, want, "a truncated dead letter");
	free(id);
	replay_is("999999999", 0, "skipped: no such dead letter", "an unknown id");
	id = fx_text(&fx, "INSERT INTO oncebridge.dead_letters (broker, payload, payload_size, reason)"
	    " VALUES ('gone', '\\x7b7d', 2, 'test') RETURNING id::text", NULL, NULL);
	replay_is(id ? id : "0", 0, "skipped: broker \"gone\" has no routes in the configuration",
	    "a dead letter of a broker no longer configured");
	free(id);
}

static void
test_no_route(void)
{
	size_t m = fx_send("q.none", "{\"id\": \"rp-5\", \"n\": 1}");
	char *id;

	fx_step(&fx);
	id = fx_text(&fx, "SELECT max(id)::text FROM oncebridge.dead_letters WHERE consumer IS NULL"
	    " AND payload = convert_to($1, 'UTF8')", "{\"id\": \"rp-5\", \"n\": 1}", NULL);
	ok(null_record(m)->outcome == OUTCOME_DEAD_LETTERED && id, "a message no route takes left a dead letter");
	replay_is(id ? id : "0", 1, "replayed: dead-lettered again (see the newest dead letters)",
	    "a replay of it while still no route takes it");
	is_int(fx_long(&fx, "SELECT count(*) FROM oncebridge.dead_letters WHERE consumer IS NULL AND source = 'q.none'"
	    " AND payload = convert_to($1, 'UTF8')", "{\"id\": \"rp-5\", \"n\": 1}", NULL), 2,
	    "its replay wrote a second dead letter with the same source and payload");
	free(id);
}

int
main(int argc, char **argv)
{
	fx_open(&fx, argc, argv);
	ok(core_ready(fx.worker.core) == 0, "the core connects to the database");
	test_fixed();
	test_still_poison();
	test_unclassified();
	test_skipped();
	test_no_route();
	fx_close(&fx);
	return tap_done();
}
