/* SPDX-License-Identifier: Apache-2.0 */
/* A broker's child process: sets up signals and, for an inbound worker,
 * the core for one broker connection and hands control to that broker's
 * adapter until asked to stop; for an outbox relay, hands control to the
 * relay (bridge/outbox/relay.c). */
#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adapters/adapter.h"
#include "bridge/core/apply.h"
#include "bridge/daemon/board.h"
#include "bridge/retention/horizon.h"
#include "bridge/common/log.h"
#include "bridge/outbox/relay.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"
#include "bridge/daemon/worker.h"

static volatile int worker_stop;

static void
on_stop_signal(int sig)
{
	(void)sig;
	worker_stop = 1;
}

void
worker_broker_connected(struct worker *w, bool connected)
{
	if (w->shared)
		w->shared->broker_connected = connected;
	horizon_connected(w->horizon, connected);
}

enum apply_status
worker_apply(struct worker *w, const struct message *msgs, size_t n, enum apply_outcome *outcome)
{
	enum apply_status st;
	bool fresh = false, any = false;

	for (size_t i = 0; i < n; i++)
		fresh |= !msgs[i].redelivered;
	horizon_applying(w->horizon, n, fresh);
	st = core_apply(w->core, msgs, n, outcome);
	for (size_t i = 0; st == APPLY_OK && i < n; i++)
		any |= apply_settled(outcome[i]);
	if (!any)
		horizon_released(w->horizon); /* nothing claimed stays: all of it is given back */
	return st;
}

void
worker_acked(struct worker *w)
{
	horizon_acked(w->horizon);
}

void
worker_tick(struct worker *w)
{
	horizon_tick(w->horizon);
}

bool
worker_database_ready(struct worker *w)
{
	return core_ready(w->core) == 0;
}

int
worker_wait_for_database(struct worker *w)
{
	bool waited = false;

	while (!*w->stop) {
		if (core_ready(w->core) == 0) {
			backoff_reset(&w->db_backoff);
			if (waited && w->shared)
				w->shared->pending_since_ms = 0; /* what waited was nacked: a fresh start */
			return 0;
		}
		waited = true;
		sleep_ms_unless(backoff_next(&w->db_backoff), w->stop);
	}
	return -1;
}

void
child_signals(void (*on_stop)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	srandom((unsigned)(getpid() ^ time(NULL)));
}

/* The log context of w: the broker and, when it has several of its
 * role, the number. */
static void
worker_context(const struct worker *w)
{
	const struct broker *b = w->broker;
	bool relay = w->role == ROLE_RELAY;
	bool several = relay ? b->outbox_relays > 1 : b->adapter->workers(b) > 1;
	char *ctx = several ? xasprintf("%s %s[%d]", relay ? "relay" : "broker", b->name, w->index)
			    : xasprintf("%s %s", relay ? "relay" : "broker", b->name);

	log_set_context(ctx);
	log_set_process(relay ? "relay" : "worker", b->name, w->index);
	free(ctx);
}

static int
relay_main(struct worker *w, struct board_slot *slot)
{
	int status;

	w->relay_shared = slot ? &slot->relay : NULL;
	log_info("relay started (%s, %s)", w->broker->adapter->name, w->broker->outbox_ordered ? "ordered" : "parallel");
	status = relay_run(w);
	log_info("relay stopped");
	return status;
}

static int
consumer_main(struct worker *w, struct board_slot *slot)
{
	const struct settings *s = w->settings;
	const struct broker *b = w->broker;
	const struct core_stats *st;
	struct horizon *h;
	int status;

	backoff_init(&w->db_backoff, s->retry_initial_ms, s->retry_max_ms);
	w->core = core_new(s, b);
	w->horizon = horizon_new(s, b, w->index);
	if (slot) {
		core_share_stats(w->core, &slot->core, slot->routes, slot->n_routes);
		w->shared = &slot->core;
	}
	log_info("worker started (%s, %zu routes)", b->adapter->name, b->n_routes);
	status = b->adapter->run(w);
	st = core_stats(w->core);
	log_info("worker stopped: %llu received, %llu applied, %llu duplicates, %llu dead-lettered",
	    (unsigned long long)st->received, (unsigned long long)st->applied,
	    (unsigned long long)st->duplicates, (unsigned long long)st->dead_letters);
	core_free(w->core);
	/* an adapter's callback thread may still be running (parked in a
	 * callback): it must find no horizon rather than a freed one */
	h = w->horizon;
	w->horizon = NULL;
	horizon_free(h);
	return status;
}

int
worker_main(const struct settings *s, const struct broker *b, enum role role, int index, struct board_slot *slot)
{
	struct worker w;

	child_signals(on_stop_signal);
	memset(&w, 0, sizeof(w));
	w.settings = s;
	w.broker = b;
	w.role = role;
	w.index = index;
	w.stop = &worker_stop;
	worker_context(&w);
	if (role == ROLE_RELAY)
		return relay_main(&w, slot);
	return consumer_main(&w, slot);
}
