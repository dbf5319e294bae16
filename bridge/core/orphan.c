/* SPDX-License-Identifier: Apache-2.0 */
/* A session oncebridge dropped (the round-trip deadline shut its socket,
 * or the network path died) is not gone for the server: behind a
 * half-open connection its backend waits for the next command for as long
 * as the server's TCP keepalives get answers, which a frozen peer's or a
 * middlebox's kernel gives. Inside a transaction it keeps the claims it
 * made (the processed_events keys of the batch), and the redelivered batch
 * on the new session waits on them until statement_timeout, again and
 * again; outside one it keeps session-level advisory locks, and the
 * ordered outbox relay stands by behind its own ghost. Measured before
 * these limits (tests/integration/net_pg.py): a worker retried one batch
 * for minutes, the relay never took its lock back. The server ends such a
 * session itself after idle_in_transaction_session_timeout (and
 * idle_session_timeout for sessions that hold session-level locks). */
#include "config.h"

#include <stdio.h>

#include "bridge/common/log.h"
#include "bridge/core/orphan.h"
#include "bridge/core/roundtrip.h"

static bool
set_ms(PGconn *conn, const char *name, int64_t ms)
{
	char sql[96];
	PGresult *res;
	bool ok;

	snprintf(sql, sizeof(sql), "SET %s = %lld", name, (long long)ms);
	res = rt_exec(conn, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		log_warn("could not set \"%s\": %s", name, PQerrorMessage(conn));
	PQclear(res);
	return ok;
}

bool
orphan_limits(PGconn *conn, int64_t idle_tx_ms, int64_t idle_ms)
{
	if (!set_ms(conn, "idle_in_transaction_session_timeout", idle_tx_ms))
		return false;
	if (idle_ms > 0 && PQserverVersion(conn) >= 140000)
		return set_ms(conn, "idle_session_timeout", idle_ms);
	return true;
}
