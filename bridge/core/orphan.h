/* SPDX-License-Identifier: Apache-2.0 */
/* Server-side limits on oncebridge's own database sessions, so that a
 * session it gave up on (a round trip past its deadline, a path that went
 * dark) does not live on at the server holding what the next session
 * needs. */
#ifndef ONCEBRIDGE_ORPHAN_H
#define ONCEBRIDGE_ORPHAN_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Ask the server to end this session when it stays idle inside a
 * transaction for idle_tx_ms, and (idle_ms > 0, PostgreSQL 14 and later)
 * when it stays idle outside one for idle_ms. false after logging why. */
bool orphan_limits(PGconn *conn, int64_t idle_tx_ms, int64_t idle_ms);

#endif
