/* SPDX-License-Identifier: Apache-2.0 */
/* The AMQP adapter's configuration as the core sees it through the
 * adapter hooks: one worker per broker, a prefetch window per queue, and
 * a redelivery profile. RabbitMQ requeues the unacked deliveries of a lost
 * connection ahead of anything else, so a new connection is ready once
 * more than prefetch deliveries were applied after the grace (twice the
 * heartbeat, plus a second), or it was idle after the grace; a queue keeps
 * a message until it is consumed, however long that takes. Also the -t
 * checks of the keys: every cluster node in "hosts", the queue type of a
 * declared queue, and a quorum queue's delivery limit against the retry
 * budget of the main file. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "adapters/amqp_cfg.h"
#include "adapters/amqp_conn.h"
#include "adapters/amqp_endpoints.h"
#include "adapters/amqp_pattern.h"
#include "bridge/config/tls.h"
#include "bridge/common/util.h"

#define NO_HEARTBEAT_GRACE_MS 60000

#define B(f) offsetof(struct amqpc_broker_cfg, f)
#define R(f) offsetof(struct amqpc_route_cfg, f)

const struct cfg_key amqpc_broker_keys[] = {
	{ "hosts", CFG_STRINGS, B(hosts), false, NULL, 0, 0, 0, B(n_hosts), NULL,
	    "further nodes of a RabbitMQ cluster (host or host:port), tried in turn after the url's node; "
	    "scheme, vhost, user, password and TLS are the url's" },
	{ "heartbeat", CFG_INT, B(heartbeat), false, NULL, 30, 0, 3600, 0, NULL,
	    "AMQP heartbeat in seconds; 0 disables it" },
	{ "prefetch", CFG_INT, B(prefetch), false, NULL, 1000, 1, 65535, 0, NULL,
	    "basic.qos prefetch count: unacked deliveries the broker may send ahead" },
	{ "batch_size", CFG_INT, B(batch_size), false, NULL, 500, 1, 65535, 0, NULL,
	    "most deliveries applied in one transaction" },
	{ "batch_linger_ms", CFG_INT, B(batch_linger_ms), false, NULL, 20, 0, 60000, 0, NULL,
	    "how long a batch waits for more deliveries before it is applied" },
	{ "max_inflight_bytes", CFG_INT, B(max_inflight_bytes), false, NULL, 33554432, 1024, 1099511627776LL, 0, NULL,
	    "payload bytes the worker reads ahead and holds in a batch; a batch closes when it reaches them" },
	CFG_END
};

const struct cfg_key amqpc_outbox_keys[] = {
	{ "exchange", CFG_STRING, B(outbox_exchange), false, "amq.topic", 0, 0, 0, 0, NULL,
	    "AMQP: exchange for rows that name none" },
	CFG_END
};

const struct cfg_key amqpc_route_keys[] = {
	{ "queue", CFG_STRING, R(queue), false, NULL, 0, 0, 0, 0, NULL,
	    "AMQP: queue the route consumes (required for amqp)" },
	{ "match", CFG_STRING, R(match), false, NULL, 0, 0, 0, 0, NULL,
	    "AMQP: only deliveries whose routing key matches this topic pattern (* one word, # any)" },
	{ "declare_queue", CFG_BOOL, R(declare_queue), false, NULL, 0, 0, 0, 0, NULL,
	    "AMQP: declare the queue (durable) on connect" },
	{ "bind_exchange", CFG_STRING, R(bind_exchange), false, NULL, 0, 0, 0, 0, NULL,
	    "AMQP: exchange to bind the declared queue to" },
	{ "bind_keys", CFG_STRINGS, R(bind_keys), false, NULL, 0, 0, 0, R(n_bind_keys), NULL,
	    "AMQP: routing keys of those bindings" },
	{ "queue_type", CFG_STRING, R(queue_type), false, NULL, 0, 0, 0, 0, NULL,
	    "AMQP: type of the declared queue: \"classic\" (the default) or \"quorum\" (replicated; recommended)" },
	{ "delivery_limit", CFG_INT, R(delivery_limit), false, NULL, 0, 0, 1000000, 0, NULL,
	    "AMQP: x-delivery-limit of a declared quorum queue; 0: none" },
	CFG_END
};

static void
check_hosts(const struct broker *b, const config_setting_t *group, const char *file, struct diag *d)
{
	const struct amqpc_broker_cfg *c = amqpc_broker_cfg(b);

	for (size_t i = 0; i < c->n_hosts; i++) {
		const char *err = amqpc_host_error(c->hosts[i]);

		if (err)
			diag_error(d, file, cfg_key_line(group, "hosts"),
			    "invalid value \"%s\" in key \"hosts\" in group \"broker\": %s", c->hosts[i], err);
	}
}

/* queue_type and delivery_limit of route r (libconfig group g). */
static void
check_queue_type(const struct route *r, const config_setting_t *g, const char *file, struct diag *d)
{
	const struct amqpc_route_cfg *rc = amqpc_route_cfg(r);
	bool quorum = rc->queue_type && strcmp(rc->queue_type, "quorum") == 0;

	if (rc->queue_type && !quorum && strcmp(rc->queue_type, "classic") != 0)
		diag_error(d, file, cfg_key_line(g, "queue_type"),
		    "invalid value of key \"queue_type\" in route \"%s\": \"%s\" (expected \"classic\" or \"quorum\")",
		    r->name, rc->queue_type);
	if (rc->queue_type && !rc->declare_queue)
		diag_error(d, file, cfg_key_line(g, "queue_type"),
		    "route \"%s\": \"queue_type\" needs \"declare_queue = true\"", r->name);
	if (rc->delivery_limit > 0 && !quorum)
		diag_error(d, file, cfg_key_line(g, "delivery_limit"),
		    "route \"%s\": \"delivery_limit\" needs \"queue_type = \"quorum\"\"", r->name);
}

void
amqpc_check(const struct broker *b, const config_setting_t *group, const config_setting_t *routes,
    const char *file, struct diag *d)
{
	const struct amqpc_broker_cfg *c = amqpc_broker_cfg(b);
	bool tls = false;
	const char *err = amqpc_url_error(b->url, &tls);

	if (err)
		diag_error(d, file, cfg_key_line(group, "url"),
		    "invalid value of key \"url\" in group \"broker\": %s", err);
	else
		tls_check(b, tls, group, file, d);
	check_hosts(b, group, file, d);
	if (c->prefetch < c->batch_size)
		diag_warn(d, file, cfg_key_line(group, "prefetch"),
		    "prefetch (%lld) is smaller than batch_size (%lld): batches will never fill up",
		    (long long)c->prefetch, (long long)c->batch_size);
	for (size_t i = 0; i < b->n_routes; i++) {
		const struct route *r = &b->routes[i];
		const struct amqpc_route_cfg *rc = amqpc_route_cfg(r);
		const config_setting_t *g = config_setting_get_elem(routes, (unsigned)i);

		if (rc->queue == NULL)
			diag_error(d, file, r->line, "missing required key \"queue\" in route \"%s\"", r->name);
		if (rc->match && amqpc_pattern_error(rc->match))
			diag_error(d, file, cfg_key_line(g, "match"), "invalid value of key \"match\" in route \"%s\": %s",
			    r->name, amqpc_pattern_error(rc->match));
		if ((rc->bind_exchange != NULL) != (rc->n_bind_keys > 0))
			diag_error(d, file, r->line,
			    "route \"%s\": keys \"bind_exchange\" and \"bind_keys\" go together", r->name);
		if (rc->bind_exchange && !rc->declare_queue)
			diag_error(d, file, cfg_key_line(g, "bind_exchange"),
			    "route \"%s\": \"bind_exchange\" needs \"declare_queue = true\"", r->name);
		check_queue_type(r, g, file, d);
	}
}

/* A quorum queue drops a message (or dead-letters it through its own
 * x-dead-letter-exchange) once it was returned more than delivery_limit
 * times; every failed attempt of an event oncebridge counts is one
 * return, and so is every delivery unacked when a connection or node is
 * lost. A limit at or below retry.max_attempts lets the broker discard a
 * poison message before oncebridge dead-letters it. */
void
amqpc_check_main(const struct broker *b, const struct settings *s, struct diag *d)
{
	for (size_t i = 0; i < b->n_routes; i++) {
		const struct route *r = &b->routes[i];
		const struct amqpc_route_cfg *rc = amqpc_route_cfg(r);

		if (rc->delivery_limit > 0 && rc->delivery_limit <= s->max_attempts)
			diag_warn(d, b->file, r->line,
			    "route \"%s\": delivery_limit (%lld) is at or below retry.max_attempts (%lld) of \"%s\": "
			    "the broker may drop a failing message before oncebridge dead-letters it, and every "
			    "connection or node loss uses up one delivery of each unacked message",
			    r->name, (long long)rc->delivery_limit, (long long)s->max_attempts, s->path);
	}
}

void
amqpc_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d)
{
	diag_warn(d, main_file, 0,
	    "retention.dedupe_window_s (%lld s) with AMQP broker \"%s\" in \"%s\": a broker outage only "
	    "delays pruning, but a queue keeps a message until it is consumed, so a copy of an event consumed "
	    "more than the window after the first (a backlog, a queue TTL or x-message-ttl longer than the "
	    "window, a late producer retry) is applied again",
	    (long long)window_s, b->name, b->file);
}

int
amqpc_workers(const struct broker *b)
{
	(void)b;
	return 1;
}

/* The prefetch window on each queue and a batch. */
int64_t
amqpc_in_flight(const struct broker *b)
{
	const struct amqpc_broker_cfg *c = amqpc_broker_cfg(b);

	return (c->prefetch > 0 ? c->prefetch : 1) * (int64_t)(b->n_routes > 0 ? b->n_routes : 1) +
	    (c->batch_size > 0 ? c->batch_size : 1);
}

void
amqpc_redelivery(const struct broker *b, int index, struct redelivery *out)
{
	const struct amqpc_broker_cfg *c = amqpc_broker_cfg(b);
	char host[256];

	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	out->worker = xasprintf("amqp:%s/%s[%d]", host, b->name, index);
	out->grace_ms = c->heartbeat > 0 ? 2 * c->heartbeat * 1000 + 1000 : NO_HEARTBEAT_GRACE_MS;
	out->ready_after_ms = out->grace_ms;
	out->ready_deliveries = c->prefetch;
	out->hold_s = -1;
}
