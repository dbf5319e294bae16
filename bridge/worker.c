/* A worker process: sets up signals and the core for one broker connection
 * and hands control to that broker's adapter until asked to stop. */
#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adapters/adapter.h"
#include "bridge/apply.h"
#include "bridge/board.h"
#include "bridge/horizon.h"
#include "bridge/log.h"
#include "bridge/relay.h"
#include "bridge/settings.h"
#include "bridge/util.h"
#include "bridge/worker.h"

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
worker_apply(struct worker *w, const struct message *msgs, size_t n, bool *settled)
{
	enum apply_status st;
	bool fresh = false, any = false;

	for (size_t i = 0; i < n; i++)
		fresh |= !msgs[i].redelivered;
	horizon_applying(w->horizon, n, fresh);
	st = core_apply(w->core, msgs, n, settled);
	for (size_t i = 0; st == APPLY_OK && i < n; i++)
		any |= settled[i];
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

int
worker_main(const struct settings *s, const struct broker *b, bool relay, int index, struct board_slot *slot)
{
	struct worker w;
	char *ctx;
	int status;

	child_signals(on_stop_signal);

	if (relay)
		ctx = b->outbox_relays > 1 ? xasprintf("relay %s[%d]", b->name, index) : xasprintf("relay %s", b->name);
	else
		ctx = b->adapter->workers(b) > 1 ? xasprintf("broker %s[%d]", b->name, index) : xasprintf("broker %s", b->name);
	log_set_context(ctx);
	free(ctx);

	memset(&w, 0, sizeof(w));
	w.settings = s;
	w.broker = b;
	w.index = index;
	w.stop = &worker_stop;
	backoff_init(&w.db_backoff, s->retry_initial_ms, s->retry_max_ms);
	if (relay) {
		w.relay_shared = slot ? &slot->relay : NULL;
		log_info("relay started (%s, %s)", b->adapter->name, b->outbox_ordered ? "ordered" : "parallel");
		status = relay_run(&w);
		log_info("relay stopped");
		return status;
	}
	w.core = core_new(s, b);
	w.horizon = horizon_new(s, b, index);
	if (slot) {
		core_share_stats(w.core, &slot->core);
		w.shared = &slot->core;
	}
	log_info("worker started (%s, %zu routes)", b->adapter->name, b->n_routes);
	status = b->adapter->run(&w);
	{
		const struct core_stats *st = core_stats(w.core);

		log_info("worker stopped: %llu received, %llu applied, %llu duplicates, %llu dead-lettered",
		    (unsigned long long)st->received, (unsigned long long)st->applied,
		    (unsigned long long)st->duplicates, (unsigned long long)st->dead_letters);
	}
	core_free(w.core);
	{
		/* a parked MQTT callback leaves paho's threads running */
		struct horizon *h = w.horizon;

		w.horizon = NULL;
		horizon_free(h);
	}
	return status;
}
