/* SPDX-License-Identifier: Apache-2.0 */
/* Dead-peer defaults for libpq (see peer_defaults.h). Without them a
 * blackholed database is noticed only when the kernel gives up on the
 * connection: about 15 minutes of retransmissions with data in flight,
 * never on an idle session. With them: an idle session is probed after
 * 5 s and dropped after 3 unanswered probes 2 s apart (about 11 s);
 * data unacknowledged for 10 s drops the connection; a host that does
 * not complete a connection within 5 s is left for the next one. A
 * stopped server whose kernel still answers is none of these: that is
 * the round-trip deadline's job (roundtrip.c). */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bridge/core/peer_defaults.h"

static const struct {
	const char *key;
	const char *value;
} defaults[PEER_DEFAULTS_MAX] = {
	{ "keepalives", "1" },
	{ "keepalives_idle", "5" },
	{ "keepalives_interval", "2" },
	{ "keepalives_count", "3" },
	{ "tcp_user_timeout", "10000" },
	{ "connect_timeout", "5" },
};

static bool
is_set(const PQconninfoOption *opts, const char *key)
{
	for (const PQconninfoOption *o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, key) == 0)
			return o->val != NULL && o->val[0] != '\0';
	return false;
}

void
peer_defaults(const char *conninfo, const char **keys, const char **values, int *k)
{
	char *err = NULL;
	PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, &err) : NULL;

	PQfreemem(err);
	for (size_t i = 0; i < PEER_DEFAULTS_MAX; i++) {
		if (is_set(opts, defaults[i].key))
			continue;
		if (strcmp(defaults[i].key, "connect_timeout") == 0 && getenv("PGCONNECT_TIMEOUT"))
			continue;
		keys[*k] = defaults[i].key;
		values[(*k)++] = defaults[i].value;
	}
	PQconninfoFree(opts);
}
