/* The AMQP adapter's configuration as the core sees it through the
 * adapter hooks: one worker per broker, a prefetch window per queue, and
 * a redelivery profile. RabbitMQ requeues the unacked deliveries of a lost
 * connection ahead of anything else, so a new connection is ready once
 * more than prefetch deliveries were applied after the grace (twice the
 * heartbeat, plus a second), or it was idle after the grace; a queue keeps
 * a message until it is consumed, however long that takes. */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "adapters/amqp_cfg.h"
#include "bridge/util.h"

#define NO_HEARTBEAT_GRACE_MS 60000

void
amqp_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d)
{
	diag_warn(d, main_file, 0,
	    "retention.dedupe_window_s (%lld s) with AMQP broker \"%s\" in \"%s\": a broker outage only "
	    "delays pruning, but a queue keeps a message until it is consumed, so a copy of an event consumed "
	    "more than the window after the first (a backlog, a queue TTL or x-message-ttl longer than the "
	    "window, a late producer retry) is applied again",
	    (long long)window_s, b->name, b->file);
}

int
amqp_workers(const struct broker *b)
{
	(void)b;
	return 1;
}

/* The prefetch window on each queue and a batch. */
int64_t
amqp_in_flight(const struct broker *b)
{
	return (b->prefetch > 0 ? b->prefetch : 1) * (int64_t)(b->n_routes > 0 ? b->n_routes : 1) +
	    (b->batch_size > 0 ? b->batch_size : 1);
}

void
amqp_redelivery(const struct broker *b, int index, struct redelivery *out)
{
	char host[256];

	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	out->worker = xasprintf("amqp:%s/%s[%d]", host, b->name, index);
	out->grace_ms = b->heartbeat > 0 ? 2 * b->heartbeat * 1000 + 1000 : NO_HEARTBEAT_GRACE_MS;
	out->ready_after_ms = out->grace_ms;
	out->ready_deliveries = b->prefetch;
	out->hold_s = -1;
}
