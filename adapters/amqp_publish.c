/* SPDX-License-Identifier: Apache-2.0 */
/* AMQP publisher for the outbox relay: persistent messages with publisher
 * confirms. rabbitmq-c 0.11 has no confirm-wait helper, so after
 * confirm.select we read basic.ack / basic.nack frames ourselves; their
 * delivery tags (with "multiple") cover the per-channel publish sequence
 * 1, 2, 3 ... A mandatory message the broker cannot route comes back as
 * basic.return (before its ack) and is not counted as confirmed. The event
 * ID travels as message_id and as the header "event_id".
 *
 * Up to two batches may be in flight (send, then settle the older one):
 * the relay sends the next batch while the broker still confirms the
 * previous one, so the confirm window spans rounds.
 *
 * The relay opens a new publisher after every connection loss; the node of
 * the cluster it connects to next is kept here, per process (a relay is a
 * process of its own), so that a lost node is skipped: the relays of a
 * broker start on successive nodes of its list, and each moves on when its
 * node is lost, or when the broker has nacked everything for a confirm
 * timeout (nacked_too_long). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "adapters/adapter.h"
#include "adapters/amqp_cfg.h"
#include "adapters/amqp_conn.h"
#include "adapters/amqp_endpoints.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

#define EVENT_ID_HEADER "event_id"

#define MAX_FLIGHTS 2

/* answers of a message in flight */
#define ANSWERED 1
#define ACKED 2
#define RETURNED 4

/* One batch in flight: publish sequence numbers first .. first+n-1. */
struct flight {
	uint64_t first;
	size_t n;
	const struct outbound *msgs;
	unsigned char *answer;
	size_t low;                 /* every message before this one is answered */
	size_t pending, n_returned, n_nacked;
};

struct publisher {
	const struct broker *b;
	struct amqpc_endpoints ends;
	bool lost;                          /* the connection failed: the next open tries the next node */
	int64_t nacked_since;               /* since when every answer has been a nack; 0: not so */
	amqp_connection_state_t conn;
	uint64_t next_seq;
	struct flight flights[MAX_FLIGHTS]; /* oldest first */
	int n_flights;
};

/* The node this process's publisher tries first; -1: not chosen yet. */
static long next_node = -1;

struct publisher *
amqpub_open(const struct broker *b, int index)
{
	struct publisher *p = xcalloc(1, sizeof(*p));
	const char *err = amqpc_endpoints_init(&p->ends, b);
	const struct amqpc_target *t;

	p->b = b;
	if (err) {
		log_error("invalid url: %s", err);
		goto fail;
	}
	if (next_node < 0)
		next_node = index > 0 ? index : 0;
	p->ends.cur = (size_t)next_node % p->ends.n;
	p->conn = amqpc_endpoints_open(&p->ends);
	next_node = (long)p->ends.cur;
	if (p->conn == NULL)
		goto fail;
	amqp_confirm_select(p->conn, AMQPC_CHANNEL);
	if (!amqpc_reply_ok(amqp_get_rpc_reply(p->conn), "enable publisher confirms")) {
		amqpc_endpoints_next(&p->ends);
		next_node = (long)p->ends.cur;
		goto fail;
	}
	p->next_seq = 1;
	t = amqpc_endpoints_current(&p->ends);
	repeat_clear("broker", "connected to %s:%d again", t->host, t->port);
	log_info("connected to %s:%d%s%s for publishing", t->host, t->port, t->tls ? " (TLS)" : "",
	    amqpc_endpoints_node(&p->ends));
	return p;
fail:
	amqpc_close(&p->conn, false);
	amqpc_endpoints_free(&p->ends);
	free(p);
	return NULL;
}

static void
flight_drop(struct publisher *p)
{
	free(p->flights[0].answer);
	memmove(&p->flights[0], &p->flights[1], (size_t)(MAX_FLIGHTS - 1) * sizeof(struct flight));
	memset(&p->flights[MAX_FLIGHTS - 1], 0, sizeof(struct flight));
	p->n_flights--;
}

void
amqpub_close(struct publisher *p)
{
	if (p == NULL)
		return;
	while (p->n_flights > 0)
		flight_drop(p);
	if (p->lost) {
		amqpc_endpoints_next(&p->ends);
		next_node = (long)p->ends.cur;
	}
	amqpc_close(&p->conn, true);
	amqpc_endpoints_free(&p->ends);
	free(p);
}

static int
send_one(struct publisher *p, const struct outbound *m)
{
	amqp_basic_properties_t props;
	amqp_table_entry_t *entries = xcalloc(m->n_headers + 1, sizeof(amqp_table_entry_t));
	const char *exchange = m->exchange ? m->exchange : amqpc_broker_cfg(p->b)->outbox_exchange;
	amqp_bytes_t body = { m->payload_len, (void *)m->payload };
	int rc;

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
	props.delivery_mode = 2; /* persistent */
	props.message_id = amqp_cstring_bytes(m->event_id);
	if (m->content_type) {
		props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
		props.content_type = amqp_cstring_bytes(m->content_type);
	}
	entries[0].key = amqp_cstring_bytes(EVENT_ID_HEADER);
	entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
	entries[0].value.value.bytes = amqp_cstring_bytes(m->event_id);
	props.headers.num_entries = 1;
	for (size_t i = 0; i < m->n_headers; i++) {
		amqp_table_entry_t *e;

		if (strcmp(m->headers[i].name, EVENT_ID_HEADER) == 0)
			continue;
		e = &entries[props.headers.num_entries++];
		e->key = amqp_cstring_bytes(m->headers[i].name);
		e->value.kind = AMQP_FIELD_KIND_UTF8;
		e->value.value.bytes = (amqp_bytes_t){ m->headers[i].value_len, (void *)m->headers[i].value };
	}
	props.headers.entries = entries;
	rc = amqp_basic_publish(p->conn, AMQPC_CHANNEL, amqp_cstring_bytes(exchange), amqp_cstring_bytes(m->topic),
	    1 /* mandatory: learn when nothing is bound */, 0, &props, body);
	free(entries);
	if (rc != AMQP_STATUS_OK) {
		log_warn("could not publish: %s", amqp_error_string2(rc));
		return -1;
	}
	return 0;
}

/* A basic.return: read the returned message and mark it, in whichever
 * batch in flight holds it, by its message_id. */
static int
read_return(struct publisher *p)
{
	amqp_message_t msg;
	amqp_rpc_reply_t r = amqp_read_message(p->conn, AMQPC_CHANNEL, &msg, 0);

	if (r.reply_type != AMQP_RESPONSE_NORMAL)
		return -1;
	for (int f = 0; f < p->n_flights && (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG); f++) {
		struct flight *fl = &p->flights[f];

		for (size_t i = 0; i < fl->n; i++) {
			const char *id = fl->msgs[i].event_id;

			if (strlen(id) != msg.properties.message_id.len ||
			    memcmp(id, msg.properties.message_id.bytes, msg.properties.message_id.len) != 0)
				continue;
			if (!(fl->answer[i] & RETURNED) && fl->n_returned++ == 0)
				log_warn("the broker could not route event %s to \"%s\" (no queue bound?); "
				    "will publish it again", id, fl->msgs[i].topic);
			fl->answer[i] |= RETURNED;
		}
	}
	amqp_destroy_message(&msg);
	return 0;
}

/* A basic.ack or basic.nack for tag (and every earlier one if multiple).
 * Only the messages it can answer are looked at: from the oldest one not
 * answered yet (or tag alone) up to tag, so that a frame costs as much as
 * it answers, not as much as the window holds. */
static void
read_answer(struct publisher *p, uint64_t tag, bool multiple, bool ack)
{
	for (int f = 0; f < p->n_flights; f++) {
		struct flight *fl = &p->flights[f];
		size_t hi, i;

		if (tag < fl->first)
			continue;
		hi = tag - fl->first + 1 < fl->n ? (size_t)(tag - fl->first + 1) : fl->n;
		if (!multiple && tag - fl->first >= fl->n)
			continue;
		for (i = multiple ? fl->low : hi - 1; i < hi; i++) {
			if (fl->answer[i] & ANSWERED)
				continue;
			fl->answer[i] |= ANSWERED | (ack ? ACKED : 0);
			fl->pending--;
			fl->n_nacked += !ack;
		}
		while (fl->low < fl->n && (fl->answer[fl->low] & ANSWERED))
			fl->low++;
	}
}

int
amqpub_send(struct publisher *p, const struct outbound *msgs, size_t n)
{
	struct flight *fl;

	if (p->n_flights == MAX_FLIGHTS) {
		log_error("a third batch sent before the first was settled");
		return -1;
	}
	fl = &p->flights[p->n_flights++];
	fl->first = p->next_seq;
	fl->n = fl->pending = n;
	fl->msgs = msgs;
	fl->answer = xcalloc(n + 1, 1);
	fl->low = 0;
	fl->n_returned = fl->n_nacked = 0;
	for (size_t i = 0; i < n; i++) {
		if (send_one(p, &msgs[i]) < 0) {
			p->lost = true;
			return -1;
		}
		p->next_seq++;
	}
	return 0;
}

/* Whether the broker has nacked every message on this connection for
 * longer than timeout_ms. RabbitMQ 3.10 nacks what is published into a
 * quorum queue that has no leader, and a channel that was opened during
 * the election may go on nacking after a leader was elected (seen in
 * tests/integration/amqp_cluster.py: minutes, until the channel was
 * closed). A new connection, on the next node, gets a fresh view. */
static bool
nacked_too_long(struct publisher *p, const struct flight *fl, int64_t timeout_ms)
{
	if (fl->n == 0 || fl->n_nacked < fl->n) {
		p->nacked_since = 0;
		return false;
	}
	if (p->nacked_since == 0)
		p->nacked_since = now_ms();
	if (now_ms() - p->nacked_since < timeout_ms)
		return false;
	log_warn("the broker has nacked every message for %lld ms; connecting again, to the next node",
	    (long long)(now_ms() - p->nacked_since));
	return true;
}

int
amqpub_settle(struct publisher *p, bool *confirmed, int64_t timeout_ms)
{
	struct flight *fl = &p->flights[0];
	int64_t deadline = now_ms() + timeout_ms;
	int rc = 0;

	if (p->n_flights == 0)
		return 0;
	while (fl->pending > 0) {
		int64_t left = deadline - now_ms();
		struct timeval tv;
		amqp_frame_t frame;
		int st;

		if (left <= 0) {
			log_warn("%zu of %zu messages not confirmed within %lld ms; will republish", fl->pending, fl->n,
			    (long long)timeout_ms);
			break;
		}
		tv.tv_sec = left / 1000;
		tv.tv_usec = (left % 1000) * 1000;
		st = amqp_simple_wait_frame_noblock(p->conn, &frame, &tv);
		if (st == AMQP_STATUS_TIMEOUT)
			continue;
		if (st != AMQP_STATUS_OK) {
			log_warn("lost the broker connection while waiting for confirms: %s", amqp_error_string2(st));
			rc = -1;
			break;
		}
		if (amqpc_close_frame(&frame)) {
			rc = -1;
			break;
		}
		if (frame.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (frame.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
			if (read_return(p) < 0) {
				rc = -1;
				break;
			}
		} else if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
			amqp_basic_ack_t *a = frame.payload.method.decoded;

			read_answer(p, a->delivery_tag, a->multiple, true);
		} else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
			amqp_basic_nack_t *a = frame.payload.method.decoded;

			read_answer(p, a->delivery_tag, a->multiple, false);
		}
	}
	if (rc == 0 && nacked_too_long(p, fl, timeout_ms))
		rc = -1;
	for (size_t i = 0; i < fl->n; i++)
		confirmed[i] = rc == 0 && (fl->answer[i] & (ACKED | RETURNED)) == ACKED;
	if (fl->n_nacked)
		log_warn("the broker nacked %zu of %zu messages; will publish them again", fl->n_nacked, fl->n);
	if (fl->n_returned > 1)
		log_warn("%zu of %zu messages were returned as unroutable", fl->n_returned, fl->n);
	flight_drop(p);
	p->lost |= rc < 0;
	return rc;
}

int
amqpub_idle(struct publisher *p)
{
	struct timeval tv = { 0, 0 };
	amqp_frame_t frame;
	int st;

	/* a zero wait still sends a due heartbeat and reads what arrived */
	while ((st = amqp_simple_wait_frame_noblock(p->conn, &frame, &tv)) == AMQP_STATUS_OK)
		if (amqpc_close_frame(&frame)) {
			p->lost = true;
			return -1;
		}
	if (st != AMQP_STATUS_TIMEOUT) {
		log_warn("lost the broker connection: %s", amqp_error_string2(st));
		p->lost = true;
		return -1;
	}
	return 0;
}
