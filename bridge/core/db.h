/* SPDX-License-Identifier: Apache-2.0 */
/* The PostgreSQL session of one worker: connect, check the schema, prepare
 * the core's statements and each route's business SQL; and the one check
 * of a result (success, SQLSTATE, message, failure class) that every file
 * running SQL uses. */
#ifndef ONCEBRIDGE_DB_H
#define ONCEBRIDGE_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "bridge/config/diag.h"
#include "bridge/core/failure.h"

struct settings;
struct broker;

#define ONCEBRIDGE_SCHEMA_VERSION 6

/* The connection as the daemon's sessions make it (the conninfo, libpq's
 * dead-peer defaults, application_name, the password), not yet checked:
 * the caller looks at PQstatus(). */
PGconn *db_connect_params(const struct settings *s, const char *appname);

/* Connect as application_name appname and check the schema version.
 * Returns a ready connection, or NULL after logging why (the caller backs
 * off and tries again). */
PGconn *db_open(const struct settings *s, const char *appname);

/* db_open, then prepare the core's statements and each route's business
 * SQL. */
PGconn *db_connect(const struct settings *s, const struct broker *b);

/* The one check of a result: true when res is a successful command or
 * query (PGRES_COMMAND_OK, PGRES_TUPLES_OK). Otherwise, when sqlstate is
 * not NULL, fills it (6 bytes; "" when the server sent none) and, when
 * errmsg is not NULL, *errmsg (allocated) with the primary message of res,
 * or of the connection when res has none or is NULL. */
bool db_ok(PGconn *conn, const PGresult *res, char sqlstate[6], char **errmsg);

/* The failure class (bridge/core/failure.h) of a failed result whose SQLSTATE
 * is sqlstate ("" when none): transient when res is NULL or the
 * connection is gone, else by the SQLSTATE. */
enum failure_class db_failure(PGconn *conn, const PGresult *res, const char sqlstate[6]);

/* db_ok, or false after logging "could not WHAT: message" as a warning. */
bool db_ok_or_warn(PGconn *conn, const PGresult *res, const char *what);

/* Run a command without parameters, checked with db_ok_or_warn. */
bool db_exec(PGconn *conn, const char *sql, const char *what);

/* Name of the prepared business statement of route index i. */
void db_route_stmt(char *buf, size_t size, size_t route_index);

/* Check a libpq conninfo without connecting: an error when libpq cannot
 * parse it or it holds a password (that belongs in password_file or
 * password_env), a warning when its sslmode encrypts without checking
 * that the server's certificate names the host ("require", "verify-ca"). */
void db_check_conninfo(const char *conninfo, const char *file, int line, struct diag *d);

#endif
