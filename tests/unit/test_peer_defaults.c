/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the libpq dead-peer defaults: each is added only when the
 * conninfo (key=value or URI) does not set it, connect_timeout not when
 * PGCONNECT_TIMEOUT is set, and all of them for a bare database name. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bridge/core/peer_defaults.h"
#include "tests/unit/tap.h"

/* The value added for key, or NULL. */
static const char *
added(const char *conninfo, const char *key, int *count)
{
	const char *keys[PEER_DEFAULTS_MAX], *values[PEER_DEFAULTS_MAX];
	int k = 0;

	peer_defaults(conninfo, keys, values, &k);
	*count = k;
	for (int i = 0; i < k; i++)
		if (strcmp(keys[i], key) == 0)
			return values[i];
	return NULL;
}

int
main(void)
{
	int n;
	const char *v;

	unsetenv("PGCONNECT_TIMEOUT");
	v = added("host=db1,db2 dbname=app target_session_attrs=read-write", "keepalives_idle", &n);
	is_int(n, PEER_DEFAULTS_MAX, "a conninfo without any: all six defaults");
	ok(v && strcmp(v, "5") == 0, "keepalives_idle defaults to 5");
	v = added("host=db1 keepalives_idle=30 tcp_user_timeout=0", "keepalives_idle", &n);
	ok(v == NULL, "a keepalives_idle of the conninfo is kept");
	is_int(n, PEER_DEFAULTS_MAX - 2, "and so is its tcp_user_timeout; the other four are added");
	v = added("postgresql://db1,db2/app?connect_timeout=20&keepalives=0", "connect_timeout", &n);
	ok(v == NULL, "a URI's connect_timeout is kept");
	is_int(n, PEER_DEFAULTS_MAX - 2, "a URI's keepalives too");
	v = added("app", "tcp_user_timeout", &n);
	ok(v && strcmp(v, "10000") == 0, "a bare database name: tcp_user_timeout 10000 added");
	is_int(n, PEER_DEFAULTS_MAX, "a bare database name gets all six");
	setenv("PGCONNECT_TIMEOUT", "9", 1);
	v = added("host=db1", "connect_timeout", &n);
	ok(v == NULL, "PGCONNECT_TIMEOUT set: no connect_timeout added");
	is_int(n, PEER_DEFAULTS_MAX - 1, "the other five are");
	return tap_done();
}
