/* SPDX-License-Identifier: Apache-2.0 */
/* AMQP 0-9-1 (RabbitMQ) adapter on rabbitmq-c: consumes the routes' queues
 * with manual acks (no_ack=0) and a prefetch window, gathers deliveries into
 * batches (batch_size, batch_linger_ms, and max_inflight_bytes of payload:
 * the worker's memory budget), hands each batch to the core and,
 * only after COMMIT, acks it with one basic.ack(multiple). Unsettled
 * messages are nacked with requeue. A transient failure while the database
 * still answers (a lock or statement timeout, a serialization failure) keeps
 * the batch and applies it again in place: every return to the broker
 * raises a message's delivery count, and a quorum queue with a delivery
 * limit drops a message past it. A database outage nacks the batch and
 * closes the broker connection (the broker requeues everything unacked)
 * until the database is back; a broker outage reconnects with backoff.
 * rabbitmq-c services heartbeats only inside its calls, so the loop never
 * blocks outside one for long. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "adapters/adapter.h"
#include "adapters/amqp_cfg.h"
#include "adapters/amqp_conn.h"
#include "adapters/amqp_endpoints.h"
#include "adapters/amqp_pattern.h"
#include "bridge/core/apply.h"
#include "bridge/common/backoff.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/config/settings.h"
#include "bridge/config/tls.h"
#include "bridge/common/util.h"
#include "bridge/daemon/worker.h"

#define CHANNEL AMQPC_CHANNEL
#define IDLE_WAIT_MS 500

struct delivery {
	amqp_envelope_t env;
	size_t queue;
	char *routing_key;
	char *exchange;
	char *message_id;
	size_t message_id_len;
	char *content_type;
	struct msg_header *headers;
	size_t n_headers;
};

struct amqpc_session {
	struct worker *w;
	const struct broker *b;
	amqp_connection_state_t conn;
	struct amqpc_endpoints ends; /* the cluster's nodes: url, then hosts */
	char **queues; /* distinct queues of the routes, in route order */
	size_t n_queues;
	struct delivery *batch;
	size_t n;
	size_t bytes;          /* payload bytes of the batch */
	struct message *msgs;
	enum apply_outcome *outcome;
	struct backoff broker_backoff;
	struct backoff retry_backoff;
	bool last_full;        /* the previous batch reached batch_size */
};

/* --- connection */

/* Not graceful: the connection failed, so the next connect starts with
 * the next node of the cluster. */
static void
broker_disconnect(struct amqpc_session *s, bool graceful)
{
	worker_broker_connected(s->w, false);
	if (s->conn && !graceful)
		amqpc_endpoints_next(&s->ends);
	amqpc_close(&s->conn, graceful);
}

/* Declare (durable) and bind the queue of route r; a quorum queue with its
 * arguments, a classic one without any, as before there were types. */
static int
declare_queue(struct amqpc_session *s, const struct amqpc_route_cfg *r)
{
	amqp_table_entry_t args[2];
	amqp_table_t table = amqp_empty_table;

	if (r->queue_type && strcmp(r->queue_type, "quorum") == 0) {
		args[0].key = amqp_cstring_bytes("x-queue-type");
		args[0].value.kind = AMQP_FIELD_KIND_UTF8;
		args[0].value.value.bytes = amqp_cstring_bytes("quorum");
		args[1].key = amqp_cstring_bytes("x-delivery-limit");
		args[1].value.kind = AMQP_FIELD_KIND_I64;
		args[1].value.value.i64 = r->delivery_limit;
		table.entries = args;
		table.num_entries = r->delivery_limit > 0 ? 2 : 1;
	}
	amqp_queue_declare(s->conn, CHANNEL, amqp_cstring_bytes(r->queue), 0, 1, 0, 0, table);
	if (!amqpc_reply_ok(amqp_get_rpc_reply(s->conn), "declare the queue"))
		return -1;
	for (size_t k = 0; k < r->n_bind_keys; k++) {
		amqp_queue_bind(s->conn, CHANNEL, amqp_cstring_bytes(r->queue), amqp_cstring_bytes(r->bind_exchange),
		    amqp_cstring_bytes(r->bind_keys[k]), amqp_empty_table);
		if (!amqpc_reply_ok(amqp_get_rpc_reply(s->conn), "bind the queue"))
			return -1;
	}
	return 0;
}

static int
broker_connect(struct amqpc_session *s)
{
	const struct broker *b = s->b;
	const struct amqpc_target *t;

	s->conn = amqpc_endpoints_open(&s->ends);
	if (s->conn == NULL)
		return -1;
	t = amqpc_endpoints_current(&s->ends);
	amqp_basic_qos(s->conn, CHANNEL, 0, (uint16_t)amqpc_broker_cfg(b)->prefetch, 0);
	if (!amqpc_reply_ok(amqp_get_rpc_reply(s->conn), "set the prefetch count"))
		goto fail;
	for (size_t i = 0; i < b->n_routes; i++)
		if (amqpc_route_cfg(&b->routes[i])->declare_queue && declare_queue(s, amqpc_route_cfg(&b->routes[i])) < 0)
			goto fail;
	for (size_t q = 0; q < s->n_queues; q++) {
		char tag[32];

		snprintf(tag, sizeof(tag), "oncebridge.%zu", q);
		amqp_basic_consume(s->conn, CHANNEL, amqp_cstring_bytes(s->queues[q]), amqp_cstring_bytes(tag),
		    0, 0 /* no_ack: we ack after COMMIT */, 0, amqp_empty_table);
		if (!amqpc_reply_ok(amqp_get_rpc_reply(s->conn), "start consuming"))
			goto fail;
	}
	repeat_clear("broker", "connected to %s:%d again", t->host, t->port);
	log_info("connected to %s:%d%s%s, consuming %zu queue%s", t->host, t->port, t->tls ? " (TLS)" : "",
	    amqpc_endpoints_node(&s->ends), s->n_queues, s->n_queues == 1 ? "" : "s");
	worker_broker_connected(s->w, true);
	return 0;
fail:
	broker_disconnect(s, false);
	return -1;
}

/* --- deliveries */

static char *
bytes_str(amqp_bytes_t b)
{
	return xstrndup(b.bytes ? b.bytes : "", b.len);
}

static char *
field_text(const amqp_field_value_t *v, size_t *len)
{
	char *s;

	switch (v->kind) {
	case AMQP_FIELD_KIND_UTF8:
	case AMQP_FIELD_KIND_BYTES:
		*len = v->value.bytes.len;
		return bytes_str(v->value.bytes);
	case AMQP_FIELD_KIND_BOOLEAN:
		s = xstrdup(v->value.boolean ? "true" : "false");
		break;
	case AMQP_FIELD_KIND_I8:
		s = xasprintf("%d", v->value.i8);
		break;
	case AMQP_FIELD_KIND_U8:
		s = xasprintf("%u", v->value.u8);
		break;
	case AMQP_FIELD_KIND_I16:
		s = xasprintf("%d", v->value.i16);
		break;
	case AMQP_FIELD_KIND_U16:
		s = xasprintf("%u", v->value.u16);
		break;
	case AMQP_FIELD_KIND_I32:
		s = xasprintf("%d", v->value.i32);
		break;
	case AMQP_FIELD_KIND_U32:
		s = xasprintf("%u", v->value.u32);
		break;
	case AMQP_FIELD_KIND_I64:
		s = xasprintf("%lld", (long long)v->value.i64);
		break;
	case AMQP_FIELD_KIND_U64:
	case AMQP_FIELD_KIND_TIMESTAMP:
		s = xasprintf("%llu", (unsigned long long)v->value.u64);
		break;
	default:
		return NULL; /* tables, arrays, floats, decimals: not used as text */
	}
	*len = strlen(s);
	return s;
}

static void
delivery_fill(struct amqpc_session *s, struct delivery *d)
{
	amqp_basic_properties_t *p = &d->env.message.properties;
	const char *tag = d->env.consumer_tag.bytes;
	size_t taglen = d->env.consumer_tag.len;

	d->queue = 0;
	if (taglen > 11 && taglen < 32 && memcmp(tag, "oncebridge.", 11) == 0) {
		char num[32];

		memcpy(num, tag + 11, taglen - 11);
		num[taglen - 11] = '\0';
		d->queue = (size_t)strtoul(num, NULL, 10);
	}
	if (d->queue >= s->n_queues)
		d->queue = 0;
	d->routing_key = bytes_str(d->env.routing_key);
	d->exchange = bytes_str(d->env.exchange);
	if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
		d->message_id = bytes_str(p->message_id);
		d->message_id_len = p->message_id.len;
	}
	if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
		d->content_type = bytes_str(p->content_type);
	if (p->_flags & AMQP_BASIC_HEADERS_FLAG && p->headers.num_entries > 0) {
		d->headers = xcalloc((size_t)p->headers.num_entries, sizeof(struct msg_header));
		for (int i = 0; i < p->headers.num_entries; i++) {
			const amqp_table_entry_t *e = &p->headers.entries[i];
			size_t len = 0;
			char *value = field_text(&e->value, &len);

			if (value == NULL)
				continue;
			d->headers[d->n_headers].name = bytes_str(e->key);
			d->headers[d->n_headers].value = value;
			d->headers[d->n_headers].value_len = len;
			d->n_headers++;
		}
	}
}

static void
delivery_free(struct delivery *d)
{
	for (size_t i = 0; i < d->n_headers; i++) {
		free((char *)d->headers[i].name);
		free((char *)d->headers[i].value);
	}
	free(d->headers);
	free(d->routing_key);
	free(d->exchange);
	free(d->message_id);
	free(d->content_type);
	amqp_destroy_envelope(&d->env);
	memset(d, 0, sizeof(*d));
}

static void
batch_clear(struct amqpc_session *s)
{
	for (size_t i = 0; i < s->n; i++)
		delivery_free(&s->batch[i]);
	s->n = 0;
}

/* Handle a frame that is not a delivery. Returns -1 when the connection or
 * channel is gone. */
static int
other_frame(struct amqpc_session *s)
{
	amqp_frame_t frame;
	int rc = amqp_simple_wait_frame(s->conn, &frame);

	if (rc != AMQP_STATUS_OK) {
		log_warn("lost the broker connection: %s", amqp_error_string2(rc));
		return -1;
	}
	if (amqpc_close_frame(&frame))
		return -1;
	if (frame.frame_type != AMQP_FRAME_METHOD)
		return 0;
	switch (frame.payload.method.id) {
	case AMQP_BASIC_CANCEL_METHOD:
		log_warn("the broker cancelled a consumer (queue deleted?); reconnecting");
		return -1;
	default:
		return 0;
	}
}

/* Whether the batch is full: batch_size deliveries, or max_inflight_bytes
 * of payload (the memory budget: a single larger message goes alone). */
static bool
batch_full(const struct amqpc_session *s)
{
	const struct amqpc_broker_cfg *c = amqpc_broker_cfg(s->b);

	return (int64_t)s->n >= c->batch_size || (int64_t)s->bytes >= c->max_inflight_bytes;
}

/* Gather up to batch_size deliveries. Batches size themselves: after the
 * first delivery the batch takes what has already arrived, and waits up to
 * batch_linger_ms for more only while the previous batch was full (the
 * broker is sending faster than we commit). At low rates every message is
 * applied at once; at high rates batches fill up. A full batch stops
 * reading: what the broker sent ahead within the prefetch window waits in
 * the socket, not in this process. rabbitmq-c reads body frames into the
 * channel's pool and copies them into the delivery's own body, so the pool
 * is released after every delivery, not only once per batch. Returns -1
 * when the connection was lost. */
static int
gather_batch(struct amqpc_session *s)
{
	const struct broker *b = s->b;
	int64_t deadline = 0;

	amqp_maybe_release_buffers(s->conn);
	s->bytes = 0;
	while (!batch_full(s)) {
		int64_t wait_ms = s->n == 0 ? IDLE_WAIT_MS : deadline - now_ms();
		struct timeval tv;
		amqp_rpc_reply_t r;
		struct delivery *d;

		if (*s->w->stop)
			break;
		if (wait_ms < 0)
			wait_ms = 0;
		tv.tv_sec = wait_ms / 1000;
		tv.tv_usec = (wait_ms % 1000) * 1000;
		d = &s->batch[s->n];
		memset(d, 0, sizeof(*d));
		r = amqp_consume_message(s->conn, &d->env, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_NORMAL) {
			amqp_maybe_release_buffers_on_channel(s->conn, CHANNEL);
			delivery_fill(s, d);
			s->bytes += d->env.message.body.len;
			if (s->n++ == 0)
				deadline = now_ms() + (s->last_full ? amqpc_broker_cfg(b)->batch_linger_ms : 0);
			continue;
		}
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
			if (s->n > 0)
				break;
			worker_tick(s->w); /* idle: nothing comes */
			continue;
		}
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
			if (other_frame(s) < 0)
				return -1;
			continue;
		}
		amqpc_reply_ok(r, "receive a message");
		return -1;
	}
	s->last_full = batch_full(s);
	return 0;
}

/* Earlier deliveries of d, as a quorum queue counts them in the header
 * x-delivery-count; 0 when absent, and on a first delivery (where the
 * header can only come from the publisher). The core takes it as the least
 * number of attempts so far, so that a count survives a worker restart and
 * competing consumers. */
static int64_t
delivery_count(const struct delivery *d)
{
	if (!d->env.redelivered)
		return 0;
	for (size_t i = 0; i < d->n_headers; i++) {
		const struct msg_header *h = &d->headers[i];
		char *end;
		long long v;

		if (strcmp(h->name, "x-delivery-count") != 0)
			continue;
		v = strtoll(h->value, &end, 10);
		return end != h->value && *end == '\0' && v > 0 ? (int64_t)v : 0;
	}
	return 0;
}

static void
message_of(const struct amqpc_session *s, const struct delivery *d, struct message *m)
{
	memset(m, 0, sizeof(*m));
	m->payload = d->env.message.body.bytes;
	m->payload_len = d->env.message.body.len;
	m->topic = d->routing_key;
	m->topic_len = d->env.routing_key.len;
	m->topic_separator = '.';
	m->source = s->queues[d->queue];
	m->exchange = d->exchange;
	m->message_id = d->message_id;
	m->message_id_len = d->message_id_len;
	m->content_type = d->content_type;
	m->headers = d->headers;
	m->n_headers = d->n_headers;
	m->redelivered = d->env.redelivered != 0;
	m->delivery_count = delivery_count(d);
}

/* Ack what committed, nack (requeue) the rest. Returns -1 when the
 * connection failed. */
static int
settle_batch(struct amqpc_session *s, bool all_settled)
{
	int rc = 0;

	if (all_settled)
		return amqp_basic_ack(s->conn, CHANNEL, s->batch[s->n - 1].env.delivery_tag, 1) == 0 ? 0 : -1;
	for (size_t i = 0; i < s->n && rc == 0; i++) {
		uint64_t tag = s->batch[i].env.delivery_tag;

		rc = apply_settled(s->outcome[i]) ? amqp_basic_ack(s->conn, CHANNEL, tag, 0)
				   : amqp_basic_nack(s->conn, CHANNEL, tag, 0, 1);
	}
	return rc == 0 ? 0 : -1;
}

/* Wait ms while holding deliveries, telling the broker we are alive:
 * rabbitmq-c sends heartbeats only inside its calls. *beat_ms is when we
 * last said something. -1 when the connection failed. */
static int
hold_with_heartbeats(struct amqpc_session *s, int64_t ms, int64_t *beat_ms)
{
	int64_t beat = amqpc_broker_cfg(s->b)->heartbeat * 1000 / 2, end = now_ms() + ms;

	while (!*s->w->stop) {
		int64_t now = now_ms(), step;

		if (beat > 0 && now - *beat_ms >= beat) {
			amqp_frame_t hb;

			memset(&hb, 0, sizeof(hb));
			hb.frame_type = AMQP_FRAME_HEARTBEAT;
			if (amqp_send_frame(s->conn, &hb) != AMQP_STATUS_OK)
				return -1;
			*beat_ms = now;
		}
		if (now >= end)
			break;
		step = end - now;
		if (beat > 0 && *beat_ms + beat - now < step)
			step = *beat_ms + beat - now;
		sleep_ms_unless(step > 0 ? step : 1, s->w->stop);
	}
	return 0;
}

/* A batch failed transiently: apply it again in place, with backoff, as
 * long as the database answers and the broker connection holds. Returns
 * APPLY_OK once it committed; APPLY_TRANSIENT when it must be given back
 * (the database is gone, the connection failed, or the worker stops). */
static enum apply_status
retry_in_place(struct amqpc_session *s)
{
	int tries = 1;
	int64_t beat_ms = now_ms();

	while (!*s->w->stop && worker_database_ready(s->w)) {
		int64_t delay = backoff_next(&s->retry_backoff);

		log_info("retrying the batch of %zu messages in %lld ms, holding it (attempt %d)", s->n,
		    (long long)delay, ++tries);
		if (hold_with_heartbeats(s, delay, &beat_ms) < 0 || *s->w->stop)
			break;
		if (worker_apply(s->w, s->msgs, s->n, s->outcome) == APPLY_OK)
			return APPLY_OK;
	}
	return APPLY_TRANSIENT;
}

static void
apply_batch(struct amqpc_session *s)
{
	size_t unsettled = 0;
	enum apply_status st;
	int64_t delay;

	for (size_t i = 0; i < s->n; i++)
		message_of(s, &s->batch[i], &s->msgs[i]);
	st = worker_apply(s->w, s->msgs, s->n, s->outcome);
	if (st == APPLY_TRANSIENT)
		st = retry_in_place(s);
	if (st == APPLY_TRANSIENT) {
		/* give everything back and stay away from the broker until the
		 * database is usable again */
		amqp_basic_nack(s->conn, CHANNEL, s->batch[s->n - 1].env.delivery_tag, 1, 1);
		broker_disconnect(s, true);
		delay = backoff_next(&s->retry_backoff);
		log_info("retrying in %lld ms", (long long)delay);
		sleep_ms_unless(delay, s->w->stop);
		return;
	}
	for (size_t i = 0; i < s->n; i++)
		unsettled += !apply_settled(s->outcome[i]);
	if (settle_batch(s, unsettled == 0) < 0) {
		log_warn("could not ack %zu messages (they were committed and will come back as duplicates)", s->n);
		broker_disconnect(s, false);
		return;
	}
	worker_acked(s->w);
	if (unsettled == 0) {
		backoff_reset(&s->retry_backoff);
		return;
	}
	/* keep the wait short: heartbeats are only serviced inside library calls */
	delay = backoff_next(&s->retry_backoff);
	if (amqpc_broker_cfg(s->b)->heartbeat > 0 && delay > amqpc_broker_cfg(s->b)->heartbeat * 1000 / 3)
		delay = amqpc_broker_cfg(s->b)->heartbeat * 1000 / 3;
	sleep_ms_unless(delay, s->w->stop);
}

static void
session_free(struct amqpc_session *s)
{
	broker_disconnect(s, true);
	batch_clear(s);
	free(s->batch);
	free(s->msgs);
	free(s->outcome);
	for (size_t i = 0; i < s->n_queues; i++)
		free(s->queues[i]);
	free(s->queues);
	amqpc_endpoints_free(&s->ends);
}

static int
amqpc_run(struct worker *w)
{
	const struct broker *b = w->broker;
	struct amqpc_session s;
	const char *err;

	memset(&s, 0, sizeof(s));
	s.w = w;
	s.b = b;
	err = amqpc_endpoints_init(&s.ends, b);
	if (err) {
		log_error("invalid url: %s", err);
		return 1;
	}
	for (size_t i = 0; i < b->n_routes; i++) {
		bool seen = false;

		for (size_t q = 0; q < s.n_queues; q++)
			seen |= strcmp(s.queues[q], amqpc_route_cfg(&b->routes[i])->queue) == 0;
		if (!seen) {
			s.queues = xrealloc(s.queues, (s.n_queues + 1) * sizeof(char *));
			s.queues[s.n_queues++] = xstrdup(amqpc_route_cfg(&b->routes[i])->queue);
		}
	}
	s.batch = xcalloc((size_t)amqpc_broker_cfg(b)->batch_size + 1, sizeof(struct delivery));
	s.msgs = xcalloc((size_t)amqpc_broker_cfg(b)->batch_size + 1, sizeof(struct message));
	s.outcome = xcalloc((size_t)amqpc_broker_cfg(b)->batch_size + 1, sizeof(enum apply_outcome));
	backoff_init(&s.broker_backoff, w->settings->retry_initial_ms, w->settings->retry_max_ms);
	backoff_init(&s.retry_backoff, w->settings->retry_initial_ms, w->settings->retry_max_ms);

	while (!*w->stop) {
		int rc;

		worker_tick(w);
		if (worker_wait_for_database(w) < 0)
			break;
		if (s.conn == NULL) {
			if (broker_connect(&s) < 0) {
				backoff_wait(&s.broker_backoff, "the broker", w->stop);
				continue;
			}
			backoff_reset(&s.broker_backoff);
		}
		rc = gather_batch(&s);
		if (rc < 0) {
			/* deliveries of a lost connection cannot be acked: the
			 * broker redelivers them */
			batch_clear(&s);
			broker_disconnect(&s, false);
			continue;
		}
		if (s.n > 0)
			apply_batch(&s);
		batch_clear(&s);
	}
	session_free(&s);
	return 0;
}

static const char *
amqpc_library_version(void)
{
	static char v[64];

	snprintf(v, sizeof(v), "rabbitmq-c %s", amqp_version());
	return v;
}

const struct adapter amqpc_adapter = {
	.name = "amqp",
	.broker_keys = amqpc_broker_keys,
	.outbox_keys = amqpc_outbox_keys,
	.broker_size = sizeof(struct amqpc_broker_cfg),
	.route_keys = amqpc_route_keys,
	.route_size = sizeof(struct amqpc_route_cfg),
	.check = amqpc_check,
	.check_window = amqpc_check_window,
	.check_live = amqpc_check_live,
	.check_main = amqpc_check_main,
	.topic_separator = '.',
	.route_matches = amqpc_route_matches,
	.route_source = amqpc_route_source,
	.workers = amqpc_workers,
	.in_flight = amqpc_in_flight,
	.redelivery = amqpc_redelivery,
	.run = amqpc_run,
	.tls_scheme = "amqps://",
	.publisher_open = amqpub_open,
	.publish_send = amqpub_send,
	.publish_settle = amqpub_settle,
	.publisher_idle = amqpub_idle,
	.publisher_close = amqpub_close,
	.library_version = amqpc_library_version,
};
