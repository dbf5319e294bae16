/* SPDX-License-Identifier: Apache-2.0 */
/* "oncebridge check": whether each precondition of exactly-once holds on
 * the configured servers (bridge/daemon/check.c), the database's part in
 * bridge/daemon/check_db.c, each broker's in its adapter (check_live);
 * and "oncebridge try" (bridge/daemon/try.c). */
#ifndef ONCEBRIDGE_CHECK_H
#define ONCEBRIDGE_CHECK_H

#include <libpq-fe.h>

#include "bridge/config/diag.h"
#include "bridge/config/report.h"

struct settings;
struct route;

/* oncebridge check [--json] [--strict]: d holds the warnings of loading
 * the configuration. Returns the exit status. */
int check_cli(const struct settings *s, const struct diag *d, int argc, char **argv);

/* The database's checks: connection, durability settings, standbys,
 * schema, grants, each route's business SQL. Reads only. */
void check_db(const struct settings *s, struct report *r);

/* Connect as oncebridge's role with the configured credentials, or NULL
 * with *why set (allocated). */
PGconn *check_db_connect(const struct settings *s, const char *appname, char **why);

/* Prepare the business SQL of r on conn as name, with the parameter types
 * a worker gives it; NULL on success, else the failed result. */
PGresult *check_prepare_route(PGconn *conn, const struct route *r, const char *name);

/* oncebridge try ROUTE [options] [FILE|-]. Returns the exit status. */
int try_cli(const struct settings *s, int argc, char **argv);

#endif
