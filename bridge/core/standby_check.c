/* SPDX-License-Identifier: Apache-2.0 */
/* Is there a standby that a failover could promote without the commits
 * oncebridge already acked? (see standby_check.h)
 *
 * pg_stat_replication lists a row per standby to every role, but its
 * details (sync_state) only to superusers and members of pg_read_all_stats
 * (pg_monitor). synchronous_standby_names is readable by all. So: no row
 * means a single primary (nothing to say); rows and an empty
 * synchronous_standby_names mean every standby is asynchronous, whatever
 * the role; otherwise the sync_state column decides, and when the role
 * cannot see it we say so once, at info level, instead of guessing. */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bridge/common/log.h"
#include "bridge/core/db.h"
#include "bridge/core/roundtrip.h"
#include "bridge/core/standby_check.h"

enum standby_state {
	STANDBY_UNSEEN = 0,     /* nothing logged yet */
	STANDBY_SAFE,           /* no standby, or a synchronous one */
	STANDBY_ASYNC,          /* standbys, none synchronous */
	STANDBY_HIDDEN,         /* standbys, sync_state not visible to this role */
};

#define SQL_STANDBYS \
	"SELECT count(*), count(*) FILTER (WHERE sync_state IN ('sync', 'quorum')), count(sync_state)," \
	" current_setting('synchronous_standby_names') FROM pg_stat_replication"

static atomic_int local_state;
static atomic_int *shared_state = &local_state;

void
standby_check_init(void)
{
	void *p;

	if (shared_state != &local_state)
		return;
	p = mmap(NULL, sizeof(atomic_int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	shared_state = p;
	atomic_store(shared_state, STANDBY_UNSEEN);
}

static enum standby_state
standby_state_of(long n, long n_sync, long n_visible, const char *names)
{
	if (n == 0)
		return STANDBY_SAFE;
	if (names[0] == '\0')
		return STANDBY_ASYNC;
	if (n_visible == 0)
		return STANDBY_HIDDEN;
	return n_sync > 0 ? STANDBY_SAFE : STANDBY_ASYNC;
}

static void
standby_log(enum standby_state now, enum standby_state before, long n)
{
	if (now == STANDBY_ASYNC)
		log_warn("the database primary has %ld standby server(s) and none is synchronous: a failover to "
		    "one of them may lose effects whose messages oncebridge already acked; name a standby in "
		    "synchronous_standby_names (synchronous_commit \"on\" or \"remote_apply\")", n);
	else if (now == STANDBY_HIDDEN)
		log_info("cannot tell whether a standby of the database is synchronous: the role needs "
		    "pg_monitor (or pg_read_all_stats) to see pg_stat_replication.sync_state");
	else if (before == STANDBY_ASYNC)
		log_notice("the database primary now has no asynchronous-only standbys: %s",
		    n > 0 ? "a synchronous standby is connected" : "no standby is connected");
}

void
standby_check(PGconn *conn)
{
	PGresult *res = rt_exec(conn, SQL_STANDBYS);
	enum standby_state now, before;
	long n;

	if (!db_ok(conn, res, NULL, NULL) || PQntuples(res) != 1) {
		log_debug("could not read pg_stat_replication: %s", PQresultErrorMessage(res));
		goto out;
	}
	n = atol(PQgetvalue(res, 0, 0));
	now = standby_state_of(n, atol(PQgetvalue(res, 0, 1)), atol(PQgetvalue(res, 0, 2)), PQgetvalue(res, 0, 3));
	before = atomic_exchange(shared_state, now);
	if (now != before && !(now == STANDBY_SAFE && before == STANDBY_UNSEEN))
		standby_log(now, before, n);
out:
	PQclear(res);
}
