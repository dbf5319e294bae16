/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT 3.1.1 and 5 adapter on paho-mqtt-c's MQTTAsync API: one persistent
 * session (fixed client ID, clean session off / clean start off with a
 * session expiry), QoS 1 subscriptions to the routes' topic filters, and the
 * whole transaction inside messageArrived. paho has no manual ack: it writes
 * the PUBACK when messageArrived returns 1, and returning 0 is unsafe (the
 * PUBACK goes out anyway, and later messages are then acked before they are
 * delivered). So the callback returns 1 only once the core has settled the
 * message (committed, duplicate or dead letter committed) and never 0.
 *
 * The database going away inside the callback: we retry inside the callback,
 * with capped exponential backoff, until the message settles; we do not try
 * to drop the connection. Why:
 *  - paho offers no way out of the callback without acking: returning 0 is
 *    unsafe (above), and MQTTAsync_disconnect cannot run while the callback
 *    holds paho's process-wide lock (it would wait for the callback).
 *  - Blocking is harmless for the guarantee. While the callback waits, paho
 *    sends no keepalive and the broker closes the connection after 1.5 x
 *    keepalive; the broker keeps the persistent session, this unacked message
 *    and everything published meanwhile. When the database is back the
 *    message commits, the PUBACK goes to a closed socket (or, before the
 *    keepalive ran out, to the broker), paho reports the connection lost, we
 *    reconnect with backoff and the broker redelivers: the redelivered copy
 *    is a counted duplicate.
 *  - The stall stays inside this worker: every broker connection is its own
 *    process (paho's receive thread and lock are process-wide), so no other
 *    broker waits for this database.
 * On SIGTERM a message whose transaction is running finishes it and is acked;
 * a message that cannot be settled (database down) is parked: the callback
 * never returns, the worker exits without acking it and the broker redelivers
 * it to the next run.
 *
 * After a connection loss the paho client is destroyed and a fresh one made
 * before reconnecting (client_renew): paho keeps PUBACKs it queued on the
 * lost connection and would write them on the next one.
 *
 * A broker with several servers ("failover_urls": the nodes of a cluster)
 * is one paho connect over a list (serverURIs), tried in order from the
 * server that answered last. A server that has no session for the client
 * ID starts a new one: messages another node's session held are not
 * delivered here unless the cluster shares sessions, and that is logged. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "adapters/adapter.h"
#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_conn.h"
#include "adapters/mqtt_publish.h"
#include "adapters/mqtt_session.h"
#include "adapters/mqtt_topic.h"
#include "bridge/core/apply.h"
#include "bridge/common/backoff.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/config/settings.h"
#include "bridge/config/tls.h"
#include "bridge/common/util.h"
#include "bridge/daemon/worker.h"

#define POLL_MS 50
#define DISCONNECT_WAIT_MS 3000

/* --- paho callbacks (on paho's threads) */

static void
set_state(struct mqtt_session *s, enum conn_state st)
{
	pthread_mutex_lock(&s->mu);
	s->state = st;
	pthread_mutex_unlock(&s->mu);
	if (s->mode == SESSION_OWN) /* an old session's connection is not the worker's */
		worker_broker_connected(s->w, st == ST_READY);
}

static enum conn_state
get_state(struct mqtt_session *s)
{
	enum conn_state st;

	pthread_mutex_lock(&s->mu);
	st = s->state;
	pthread_mutex_unlock(&s->mu);
	return st;
}

static void
on_connection_lost(void *ctx, char *cause)
{
	struct mqtt_session *s = ctx;

	log_warn("lost the broker connection%s%s", cause ? ": " : "", cause ? cause : "");
	set_state(s, ST_LOST);
}

static void
on_disconnected5(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc)
{
	struct mqtt_session *s = ctx;

	(void)props;
	log_warn("the broker closed the connection: %s", MQTTReasonCode_toString(rc));
	set_state(s, ST_LOST);
}

/* A refused $share/ subscription: the broker may not support shared
 * subscriptions. Never fall back to a plain one by ourselves: that would
 * change what every worker receives. */
static void
refused(const struct mqtt_session *s, size_t i, int code)
{
	if (strncmp(s->subs[i], "$share/", 7) != 0) {
		log_error("the broker refused the subscription to \"%s\" (reason code 0x%02x)", s->subs[i], code);
		return;
	}
	log_error("the broker refused the shared subscription \"%s\" (reason code 0x%02x%s): if it does not "
	    "support shared subscriptions, set key \"workers\" to 1 in \"%s\" (one session, plain subscriptions, "
	    "strict order per topic)", s->subs[i], code, code == 0x9E ? ", shared subscriptions not supported" : "",
	    s->b->file);
}

static void
subscribed(struct mqtt_session *s, const int *granted, size_t n)
{
	bool ok = true;

	for (size_t i = 0; i < s->n_filters; i++) {
		int g = i < n ? granted[i] : 0x80;

		if (g >= 0x80) {
			refused(s, i, g);
			ok = false;
		} else if (g < s->qos[i]) {
			log_warn("subscribed to \"%s\" at QoS %d, below the QoS %d asked for", s->subs[i], g, s->qos[i]);
		} else {
			log_info("subscribed to \"%s\" at QoS %d", s->subs[i], g);
		}
	}
	set_state(s, ok ? ST_READY : ST_LOST);
}

static void
on_subscribe(void *ctx, MQTTAsync_successData *r)
{
	struct mqtt_session *s = ctx;

	if (s->n_filters == 1)
		subscribed(s, &r->alt.qos, 1);
	else
		subscribed(s, r->alt.qosList, s->n_filters);
}

static void
on_subscribe5(void *ctx, MQTTAsync_successData5 *r)
{
	struct mqtt_session *s = ctx;
	int granted[64];
	size_t n = 0;

	/* paho 1.3.12 fills reasonCodes only for more than one filter; for one
	 * it sets reasonCodeCount to 1 and leaves the pointer uninitialized */
	if (r->alt.sub.reasonCodeCount <= 1)
		granted[n++] = (int)r->reasonCode;
	else
		for (int i = 0; i < r->alt.sub.reasonCodeCount && n < 64; i++)
			granted[n++] = (int)r->alt.sub.reasonCodes[i];
	subscribed(s, granted, n);
}

static void
on_subscribe_failure(void *ctx, MQTTAsync_failureData *r)
{
	struct mqtt_session *s = ctx;

	log_error("could not subscribe: %s", r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1));
	set_state(s, ST_LOST);
}

static void
on_subscribe_failure5(void *ctx, MQTTAsync_failureData5 *r)
{
	struct mqtt_session *s = ctx;

	log_error("could not subscribe: %s",
	    r == NULL ? "no reason given" : r->message ? r->message : MQTTReasonCode_toString(r->reasonCode));
	set_state(s, ST_LOST);
}

/* Which server answered, and whether it had the session: a new session
 * after an earlier one (on another node that does not share sessions, or
 * on a broker that lost its state) does not have what the old one held. */
static void
connected(struct mqtt_session *s, const char *server, int session_present)
{
	size_t i = mqtt_uri_index(s->order, s->n_uris, server);
	const char *now = s->order[i];
	size_t before;
	bool had;

	pthread_mutex_lock(&s->mu);
	s->present = session_present != 0;
	pthread_mutex_unlock(&s->mu);
	if (s->mode != SESSION_OWN) {
		log_debug("connected to %s as \"%s\" to retire it (%s)", now, s->client_id,
		    session_present ? "the broker had its session" : "the broker had no session");
		return;
	}
	repeat_clear("broker", "connected to %s again", now);
	log_info("connected to %s as \"%s\" (MQTT %s, %s)", now, s->client_id,
	    mqtt_broker_cfg(s->b)->mqtt_version == 5 ? "5" : "3.1.1", session_present ? "session resumed" : "new session");
	pthread_mutex_lock(&s->mu);
	s->client_used = true;
	before = s->last;
	had = s->had_session;
	s->had_session = true;
	for (size_t k = 0; k < s->n_uris; k++)
		if (s->uris[k] == now)
			s->last = k;
	pthread_mutex_unlock(&s->mu);
	if (had && !session_present && !mqtt_broker_cfg(s->b)->clean_session) {
		if (s->uris[before] != now)
			log_warn("%s has no session for \"%s\": messages that the session on %s held unacked are not "
			    "delivered here unless the servers share sessions", now, s->client_id, s->uris[before]);
		else
			log_warn("%s kept no session for \"%s\": messages it held unacked for it are lost", now,
			    s->client_id);
	}
}

/* CONNACK: subscribe (again) from here, on paho's thread, so that the main
 * thread never calls into paho while a message callback may hold its lock. */
static void
subscribe_all(struct mqtt_session *s, const char *server, int session_present)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	int rc;

	connected(s, server, session_present);
	pthread_mutex_lock(&s->mu);
	s->last_message_us = now_us();
	pthread_mutex_unlock(&s->mu);
	if (s->mode != SESSION_OWN) {
		set_state(s, ST_READY); /* an old session: what it holds flows in by itself */
		return;
	}
	set_state(s, ST_SUBSCRIBING);
	opts.context = s;
	if (mqtt_broker_cfg(s->b)->mqtt_version == 5) {
		opts.onSuccess5 = on_subscribe5;
		opts.onFailure5 = on_subscribe_failure5;
	} else {
		opts.onSuccess = on_subscribe;
		opts.onFailure = on_subscribe_failure;
	}
	rc = MQTTAsync_subscribeMany(s->client, (int)s->n_filters, s->subs, s->qos, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error("could not subscribe: %s", MQTTAsync_strerror(rc));
		set_state(s, ST_LOST);
	}
}

static void
on_connect(void *ctx, MQTTAsync_successData *r)
{
	subscribe_all(ctx, r->alt.connect.serverURI, r->alt.connect.sessionPresent);
}

/* MQTT 5 CONNACK: "Shared Subscription Available" 0 means a $share/
 * filter would be refused. Say which key to change rather than fall back
 * to plain subscriptions, which would change what each worker receives. */
static bool
shared_refused(const struct mqtt_session *s, MQTTProperties *props)
{
	if (!MQTTProperties_hasProperty(props, MQTTPROPERTY_CODE_SHARED_SUBSCRIPTION_AVAILABLE) ||
	    MQTTProperties_getNumericValue(props, MQTTPROPERTY_CODE_SHARED_SUBSCRIPTION_AVAILABLE) != 0)
		return false;
	for (size_t i = 0; i < s->n_filters; i++)
		if (strncmp(s->subs[i], "$share/", 7) == 0) {
			log_error("the broker does not support shared subscriptions (CONNACK \"Shared Subscription "
			    "Available\" 0), needed for \"%s\": set key \"workers\" to 1 in \"%s\" (one session, "
			    "plain subscriptions, strict order per topic)", s->subs[i], s->b->file);
			return true;
		}
	return false;
}

static void
on_connect5(void *ctx, MQTTAsync_successData5 *r)
{
	struct mqtt_session *s = ctx;

	if (s->mode == SESSION_OWN && shared_refused(s, &r->properties)) {
		connected(s, r->alt.connect.serverURI, r->alt.connect.sessionPresent);
		set_state(s, ST_LOST);
		return;
	}
	subscribe_all(ctx, r->alt.connect.serverURI, r->alt.connect.sessionPresent);
}

/* An old session's connect failed: the worker's own session reports the
 * broker's trouble; this one is tried again later (adapters/mqtt_retire.c). */
static bool
retire_connect_failed(struct mqtt_session *s, const char *reason)
{
	if (s->mode == SESSION_OWN)
		return false;
	log_debug("could not connect as \"%s\" to retire it: %s", s->client_id, reason);
	set_state(s, ST_LOST);
	return true;
}

static void
on_connect_failure(void *ctx, MQTTAsync_failureData *r)
{
	struct mqtt_session *s = ctx;

	if (retire_connect_failed(s, r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1)))
		return;
	repeat_fail("broker", NULL, "could not connect to %s: %s%s", s->uri,
	    r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1),
	    mqtt_tls_hint(s->tls, r ? r->code : -1, &s->tls_reported));
	set_state(s, ST_LOST);
}

static void
on_connect_failure5(void *ctx, MQTTAsync_failureData5 *r)
{
	struct mqtt_session *s = ctx;

	if (retire_connect_failed(s, r == NULL ? "no reason given" : r->message ? r->message
	    : MQTTReasonCode_toString(r->reasonCode)))
		return;
	repeat_fail("broker", NULL, "could not connect to %s: %s%s", s->uri,
	    r && r->message ? r->message
	    : r && r->reasonCode ? MQTTReasonCode_toString(r->reasonCode) : MQTTAsync_strerror(r ? r->code : -1),
	    mqtt_tls_hint(s->tls, r && !r->reasonCode ? r->code : 0, &s->tls_reported));
	set_state(s, ST_LOST);
}

static void
on_disconnect_done(void *ctx, MQTTAsync_successData *r)
{
	struct mqtt_session *s = ctx;

	(void)r;
	pthread_mutex_lock(&s->mu);
	s->disconnected = true;
	pthread_mutex_unlock(&s->mu);
}

static void
on_disconnect_done5(void *ctx, MQTTAsync_successData5 *r)
{
	(void)r;
	on_disconnect_done(ctx, NULL);
}

/* --- messages */

/* The filter of the first route that matches topic: the message's source. */
static const char *
filter_of(const struct mqtt_session *s, const char *topic)
{
	for (size_t i = 0; i < s->n_filters; i++)
		if (mqtt_filter_match(s->filters[i], topic))
			return s->filters[i];
	return NULL;
}

/* MQTT 5 user properties become headers, the content type property the
 * content type; both point into props, which outlives the message. */
static void
message_properties(const MQTTProperties *props, struct message *m, struct msg_header **headers,
    char **content_type)
{
	size_t n = 0;

	*headers = xcalloc((size_t)props->count + 1, sizeof(struct msg_header));
	for (int i = 0; i < props->count; i++) {
		const MQTTProperty *p = &props->array[i];

		if (p->identifier == MQTTPROPERTY_CODE_USER_PROPERTY) {
			(*headers)[n].name = xstrndup(p->value.data.data, (size_t)p->value.data.len);
			(*headers)[n].value = xstrndup(p->value.value.data, (size_t)p->value.value.len);
			(*headers)[n].value_len = (size_t)p->value.value.len;
			n++;
		} else if (p->identifier == MQTTPROPERTY_CODE_CONTENT_TYPE && *content_type == NULL) {
			*content_type = xstrndup(p->value.data.data, (size_t)p->value.data.len);
		}
	}
	m->headers = *headers;
	m->n_headers = n;
	m->content_type = *content_type;
}

/* Wait forever: the message stays unacked and the broker redelivers it
 * after the worker exits. */
static void
park(struct mqtt_session *s, bool counted)
{
	pthread_mutex_lock(&s->mu);
	s->parked++;
	if (counted)
		s->in_callback = false;
	pthread_mutex_unlock(&s->mu);
	for (;;)
		pause();
}

static int
on_message(void *ctx, char *topic_name, int topic_len, MQTTAsync_message *mm)
{
	struct mqtt_session *s = ctx;
	struct message m;
	struct msg_header *headers = NULL;
	char *topic, *content_type = NULL;
	enum apply_outcome outcome = OUTCOME_DEFERRED;
	bool closing;
	int tries = 0;

	/* an old session being retired shares paho's one receive thread with
	 * the worker's own: it must never park it, only a stop may */
	pthread_mutex_lock(&s->mu);
	closing = (s->closing && s->mode == SESSION_OWN) || *s->w->stop;
	if (!closing)
		s->in_callback = true;
	pthread_mutex_unlock(&s->mu);
	if (closing)
		park(s, false); /* never returns: not acked */

	topic = topic_len > 0 ? xstrndup(topic_name, (size_t)topic_len) : xstrdup(topic_name);
	memset(&m, 0, sizeof(m));
	m.payload = mm->payload;
	m.payload_len = (size_t)mm->payloadlen;
	m.topic = topic;
	m.topic_len = topic_len > 0 ? (size_t)topic_len : strlen(topic);
	m.topic_separator = '/';
	m.source = filter_of(s, topic);
	m.redelivered = mm->dup != 0;
	m.received_at_us = now_us();
	message_properties(&mm->properties, &m, &headers, &content_type);

	for (;;) {
		int64_t delay;

		tries++;
		if (worker_apply(s->w, &m, 1, &outcome) == APPLY_OK && apply_settled(outcome))
			break;
		if (*s->w->stop) {
			log_notice("stopping with a message on \"%s\" not applied; the broker will redeliver it", topic);
			park(s, true); /* never returns: not acked */
		}
		delay = backoff_next(&s->retry_backoff);
		log_debug("retrying the message on \"%s\" in %lld ms (attempt %d)", topic, (long long)delay, tries + 1);
		sleep_ms_unless(delay, s->w->stop);
	}
	if (tries > 1)
		log_info("the message on \"%s\" settled after %d attempts", topic, tries);
	backoff_reset(&s->retry_backoff);

	for (size_t i = 0; i < m.n_headers; i++) {
		free((char *)headers[i].name);
		free((char *)headers[i].value);
	}
	free(headers);
	free(content_type);
	free(topic);
	MQTTAsync_freeMessage(&mm);
	MQTTAsync_free(topic_name);
	pthread_mutex_lock(&s->mu);
	s->in_callback = false;
	s->last_message_us = now_us();
	pthread_mutex_unlock(&s->mu);
	worker_acked(s->w);
	return 1; /* settled: paho writes the PUBACK now */
}

/* --- connection, on the worker's main thread */

static int
start_connect(struct mqtt_session *s)
{
	const struct broker *b = s->b;
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	MQTTAsync_connectOptions opts5 = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_connectOptions *o = mqtt_broker_cfg(b)->mqtt_version == 5 ? &opts5 : &opts;
	int rc;

	o->keepAliveInterval = (int)mqtt_broker_cfg(b)->keepalive;
	o->connectTimeout = (int)((b->connect_timeout_ms + 999) / 1000);
	o->automaticReconnect = 0; /* our own loop: it waits for the database first */
	o->context = s;
	o->username = b->user;
	o->password = b->password;
	o->ssl = s->tls ? &s->ssl : NULL;
	if (s->n_uris > 1) {
		o->serverURIs = s->order;
		o->serverURIcount = (int)s->n_uris;
	}
	if (mqtt_broker_cfg(b)->mqtt_version == 5) {
		o->MQTTVersion = MQTTVERSION_5;
		o->cleanstart = s->mode == SESSION_CLEAN || mqtt_broker_cfg(b)->clean_session;
		o->connectProperties = &s->connect_props;
		o->onSuccess5 = on_connect5;
		o->onFailure5 = on_connect_failure5;
	} else {
		o->MQTTVersion = MQTTVERSION_3_1_1;
		o->cleansession = s->mode == SESSION_CLEAN || mqtt_broker_cfg(b)->clean_session;
		o->onSuccess = on_connect;
		o->onFailure = on_connect_failure;
	}
	set_state(s, ST_CONNECTING);
	rc = MQTTAsync_connect(s->client, o);
	if (rc != MQTTASYNC_SUCCESS && retire_connect_failed(s, MQTTAsync_strerror(rc)))
		return -1;
	if (rc != MQTTASYNC_SUCCESS) {
		repeat_fail("broker", NULL, "could not connect to %s: %s", s->uri, MQTTAsync_strerror(rc));
		set_state(s, ST_LOST);
		return -1;
	}
	return 0;
}

/* The list of servers for the next connect: the one that answered last
 * first, then those after it in configuration order, round to it. */
static void
servers_order(struct mqtt_session *s)
{
	size_t last;

	pthread_mutex_lock(&s->mu);
	last = s->last;
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < s->n_uris; i++)
		s->order[i] = s->uris[(last + i) % s->n_uris];
}

/* A paho client for the session, with our callbacks. */
static int
client_new(struct mqtt_session *s, MQTTAsync *client)
{
	const struct broker *b = s->b;
	MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
	int rc;

	copts.MQTTVersion = mqtt_broker_cfg(b)->mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
	rc = MQTTAsync_createWithOptions(client, s->order[0], s->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &copts);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error("could not create the MQTT client: %s", MQTTAsync_strerror(rc));
		*client = NULL;
		return -1;
	}
	rc = MQTTAsync_setCallbacks(*client, s, on_connection_lost, on_message, NULL);
	if (rc == MQTTASYNC_SUCCESS && mqtt_broker_cfg(b)->mqtt_version == 5)
		rc = MQTTAsync_setDisconnected(*client, s, on_disconnected5);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error("could not set the MQTT callbacks: %s", MQTTAsync_strerror(rc));
		MQTTAsync_destroy(client);
		return -1;
	}
	return 0;
}

/* After a connection loss, replace the client by a fresh one before
 * reconnecting. paho 1.3.12 keeps per-client state across a reconnect of
 * the same client: above all the PUBACKs it queued while a partial write
 * was pending (MQTTProtocol_handlePublishes), which it writes only once a
 * later partial write completes -- on the next connection, where the
 * broker may have given those packet ids to messages not applied yet, so
 * they would be acked unapplied. Only MQTTAsync_destroy empties that queue
 * (and the client's message queue, pending commands and QoS 2 state).
 * Runs on the worker's main thread and only while no message callback
 * runs: a callback blocked in a database retry keeps the client until it
 * returns (or parks on shutdown). The new client is made before the old
 * one is destroyed, so paho's threads keep running. */
static int
client_renew(struct mqtt_session *s)
{
	MQTTAsync fresh = NULL;
	bool busy, used;

	pthread_mutex_lock(&s->mu);
	busy = s->in_callback;
	used = s->client_used;
	pthread_mutex_unlock(&s->mu);
	if (!used)
		return 0; /* never connected: nothing to discard */
	if (busy)
		return 1;
	servers_order(s);
	if (client_new(s, &fresh) < 0)
		return -1;
	log_info("discarding the MQTT client state of the lost connection");
	MQTTAsync_destroy(&s->client);
	s->client = fresh;
	pthread_mutex_lock(&s->mu);
	s->client_used = false;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* The memory budget, MQTT 5: the worker holds one message at a time (the
 * callback) and paho reads nothing more while it runs, so what the broker
 * sends ahead waits in the socket and at the broker. Receive Maximum bounds
 * it: max_inflight_bytes over the largest payload a route takes, at least
 * one. MQTT 3.1.1 has no such property: the broker's own in-flight limit
 * applies (Mosquitto: max_inflight_messages, 20). */
static void
receive_maximum(struct mqtt_session *s)
{
	MQTTProperty p = { .identifier = MQTTPROPERTY_CODE_RECEIVE_MAXIMUM };
	int64_t payload = s->w->settings->max_payload > 0 ? s->w->settings->max_payload : 1;
	int64_t n = mqtt_broker_cfg(s->b)->max_inflight_bytes / payload;

	p.value.integer2 = (unsigned short)(n < 1 ? 1 : n > 65535 ? 65535 : n);
	MQTTProperties_add(&s->connect_props, &p);
	log_debug("receive maximum %u (max_inflight_bytes %lld, limits.max_payload %lld)", p.value.integer2,
	    (long long)mqtt_broker_cfg(s->b)->max_inflight_bytes, (long long)payload);
}

static int
session_init(struct mqtt_session *s, const char *client_id)
{
	const struct broker *b = s->b;
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;

	s->n_uris = mqtt_servers(b, &s->uris, &s->tls);
	if (s->n_uris == 0)
		return -1;
	s->order = xcalloc(s->n_uris, sizeof(char *));
	servers_order(s);
	s->uri = mqtt_servers_text(s->uris, s->n_uris);
	s->ssl = ssl;
	mqtt_tls_options(b, &s->ssl, &s->tls_reported);
	s->client_id = client_id ? xstrdup(client_id) : mqtt_worker_client_id(b, s->w->index);
	for (size_t i = 0; i < b->n_routes; i++) {
		const char *topic = mqtt_route_cfg(&b->routes[i])->topic;
		bool seen = false;

		for (size_t f = 0; f < s->n_filters; f++)
			seen |= strcmp(s->filters[f], topic) == 0;
		if (seen)
			continue;
		s->filters = xrealloc(s->filters, (s->n_filters + 1) * sizeof(char *));
		s->subs = xrealloc(s->subs, (s->n_filters + 1) * sizeof(char *));
		s->qos = xrealloc(s->qos, (s->n_filters + 1) * sizeof(int));
		s->filters[s->n_filters] = xstrdup(topic);
		s->subs[s->n_filters] = mqtt_subscription(b, topic);
		s->qos[s->n_filters++] = (int)c->qos;
	}
	if (c->mqtt_version == 5 && !c->clean_session && s->mode != SESSION_CLEAN) {
		MQTTProperty p = { .identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL };

		p.value.integer4 = (unsigned int)c->session_expiry;
		MQTTProperties_add(&s->connect_props, &p);
	}
	if (c->mqtt_version == 5)
		receive_maximum(s);
	return client_new(s, &s->client);
}

/* Send DISCONNECT and wait a little for it. Runs on its own thread: a
 * parked callback holds paho's lock, and the call would wait forever. */
static void *
disconnect_thread(void *arg)
{
	struct mqtt_session *s = arg;
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
	MQTTAsync_disconnectOptions opts5 = MQTTAsync_disconnectOptions_initializer5;
	MQTTAsync_disconnectOptions *o = mqtt_broker_cfg(s->b)->mqtt_version == 5 ? &opts5 : &opts;

	o->timeout = 1000;
	o->context = s;
	if (mqtt_broker_cfg(s->b)->mqtt_version == 5)
		o->onSuccess5 = on_disconnect_done5;
	else
		o->onSuccess = on_disconnect_done;
	if (MQTTAsync_disconnect(s->client, o) != MQTTASYNC_SUCCESS)
		on_disconnect_done(s, NULL); /* not connected: nothing to say */
	return NULL;
}

/* Drain: let a running transaction finish, stop taking messages, say
 * DISCONNECT. Returns true when paho is idle and may be destroyed. */
static bool
drain(struct mqtt_session *s)
{
	pthread_t t;
	int64_t deadline;
	bool done, busy;

	pthread_mutex_lock(&s->mu);
	s->closing = true;
	pthread_mutex_unlock(&s->mu);
	for (;;) {
		pthread_mutex_lock(&s->mu);
		busy = s->in_callback;
		pthread_mutex_unlock(&s->mu);
		if (!busy)
			break;
		sleep_ms_unless(POLL_MS, NULL);
	}
	if (pthread_create(&t, NULL, disconnect_thread, s) != 0)
		return false;
	pthread_detach(t);
	deadline = now_ms() + DISCONNECT_WAIT_MS;
	do {
		sleep_ms_unless(POLL_MS, NULL);
		pthread_mutex_lock(&s->mu);
		done = s->disconnected;
		busy = s->parked > 0;
		pthread_mutex_unlock(&s->mu);
	} while (!done && now_ms() < deadline);
	if (busy)
		log_info("%d message%s left unacked for redelivery", s->parked, s->parked == 1 ? "" : "s");
	else if (done && s->mode == SESSION_OWN)
		log_info("disconnected from the broker");
	return done && !busy;
}

static void
session_free(struct mqtt_session *s)
{
	MQTTProperties_free(&s->connect_props);
	for (size_t i = 0; i < s->n_filters; i++) {
		free(s->filters[i]);
		free(s->subs[i]);
	}
	free(s->filters);
	free(s->subs);
	free(s->qos);
	free(s->uri);
	free(s->order);
	mqtt_servers_free(s->uris);
	free(s->client_id);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

struct mqtt_session *
mqtt_session_new(struct worker *w, const char *client_id, enum session_mode mode)
{
	/* on the heap: when a parked callback keeps paho from being destroyed,
	 * paho's threads may still call back into it until the process exits */
	struct mqtt_session *s = xcalloc(1, sizeof(*s));

	s->w = w;
	s->b = w->broker;
	s->mode = mode;
	pthread_mutex_init(&s->mu, NULL);
	backoff_init(&s->broker_backoff, w->settings->retry_initial_ms, w->settings->retry_max_ms);
	backoff_init(&s->retry_backoff, w->settings->retry_initial_ms, w->settings->retry_max_ms);
	if (session_init(s, client_id) < 0) {
		session_free(s);
		return NULL;
	}
	return s;
}

int
mqtt_session_connect(struct mqtt_session *s)
{
	int rc = client_renew(s);

	if (rc == 0)
		start_connect(s);
	return rc;
}

enum conn_state
mqtt_session_state(struct mqtt_session *s)
{
	return get_state(s);
}

bool
mqtt_session_present(struct mqtt_session *s)
{
	bool present;

	pthread_mutex_lock(&s->mu);
	present = s->present;
	pthread_mutex_unlock(&s->mu);
	return present;
}

bool
mqtt_session_quiet(struct mqtt_session *s, int64_t quiet_ms)
{
	bool quiet;

	pthread_mutex_lock(&s->mu);
	quiet = !s->in_callback && now_us() - s->last_message_us >= quiet_ms * 1000;
	pthread_mutex_unlock(&s->mu);
	return quiet;
}

void
mqtt_session_close(struct mqtt_session *s)
{
	if (s->client == NULL || drain(s)) {
		if (s->client)
			MQTTAsync_destroy(&s->client);
		session_free(s);
	}
	/* else: a parked callback or an unfinished DISCONNECT still holds paho;
	 * the worker exits with that message unacked and s stays allocated */
}

/* Once the database answers: record this worker's session. Once the own
 * session is subscribed, worker 0 retires the sessions an earlier
 * configuration left (adapters/mqtt_retire.c); a failure is tried again
 * after the next connect. */
static void
sessions_housekeeping(struct worker *w, struct mqtt_session *s, bool *recorded, bool *retired)
{
	enum conn_state st = get_state(s);

	if (!*recorded && st == ST_DOWN)
		*recorded = mqtt_retire_record(w, s) == 0;
	if (*recorded && !*retired && st == ST_READY && w->index == 0)
		*retired = mqtt_retire_old(w, s) == 0;
}

static int
mqtt_run(struct worker *w)
{
	struct mqtt_session *s = mqtt_session_new(w, NULL, SESSION_OWN);
	bool recorded = false, retired = w->index != 0;
	int status = 0;

	if (s == NULL)
		return 1;
	while (!*w->stop) {
		enum conn_state st = get_state(s);

		worker_tick(w);
		if (st == ST_READY) {
			backoff_reset(&s->broker_backoff);
			sessions_housekeeping(w, s, &recorded, &retired);
			sleep_ms_unless(POLL_MS, w->stop);
		} else if (st == ST_CONNECTING || st == ST_SUBSCRIBING) {
			sleep_ms_unless(POLL_MS, w->stop);
		} else if (st == ST_LOST) {
			backoff_wait(&s->broker_backoff, "the broker", w->stop);
			set_state(s, ST_DOWN);
		} else {
			/* ST_DOWN: stay away from the broker until the database is usable */
			int rc;

			if (worker_wait_for_database(w) < 0)
				break;
			sessions_housekeeping(w, s, &recorded, &retired);
			rc = mqtt_session_connect(s);
			if (rc < 0) {
				status = 1;
				break;
			}
			if (rc > 0) /* a message callback still runs */
				sleep_ms_unless(POLL_MS, w->stop);
		}
	}
	mqtt_session_close(s);
	return status;
}

static const char *
mqtt_library_version(void)
{
	static char v[64];
	MQTTAsync_nameValue *info = MQTTAsync_getVersionInfo();

	snprintf(v, sizeof(v), "paho-mqtt-c");
	for (; info && info->name; info++)
		if (strcmp(info->name, "Version") == 0)
			snprintf(v, sizeof(v), "paho-mqtt-c %s", info->value);
	return v;
}

const struct adapter mqtt_adapter = {
	.name = "mqtt",
	.broker_keys = mqtt_broker_keys,
	.broker_size = sizeof(struct mqtt_broker_cfg),
	.route_keys = mqtt_route_keys,
	.route_size = sizeof(struct mqtt_route_cfg),
	.check = mqtt_check,
	.check_window = mqtt_check_window,
	.check_live = mqtt_check_live,
	.topic_separator = '/',
	.route_matches = mqtt_route_matches,
	.route_source = mqtt_route_source,
	.workers = mqtt_workers,
	.in_flight = mqtt_in_flight,
	.redelivery = mqtt_redelivery,
	.run = mqtt_run,
	.tls_scheme = "mqtts:// or wss://",
	.publisher_open = mqttpub_open,
	.publish_send = mqttpub_send,
	.publish_settle = mqttpub_settle,
	.publisher_idle = mqttpub_idle,
	.publisher_close = mqttpub_close,
	.library_version = mqtt_library_version,
};
