/* SPDX-License-Identifier: Apache-2.0 */
/* What the C tests of the core against a real PostgreSQL share
 * (tests/unit/pg_core_*.c, run by tests/integration/core_null.py): the
 * configuration with its null broker, a worker on it, messages for the
 * null adapter, a side session to count rows with, and stdout captured
 * around code that prints. May call adapters/null.h, bridge/config/settings.h
 * and libpq. */
#ifndef ONCEBRIDGE_PG_FIXTURE_H
#define ONCEBRIDGE_PG_FIXTURE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "adapters/null.h"
#include "bridge/config/diag.h"
#include "bridge/config/settings.h"

struct fixture {
	struct settings *settings;
	struct diag diag;
	const struct broker *broker; /* the first one */
	PGconn *side;                /* the test's own session */
	struct worker worker;
	volatile int stop;
};

/* Load the configuration at argv[1] (with the null adapter registered),
 * open the side session and a worker on the first broker; exits with
 * status 2 when it cannot. */
void fx_open(struct fixture *fx, int argc, char **argv);
void fx_close(struct fixture *fx);

/* Queue a message from source with payload (text); returns its number. */
size_t fx_send(const char *source, const char *payload);

/* Queue {"id": id, "n": n} from source; returns its number. */
size_t fx_event(const char *source, const char *id, int n);

/* Deliver one batch of at most the broker's batch_size; returns its status. */
enum apply_status fx_step(struct fixture *fx);

/* Run statement sql with up to three text parameters on the side
 * session; false (with a TAP comment) when it failed. */
bool fx_exec(struct fixture *fx, const char *sql, const char *p1, const char *p2, const char *p3);

/* The first column of the first row of sql (up to two parameters), as a
 * number (-1 when there is none or it failed) or as text (malloc'd, NULL
 * when there is none, SQL NULL or it failed). */
long fx_long(struct fixture *fx, const char *sql, const char *p1, const char *p2);
char *fx_text(struct fixture *fx, const char *sql, const char *p1, const char *p2);

/* Rows of table applied for (route, event_id). */
long fx_applied(struct fixture *fx, const char *route, const char *event_id);

/* The name of outcome o, and of the last outcome of message id ("(no
 * record)" when it has none). */
const char *fx_outcome_name(enum apply_outcome o);
const char *fx_last_outcome(size_t id);

/* TAP point (tests/unit/tap.h): message id's last outcome is want. */
#define fx_is_outcome(id, want, ...) is_str(fx_last_outcome(id), fx_outcome_name(want), __VA_ARGS__)

/* Make the business SQL of (route, event_id) fail with sqlstate (or
 * 'kill': the session terminates itself), and stop it again. */
void fx_fault(struct fixture *fx, const char *route, const char *event_id, const char *sqlstate);
void fx_clear_fault(struct fixture *fx, const char *route, const char *event_id);

/* Claims of (route, event_id) in processed_events. */
long fx_claims(struct fixture *fx, const char *route, const char *event_id);

/* Send stdout to a temporary file until fx_capture_end, which returns
 * what was printed (malloc'd). */
void fx_capture_begin(void);
char *fx_capture_end(void);

#endif
