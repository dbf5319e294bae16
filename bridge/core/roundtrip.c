/* SPDX-License-Identifier: Apache-2.0 */
/* The deadline of database round trips (see roundtrip.h): a table of the
 * round trips in flight in this process, and one watchdog thread that
 * sleeps until the earliest deadline and shuts the socket of an expired
 * one down. shutdown() wakes the caller blocked in libpq's poll() or
 * send() with an end of file or EPIPE: libpq reports the connection lost,
 * the caller treats it as transient (an in-flight COMMIT's outcome is
 * unknown, its messages are not acked, their redelivery is deduplicated)
 * and its next connect tries the next host of the conninfo. The thread is
 * started lazily in each process (after fork(), again in the child) with
 * every signal blocked, so that signals keep reaching the thread they
 * were meant for. */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bridge/common/log.h"
#include "bridge/common/util.h"
#include "bridge/config/settings.h"
#include "bridge/core/roundtrip.h"

/* Round trips in flight at once in one process: the apply session, the
 * horizon session and a relay's, with room to spare. */
#define RT_SLOTS 8

struct rt_slot {
	PGconn *conn;   /* NULL: free */
	int fd;
	int64_t deadline_ms;
	bool fired;
};

static pthread_mutex_t rt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rt_cv;
static struct rt_slot rt_slots[RT_SLOTS];
static pid_t rt_thread_pid;     /* the process whose watchdog runs */
static bool rt_idle;            /* the watchdog waits without a deadline */
static int64_t rt_timeout = 65000;
static pthread_once_t rt_once = PTHREAD_ONCE_INIT;

int64_t
rt_timeout_ms(const struct settings *s)
{
	if (s->db_response_timeout_ms > 0)
		return s->db_response_timeout_ms;
	if (s->db_statement_timeout_ms > 0)
		return s->db_statement_timeout_ms + 5000;
	return 65000;
}

void
rt_configure(const struct settings *s)
{
	pthread_mutex_lock(&rt_mu);
	rt_timeout = rt_timeout_ms(s);
	pthread_mutex_unlock(&rt_mu);
}

static void
rt_before_fork(void)
{
	pthread_mutex_lock(&rt_mu);
}

static void
rt_after_fork_parent(void)
{
	pthread_mutex_unlock(&rt_mu);
}

static void
rt_cond_init(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&rt_cv, &attr);
	pthread_condattr_destroy(&attr);
}

/* The child has no watchdog thread and no round trip of its own yet; its
 * copy of the condition variable may still count the parent's watchdog
 * as a waiter, which would swallow a signal: a fresh one. */
static void
rt_after_fork_child(void)
{
	memset(rt_slots, 0, sizeof(rt_slots));
	rt_thread_pid = 0;
	rt_idle = false;
	rt_cond_init();
	pthread_mutex_unlock(&rt_mu);
}

static void
rt_init_once(void)
{
	rt_cond_init();
	pthread_atfork(rt_before_fork, rt_after_fork_parent, rt_after_fork_child);
}

/* Shut down every expired round trip's socket; returns the earliest
 * deadline still ahead, or 0 when none. Called with rt_mu held. */
static int64_t
rt_sweep(int64_t now)
{
	int64_t next = 0;

	for (size_t i = 0; i < RT_SLOTS; i++) {
		struct rt_slot *sl = &rt_slots[i];

		if (sl->conn == NULL || sl->fired)
			continue;
		if (sl->deadline_ms <= now) {
			shutdown(sl->fd, SHUT_RDWR);
			sl->fired = true;
		} else if (next == 0 || sl->deadline_ms < next) {
			next = sl->deadline_ms;
		}
	}
	return next;
}

static void *
rt_watchdog(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&rt_mu);
	for (;;) {
		int64_t next = rt_sweep(now_ms());

		if (next == 0) {
			rt_idle = true;
			pthread_cond_wait(&rt_cv, &rt_mu);
			rt_idle = false;
		} else {
			struct timespec ts = { .tv_sec = next / 1000, .tv_nsec = (next % 1000) * 1000000L };

			pthread_cond_timedwait(&rt_cv, &rt_mu, &ts);
		}
	}
	return NULL;
}

/* Start this process's watchdog unless it runs. Called with rt_mu held. */
static void
rt_start_thread(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int err;

	if (rt_thread_pid == getpid())
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&tid, &attr, rt_watchdog, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		log_error("could not start the database round-trip watchdog: %s", strerror(err));
		return;
	}
	rt_thread_pid = getpid();
}

void
rt_begin(PGconn *conn)
{
	struct rt_slot *free_slot = NULL, *sl = NULL;

	if (conn == NULL || PQsocket(conn) < 0)
		return;
	pthread_once(&rt_once, rt_init_once);
	pthread_mutex_lock(&rt_mu);
	rt_start_thread();
	for (size_t i = 0; i < RT_SLOTS && sl == NULL; i++) {
		if (rt_slots[i].conn == conn)
			sl = &rt_slots[i];
		else if (rt_slots[i].conn == NULL && free_slot == NULL)
			free_slot = &rt_slots[i];
	}
	if (sl == NULL && free_slot != NULL) {
		sl = free_slot;
		sl->conn = conn;
		sl->fired = false;
	}
	if (sl != NULL) {
		sl->fd = PQsocket(conn);
		sl->deadline_ms = now_ms() + rt_timeout;
		if (rt_idle)
			pthread_cond_signal(&rt_cv);
	}
	pthread_mutex_unlock(&rt_mu);
}

bool
rt_end(PGconn *conn)
{
	bool fired = false;
	int64_t timeout = 0;

	if (conn == NULL)
		return true;
	pthread_mutex_lock(&rt_mu);
	for (size_t i = 0; i < RT_SLOTS; i++) {
		if (rt_slots[i].conn != conn)
			continue;
		fired = rt_slots[i].fired;
		memset(&rt_slots[i], 0, sizeof(rt_slots[i]));
	}
	timeout = rt_timeout;
	pthread_mutex_unlock(&rt_mu);
	if (fired)
		log_warn("the database did not answer within %lld ms (database.response_timeout_ms); "
		    "closing the session, the next connect tries the next host", (long long)timeout);
	return !fired;
}

PGresult *
rt_exec(PGconn *conn, const char *sql)
{
	PGresult *res;

	rt_begin(conn);
	res = PQexec(conn, sql);
	rt_end(conn);
	return res;
}

PGresult *
rt_exec_params(PGconn *conn, const char *sql, int n, const Oid *types,
    const char *const *values, const int *lengths, const int *formats, int result_format)
{
	PGresult *res;

	rt_begin(conn);
	res = PQexecParams(conn, sql, n, types, values, lengths, formats, result_format);
	rt_end(conn);
	return res;
}

PGresult *
rt_exec_prepared(PGconn *conn, const char *name, int n, const char *const *values,
    const int *lengths, const int *formats, int result_format)
{
	PGresult *res;

	rt_begin(conn);
	res = PQexecPrepared(conn, name, n, values, lengths, formats, result_format);
	rt_end(conn);
	return res;
}

PGresult *
rt_prepare(PGconn *conn, const char *name, const char *sql, int n, const Oid *types)
{
	PGresult *res;

	rt_begin(conn);
	res = PQprepare(conn, name, sql, n, types);
	rt_end(conn);
	return res;
}
