/* SPDX-License-Identifier: Apache-2.0 */
/* A deadline on every database round trip. A primary whose processes are
 * stopped (a storage freeze, a paused VM) keeps its kernel answering: TCP
 * keepalives and tcp_user_timeout never fire, and a blocking libpq call
 * waits forever. Every caller therefore runs each round trip between
 * rt_begin() and rt_end() (or through the rt_exec* wrappers); a watchdog
 * thread of the process shuts the socket down once a round trip passes
 * its deadline, so the blocked call returns a connection error into the
 * caller's existing reconnect path. */
#ifndef ONCEBRIDGE_ROUNDTRIP_H
#define ONCEBRIDGE_ROUNDTRIP_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

struct settings;

/* The deadline of this process's round trips: database.response_timeout_ms,
 * or when that is 0, statement_timeout_ms plus 5 s (65 s without a
 * statement_timeout), so that a slow but live statement is not cut. */
int64_t rt_timeout_ms(const struct settings *s);
void rt_configure(const struct settings *s);

/* Start a round trip on conn: its deadline is now plus the timeout. A
 * second rt_begin on the same conn moves the deadline (progress). */
void rt_begin(PGconn *conn);

/* End it. Returns false, after logging a warning, when the deadline
 * passed and the session was shut down (the caller's call returned a
 * connection error; PQstatus is CONNECTION_BAD). */
bool rt_end(PGconn *conn);

/* The blocking libpq calls, each one round trip under the deadline. */
PGresult *rt_exec(PGconn *conn, const char *sql);
PGresult *rt_exec_params(PGconn *conn, const char *sql, int n, const Oid *types,
    const char *const *values, const int *lengths, const int *formats, int result_format);
PGresult *rt_exec_prepared(PGconn *conn, const char *name, int n, const char *const *values,
    const int *lengths, const int *formats, int result_format);
PGresult *rt_prepare(PGconn *conn, const char *name, const char *sql, int n, const Oid *types);

#endif
