/* SPDX-License-Identifier: Apache-2.0 */
/* The null adapter (adapters/null.h): an in-memory queue in place of a
 * broker, acks and nacks recorded per message. Each queued message owns
 * copies of everything it points to; the queue is a list of message
 * numbers, so a nack puts numbers back at its head in their order, as a
 * broker requeues. Nothing here is thread-safe: one test, one thread. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "adapters/null.h"
#include "bridge/common/backoff.h"
#include "bridge/config/cfgtable.h"
#include "bridge/common/util.h"

#define B(f) offsetof(struct null_broker_cfg, f)
#define R(f) offsetof(struct null_route_cfg, f)

static const struct cfg_key null_broker_keys[] = {
	{ "batch_size", CFG_INT, B(batch_size), false, NULL, 100, 1, 10000, 0, NULL,
	    "null: most messages handed to the core in one batch" },
	CFG_END
};

static const struct cfg_key null_route_keys[] = {
	{ "source", CFG_STRING, R(source), false, NULL, 0, 0, 0, 0, NULL,
	    "null: only messages enqueued with this source; without it, every message" },
	CFG_END
};

struct queued {
	struct message msg;
	struct null_record rec;
};

static struct {
	struct queued *msgs;  /* by number */
	size_t n_msgs;
	size_t *wait;         /* numbers of the messages waiting, oldest first */
	size_t n_wait;
} q;

/* --- the queue */

static void *
memdup0(const void *p, size_t len)
{
	char *c = xcalloc(1, len + 1);

	if (p && len)
		memcpy(c, p, len);
	return c;
}

static char *
strdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void
message_copy(struct message *to, const struct message *m)
{
	size_t topic_len = m->topic ? (m->topic_len ? m->topic_len : strlen(m->topic)) : 0;
	struct msg_header *h = xcalloc(m->n_headers + 1, sizeof(*h));

	*to = *m;
	to->payload = memdup0(m->payload, m->payload_len);
	to->topic = m->topic ? memdup0(m->topic, topic_len) : NULL;
	to->source = strdup_or_null(m->source);
	to->exchange = strdup_or_null(m->exchange);
	to->message_id = m->message_id ? memdup0(m->message_id, m->message_id_len) : NULL;
	to->content_type = strdup_or_null(m->content_type);
	for (size_t i = 0; i < m->n_headers; i++) {
		h[i].name = strdup_or_null(m->headers[i].name);
		h[i].value = m->headers[i].value ? memdup0(m->headers[i].value, m->headers[i].value_len) : NULL;
		h[i].value_len = m->headers[i].value_len;
	}
	to->headers = h;
	to->topic_separator = '.';
}

static void
message_free(struct message *m)
{
	for (size_t i = 0; i < m->n_headers; i++) {
		free((void *)m->headers[i].name);
		free((void *)m->headers[i].value);
	}
	free((void *)m->headers);
	free((void *)m->payload);
	free((void *)m->topic);
	free((void *)m->source);
	free((void *)m->exchange);
	free((void *)m->message_id);
	free((void *)m->content_type);
}

size_t
null_enqueue(const struct message *m)
{
	struct queued *e;

	q.msgs = xrealloc(q.msgs, (q.n_msgs + 1) * sizeof(*q.msgs));
	e = &q.msgs[q.n_msgs];
	memset(e, 0, sizeof(*e));
	message_copy(&e->msg, m);
	e->rec.outcome = OUTCOME_DEFERRED;
	q.wait = xrealloc(q.wait, (q.n_wait + 1) * sizeof(size_t));
	q.wait[q.n_wait++] = q.n_msgs;
	return q.n_msgs++;
}

size_t
null_queued(void)
{
	return q.n_wait;
}

const struct null_record *
null_record(size_t id)
{
	return id < q.n_msgs ? &q.msgs[id].rec : NULL;
}

void
null_reset(void)
{
	for (size_t i = 0; i < q.n_msgs; i++)
		message_free(&q.msgs[i].msg);
	free(q.msgs);
	free(q.wait);
	memset(&q, 0, sizeof(q));
}

/* --- delivery */

/* Settle the batch of ids[0..n) by its outcomes: ack what is settled,
 * put the rest back at the head of the queue, ahead of what waited. */
static void
settle(const size_t *ids, size_t n, enum apply_status st, const enum apply_outcome *outcome)
{
	size_t back = 0;

	for (size_t i = 0; i < n; i++) {
		struct null_record *r = &q.msgs[ids[i]].rec;

		r->outcome = outcome[i];
		r->status = st;
		if (apply_settled(outcome[i])) {
			r->acks++;
			continue;
		}
		r->nacks++;
		q.msgs[ids[i]].msg.redelivered = true;
		back++;
	}
	q.wait = xrealloc(q.wait, (q.n_wait + back + 1) * sizeof(size_t));
	memmove(q.wait + back, q.wait, q.n_wait * sizeof(size_t));
	q.n_wait += back;
	back = 0;
	for (size_t i = 0; i < n; i++)
		if (!apply_settled(outcome[i]))
			q.wait[back++] = ids[i];
}

size_t
null_step(struct worker *w, enum apply_status *st)
{
	const struct null_broker_cfg *c = w->broker->proto;
	size_t n = q.n_wait < (size_t)c->batch_size ? q.n_wait : (size_t)c->batch_size;
	size_t *ids;
	struct message *batch;
	enum apply_outcome *outcome;
	enum apply_status status;

	if (n == 0)
		return 0;
	ids = xcalloc(n, sizeof(size_t));
	batch = xcalloc(n, sizeof(struct message));
	outcome = xcalloc(n, sizeof(enum apply_outcome));
	memcpy(ids, q.wait, n * sizeof(size_t));
	memmove(q.wait, q.wait + n, (q.n_wait - n) * sizeof(size_t));
	q.n_wait -= n;
	for (size_t i = 0; i < n; i++) {
		batch[i] = q.msgs[ids[i]].msg;
		batch[i].received_at_us = now_us();
		q.msgs[ids[i]].rec.deliveries++;
	}
	status = worker_apply(w, batch, n, outcome);
	settle(ids, n, status, outcome);
	worker_acked(w);
	if (st)
		*st = status;
	free(ids);
	free(batch);
	free(outcome);
	return n;
}

static int
null_run(struct worker *w)
{
	struct backoff retry;

	backoff_init(&retry, w->settings->retry_initial_ms, w->settings->retry_max_ms);
	worker_broker_connected(w, true);
	while (!*w->stop && q.n_wait > 0) {
		size_t before = q.n_wait, n;
		enum apply_status st;

		worker_tick(w);
		if (worker_wait_for_database(w) < 0)
			break;
		n = null_step(w, &st);
		if (st == APPLY_OK && q.n_wait + n == before) {
			backoff_reset(&retry);
			continue;
		}
		sleep_ms_unless(backoff_next(&retry), w->stop);
	}
	worker_broker_connected(w, false);
	return 0;
}

void
null_worker_open(struct worker *w, const struct settings *s, const struct broker *b, volatile int *stop)
{
	memset(w, 0, sizeof(*w));
	w->settings = s;
	w->broker = b;
	w->role = ROLE_CONSUMER;
	w->stop = stop;
	backoff_init(&w->db_backoff, s->retry_initial_ms, s->retry_max_ms);
	w->core = core_new(s, b);
}

void
null_worker_close(struct worker *w)
{
	core_free(w->core);
	w->core = NULL;
}

/* --- the hooks of struct adapter */

static void
null_check(const struct broker *b, const config_setting_t *group, const config_setting_t *routes,
    const char *file, struct diag *d)
{
	(void)routes;
	if (strncmp(b->url, "null:", 5) != 0)
		diag_error(d, file, cfg_key_line(group, "url"),
		    "invalid value of key \"url\" in group \"broker\": the null adapter takes \"null:\"");
}

static bool
null_route_matches(const struct route *r, const struct message *m)
{
	const struct null_route_cfg *rc = r->proto;

	return rc->source == NULL || (m->source && strcmp(rc->source, m->source) == 0);
}

static int
null_workers(const struct broker *b)
{
	(void)b;
	return 1;
}

/* A batch, one item per route. */
static int64_t
null_in_flight(const struct broker *b)
{
	const struct null_broker_cfg *c = b->proto;

	return c->batch_size * (int64_t)(b->n_routes > 0 ? b->n_routes : 1);
}

/* The queue lives as long as the process: nothing comes back after a
 * reconnect that was not already waiting. */
static void
null_redelivery(const struct broker *b, int index, struct redelivery *out)
{
	out->worker = xasprintf("null:%s[%d]", b->name, index);
	out->grace_ms = 1000;
	out->ready_after_ms = 0;
	out->ready_deliveries = -1;
	out->hold_s = -1;
}

const struct adapter null_adapter = {
	.name = "null",
	.broker_keys = null_broker_keys,
	.broker_size = sizeof(struct null_broker_cfg),
	.route_keys = null_route_keys,
	.route_size = sizeof(struct null_route_cfg),
	.check = null_check,
	.topic_separator = '.',
	.route_matches = null_route_matches,
	.workers = null_workers,
	.in_flight = null_in_flight,
	.redelivery = null_redelivery,
	.run = null_run,
};

void
null_register(void)
{
	adapter_register(&null_adapter);
}
