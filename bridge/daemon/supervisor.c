/* SPDX-License-Identifier: Apache-2.0 */
/* The supervisor: forks one worker process per broker connection (a
 * client library's receive thread and lock may be process-wide, and a slow
 * database for one broker must not stall another), one per outbox relay and the retention
 * process, all of them children of one fleet (bridge/daemon/fleet.h) whatever
 * their role; restarts a child that dies with capped backoff, tells
 * systemd when it is ready (the configuration is loaded and PostgreSQL
 * answered) and pings its watchdog while no worker is stalled, reloads
 * the configuration on SIGHUP, serves metrics, and on SIGTERM or SIGINT
 * asks every child to drain, waiting at most shutdown_timeout_ms before
 * killing what is left. May call the fleet, reload, the children's main
 * functions (bridge/daemon/worker.h, bridge/retention/retention.h), metrics and notify. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bridge/common/backoff.h"
#include "bridge/core/db.h"
#include "bridge/core/standby_check.h"
#include "bridge/daemon/fleet.h"
#include "bridge/common/log.h"
#include "bridge/daemon/metrics.h"
#include "bridge/daemon/notify.h"
#include "bridge/daemon/reload.h"
#include "bridge/retention/retention.h"
#include "bridge/config/settings.h"
#include "bridge/daemon/supervisor.h"
#include "bridge/common/util.h"
#include "bridge/daemon/worker.h"

/* a worker that ran this long before dying starts over at the first delay */
#define HEALTHY_RUN_MS 60000
/* status board slots: the most worker processes at one time */
#define BOARD_SLOTS 256
#define TICK_MS 200

static volatile int got_stop;
static volatile int got_hup;

static struct metrics *metrics; /* closed in forked children */

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_stop = 1;
}

/* What c runs, in the forked child; returns its exit status. */
static int
child_main(struct fleet *f, const struct child *c)
{
	struct board_slot *slot = c->slot >= 0 ? &f->board.slots[c->slot] : NULL;

	if (c->role == ROLE_RETENTION)
		return retention_main(f->settings, slot && f->settings->metrics_listen ? slot->waiting : NULL);
	return worker_main(f->settings, c->broker, c->role, c->index, slot);
}

static void
log_fork_failed(const struct child *c)
{
	if (c->role == ROLE_RETENTION)
		log_error("could not fork the retention process: %s", strerror(errno));
	else
		log_error("could not fork a worker for broker \"%s\": %s", c->name, strerror(errno));
}

static void
log_started(const struct child *c, pid_t pid)
{
	if (c->role == ROLE_RETENTION)
		log_info("started the retention process (pid %ld)", (long)pid);
	else
		log_info("started %s %d for broker \"%s\" (pid %ld)", role_name(c->role), c->index, c->name,
		    (long)pid);
}

static void
start_child(struct fleet *f, struct child *c)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_fork_failed(c);
		c->restart_at_ms = now_ms() + backoff_next(&c->backoff);
		return;
	}
	if (pid == 0) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGCHLD, &sa, NULL);
		metrics_close_in_child(metrics);
		/* exit(), not _exit(): LeakSanitizer checks the child at exit */
		exit(child_main(f, c));
	}
	c->pid = pid;
	c->started_ms = now_ms();
	c->stall_logged = false;
	log_started(c, pid);
}

static void
describe_exit(int status, char *buf, size_t size)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "was terminated by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "ended with status %d", status);
}

/* c ended as how, asked to (stopping, or retired by a reload) or not
 * (then it starts again in delay ms). */
static void
log_ended(const struct child *c, const char *how, bool asked, int64_t delay)
{
	if (c->role == ROLE_RETENTION) {
		if (!asked) /* asked: it is replaced on every reload, quietly */
			log_error("the retention process %s; restarting it in %lld ms", how, (long long)delay);
		return;
	}
	if (asked)
		log_info("%s for broker \"%s\" %s", role_name(c->role), c->name, how);
	else
		log_error("worker for broker \"%s\" %s; restarting it in %lld ms", c->name, how, (long long)delay);
}

static void
reap(struct fleet *f, bool stopping)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct child *c = fleet_find_pid(f, pid);
		char how[96];
		int64_t delay;

		if (c == NULL)
			continue;
		describe_exit(status, how, sizeof(how));
		c->pid = 0;
		if (stopping || c->retiring) {
			log_ended(c, how, true, 0);
			continue;
		}
		if (now_ms() - c->started_ms > HEALTHY_RUN_MS)
			backoff_reset(&c->backoff);
		delay = backoff_next(&c->backoff);
		c->restarts++;
		log_ended(c, how, false, delay);
		c->restart_at_ms = now_ms() + delay;
	}
	fleet_prune(f);
}

static size_t
running(const struct fleet *f)
{
	size_t k = 0;

	for (size_t i = 0; i < f->n; i++)
		k += f->children[i].pid != 0;
	return k;
}

static void
signal_all(struct fleet *f, int sig)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->children[i].pid)
			kill(f->children[i].pid, sig);
}

static void
start_due(struct fleet *f)
{
	int64_t now = now_ms();

	for (size_t i = 0; i < f->n && !got_stop; i++) {
		struct child *c = &f->children[i];

		if (c->pid == 0 && !c->retiring && now >= c->restart_at_ms && !fleet_retiring_running(f, c))
			start_child(f, c);
	}
}

/* The check connection: PostgreSQL answers with the schema this build
 * needs. */
static bool
database_answers(const struct settings *s)
{
	PGconn *conn = db_open(s, "oncebridge supervisor");

	if (conn == NULL)
		return false;
	PQfinish(conn);
	return true;
}

/* Log stalls as they start and end; returns how many workers are stalled
 * now and fills the first one's name and age. */
static size_t
check_stalls(struct fleet *f, const char **first, int64_t *first_ms)
{
	int64_t now = now_ms();
	size_t n = 0;

	for (size_t i = 0; i < f->n; i++) {
		struct child *c = &f->children[i];
		int64_t ms = fleet_stalled_ms(f, c, now);

		fleet_track_up(f, c, now);
		if (ms >= f->settings->stall_timeout_ms) {
			if (n++ == 0) {
				*first = c->name;
				*first_ms = ms;
			}
			if (!c->stall_logged)
				log_warn("worker %d of broker \"%s\" has had messages waiting for %lld ms without a commit; "
				    "it counts as stalled", c->index, c->name, (long long)ms);
			c->stall_logged = true;
		} else if (c->stall_logged && ms == 0) {
			log_info("worker %d of broker \"%s\" commits again", c->index, c->name);
			c->stall_logged = false;
		}
	}
	return n;
}

static void
report_status(const struct fleet *f, bool ready, size_t stalled, const char *first, int64_t first_ms)
{
	if (!ready)
		notify_status("waiting for the database");
	else if (stalled)
		notify_status("%zu stalled: broker \"%s\" has made no progress for %lld s", stalled, first,
		    (long long)(first_ms / 1000));
	else
		notify_status("running: %zu processes for %zu brokers", running(f), f->settings->n_brokers);
}

static void
drain(struct fleet *f)
{
	int64_t deadline;

	notify_stopping();
	log_info("shutting down: asking %zu workers to finish their in-flight work", running(f));
	signal_all(f, SIGTERM);
	deadline = now_ms() + f->settings->shutdown_timeout_ms;
	while (running(f) > 0 && now_ms() < deadline) {
		reap(f, true);
		if (running(f) > 0)
			metrics_wait(metrics, 50);
	}
	if (running(f) > 0) {
		log_warn("%zu workers did not stop within %lld ms; killing them (their unacked messages "
		    "will be redelivered)", running(f), (long long)f->settings->shutdown_timeout_ms);
		signal_all(f, SIGKILL);
		while (running(f) > 0) {
			reap(f, true);
			metrics_wait(metrics, 20);
		}
	}
}

int
supervisor_run(struct settings **sp)
{
	struct fleet f;
	struct sigaction sa;
	struct backoff db_backoff;
	bool ready = false;
	int64_t next_db_try = 0, watchdog_ms = notify_watchdog_interval_ms(), next_ping = 0, next_status = 0;
	size_t last_stalled = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	memset(&f, 0, sizeof(f));
	f.settings = *sp;
	board_create(&f.board, BOARD_SLOTS);
	standby_check_init();
	backoff_init(&db_backoff, f.settings->retry_initial_ms, f.settings->retry_max_ms);
	if (f.settings->metrics_listen)
		metrics = metrics_start(f.settings->metrics_listen, &f);
	reload_populate(&f);
	notify_status("waiting for the database");
	while (!got_stop) {
		size_t stalled;
		const char *first = NULL;
		int64_t first_ms = 0;

		reap(&f, false);
		if (got_hup) {
			got_hup = 0;
			log_notice("received SIGHUP; reloading the configuration");
			notify_reloading();
			reload_run(&f);
			next_status = 0;
			if (ready)
				notify_ready("running");
		}
		start_due(&f);
		if (!ready && now_ms() >= next_db_try) {
			if (database_answers(f.settings)) {
				ready = true;
				log_info("the database answers; ready");
				notify_ready("running");
				next_status = 0;
			} else {
				next_db_try = now_ms() + backoff_next(&db_backoff);
			}
		}
		stalled = check_stalls(&f, &first, &first_ms);
		if (watchdog_ms > 0 && stalled == 0 && now_ms() >= next_ping) {
			notify_watchdog();
			next_ping = now_ms() + watchdog_ms;
		}
		if (stalled != last_stalled)
			next_status = 0;
		last_stalled = stalled;
		if (now_ms() >= next_status) {
			report_status(&f, ready, stalled, first, first_ms);
			next_status = now_ms() + 5000;
		}
		metrics_wait(metrics, TICK_MS);
	}
	drain(&f);
	metrics_stop(metrics);
	metrics = NULL;
	fleet_free(&f);
	board_destroy(&f.board);
	*sp = f.settings;
	log_info("stopped");
	return 0;
}
