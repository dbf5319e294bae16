/* The PostgreSQL session of one worker: connect, check the schema, prepare
 * the core's statements and each route's business SQL. */
#ifndef ONCEBRIDGE_DB_H
#define ONCEBRIDGE_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "bridge/diag.h"

struct settings;
struct broker;

#define ONCEBRIDGE_SCHEMA_VERSION 4

/* Connect as application_name appname and check the schema version.
 * Returns a ready connection, or NULL after logging why (the caller backs
 * off and tries again). */
PGconn *db_open(const struct settings *s, const char *appname);

/* db_open, then prepare the core's statements and each route's business
 * SQL. */
PGconn *db_connect(const struct settings *s, const struct broker *b);

/* Run a command without parameters; returns its SQLSTATE class failure
 * (FAILURE_NONE on success) and fills sqlstate (6 bytes) on failure. */
int db_command(PGconn *conn, const char *sql, char sqlstate[6], char **errmsg);

/* SQLSTATE and message of a failed result (or of the connection when res is
 * NULL). */
void db_error(PGconn *conn, const PGresult *res, char sqlstate[6], char **errmsg);

/* Name of the prepared business statement of route index i. */
void db_route_stmt(char *buf, size_t size, size_t route_index);

/* Check a libpq conninfo without connecting: an error when libpq cannot
 * parse it or it holds a password (that belongs in password_file or
 * password_env), a warning when its sslmode encrypts without checking
 * that the server's certificate names the host ("require", "verify-ca"). */
void db_check_conninfo(const char *conninfo, const char *file, int line, struct diag *d);

#endif
