/* SPDX-License-Identifier: Apache-2.0 */
/* The check, at each database connect, that a failover cannot lose
 * effects whose messages were already acked: when the primary has
 * standbys and none of them is synchronous, one warning per daemon run
 * (shared by the supervisor and every process it forks), and again only
 * when the answer changes. */
#ifndef ONCEBRIDGE_STANDBY_CHECK_H
#define ONCEBRIDGE_STANDBY_CHECK_H

#include <libpq-fe.h>

/* Map the state shared with the processes forked later; the supervisor
 * calls it before it starts any. Without it each process keeps its own. */
void standby_check_init(void);

/* Look at pg_stat_replication and synchronous_standby_names on conn and
 * log when the answer differs from the last one logged. */
void standby_check(PGconn *conn);

#endif
