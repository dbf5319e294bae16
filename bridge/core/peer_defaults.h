/* SPDX-License-Identifier: Apache-2.0 */
/* libpq settings that detect a dead database peer, added to a session's
 * parameters when the operator's conninfo sets none of its own: TCP
 * keepalives, tcp_user_timeout, and a connect_timeout per host (so that a
 * host that does not answer does not stop libpq from trying the next). */
#ifndef ONCEBRIDGE_PEER_DEFAULTS_H
#define ONCEBRIDGE_PEER_DEFAULTS_H

#define PEER_DEFAULTS_MAX 6

/* Append to keys/values (from index *k on; room for PEER_DEFAULTS_MAX
 * more) each default whose key conninfo (key=value or URI) does not set;
 * connect_timeout also not when PGCONNECT_TIMEOUT is set. The values are
 * static strings. A conninfo libpq cannot parse (a bare database name)
 * sets nothing. */
void peer_defaults(const char *conninfo, const char **keys, const char **values, int *k);

#endif
