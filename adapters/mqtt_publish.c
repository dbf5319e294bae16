/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT publisher for the outbox relay, on paho's MQTTAsync API: QoS 1
 * publishes, each confirmed by its PUBACK through the send's onSuccess
 * callback (a refusal or a failure through onFailure). The publisher uses
 * its own client ID (the broker's client_id plus "-relay", and "-N" for
 * relay N) and a clean session: rows not confirmed stay unpublished in the
 * outbox and are sent again, so no client-side persistence is needed.
 *
 * Up to two batches may be in flight (send, then settle the older one), as
 * with the AMQP publisher: the relay sends the next batch while the broker
 * still acknowledges the previous one. paho itself holds at most one
 * batch's worth of them (batch_size, at least 64) not yet answered: its
 * cost per send grows with the messages it holds (it searches its lists
 * of commands and of sends awaiting PUBACK for a free packet id and counts
 * its buffered commands on every send), so handing it two whole batches at
 * once made the relay spend most of a round in sending (README,
 * "Performance"). The rest waits here, in order, and the relay hands it
 * over while it waits for the answers (settle) as they free room. The
 * answers arrive on paho's threads; each batch keeps them, under the
 * publisher's mutex, in memory of its own, so a late answer never touches
 * the relay's arrays. paho's buffer and in-flight limits are sized to what
 * it holds. After a lost connection the publisher is closed and a new paho
 * client made: a handle is never reused across a connection loss (see
 * LIBRARY-FACTS). A broker with several servers (failover_urls) is one
 * connect over the list, in configuration order.
 *
 * The event ID travels as the MQTT 5 user property "event_id" (with the
 * content type and the row's headers as properties too). MQTT 3.1.1 has no
 * properties, so there the payload is wrapped in an envelope:
 *   {"event_id": "...", "payload": <the JSON payload>}
 * or, for a payload that is not JSON, "payload_text" (UTF-8 text) or
 * "payload_base64"; the row's headers go into "headers". A consumer route
 * reads it with event_id = "json:event_id". */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <MQTTAsync.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "adapters/adapter.h"
#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_conn.h"
#include "adapters/mqtt_publish.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/config/settings.h"
#include "bridge/common/text.h"
#include "bridge/common/util.h"

#define EVENT_ID_PROPERTY "event_id"

#define MAX_FLIGHTS 2

struct flight;

/* The context of one send: paho may hold it until the send is answered
 * or the client is destroyed. */
struct slot {
	struct publisher *p;
	struct flight *f;
	size_t index;
};

/* One batch in flight; written by paho's threads under the publisher's
 * mutex. Freed once settled with every send answered, else only after the
 * client is destroyed. */
struct flight {
	size_t n;
	const struct outbound *msgs;
	size_t handed;           /* messages handed to paho, in order */
	size_t pending;          /* sends not answered yet */
	bool *answered;
	bool *ok;                /* answered with a PUBACK that accepts it */
	struct slot *slots;
};

struct publisher {
	const struct broker *b;
	MQTTAsync client;
	bool v5;
	bool tls;
	bool tls_reported;       /* OpenSSL explained the last failure (paho's threads) */
	bool failed;             /* a send or settle failed: only close is left */
	struct flight *flights[MAX_FLIGHTS]; /* oldest first */
	int n_flights;
	size_t window;           /* most messages paho holds not answered */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* guarded by mu */
	size_t in_paho;          /* messages handed to paho and not answered */
	int connect_result;      /* 0 pending, 1 connected, -1 failed */
	char *server;            /* the server that answered, as paho reports it */
	bool lost;
};

static void
on_lost(void *ctx, char *cause)
{
	struct publisher *p = ctx;

	pthread_mutex_lock(&p->mu);
	p->lost = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	log_warn("lost the broker connection%s%s", cause ? ": " : "", cause ? cause : "");
}

/* The publisher subscribes to nothing, but paho wants the callback. */
static int
on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
	(void)ctx;
	(void)topic_len;
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void
connect_done(struct publisher *p, int result, const char *why, int code, const char *server)
{
	pthread_mutex_lock(&p->mu);
	p->connect_result = result;
	if (server && p->server == NULL)
		p->server = xstrdup(server);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (result < 0)
		repeat_fail("broker", NULL, "could not connect for publishing: %s%s", why ? why : "unknown error",
		    mqtt_tls_hint(p->tls, code, &p->tls_reported));
}

static void
on_connect(void *ctx, MQTTAsync_successData *r)
{
	connect_done(ctx, 1, NULL, 0, r ? r->alt.connect.serverURI : NULL);
}

static void
on_connect5(void *ctx, MQTTAsync_successData5 *r)
{
	connect_done(ctx, 1, NULL, 0, r ? r->alt.connect.serverURI : NULL);
}

static void
on_connect_failure(void *ctx, MQTTAsync_failureData *r)
{
	connect_done(ctx, -1, r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1),
	    r ? r->code : -1, NULL);
}

static void
on_connect_failure5(void *ctx, MQTTAsync_failureData5 *r)
{
	connect_done(ctx, -1, r && r->message ? r->message : MQTTReasonCode_toString(r ? r->reasonCode : 0),
	    r && !r->reasonCode ? r->code : 0, NULL);
}

static void
answered(struct slot *s, bool ok)
{
	struct publisher *p = s->p;
	struct flight *f = s->f;

	pthread_mutex_lock(&p->mu);
	if (!f->answered[s->index]) {
		f->answered[s->index] = true;
		f->ok[s->index] = ok;
		f->pending--;
		p->in_paho--;
		/* settle waits for the whole batch, and hands paho more once
		 * half of what it holds is answered */
		if (f->pending == 0 || p->in_paho == p->window / 2)
			pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
}

static void
on_sent(void *ctx, MQTTAsync_successData *r)
{
	(void)r;
	answered(ctx, true);
}

static void
on_sent5(void *ctx, MQTTAsync_successData5 *r)
{
	/* a PUBACK with a reason code >= 0x80 is a refusal */
	answered(ctx, r == NULL || r->reasonCode < 0x80);
}

static void
on_send_failure(void *ctx, MQTTAsync_failureData *r)
{
	(void)r;
	answered(ctx, false);
}

static void
on_send_failure5(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)r;
	answered(ctx, false);
}

static void
deadline_in(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static struct flight *
flight_new(struct publisher *p, size_t n)
{
	struct flight *f = xcalloc(1, sizeof(*f));

	f->n = f->pending = n;
	f->answered = xcalloc(n + 1, sizeof(bool));
	f->ok = xcalloc(n + 1, sizeof(bool));
	f->slots = xcalloc(n + 1, sizeof(struct slot));
	for (size_t i = 0; i < n; i++) {
		f->slots[i].p = p;
		f->slots[i].f = f;
		f->slots[i].index = i;
	}
	return f;
}

static void
flight_free(struct flight *f)
{
	if (f == NULL)
		return;
	free(f->answered);
	free(f->ok);
	free(f->slots);
	free(f);
}

void
mqttpub_close(struct publisher *p)
{
	if (p == NULL)
		return;
	if (p->client) {
		if (MQTTAsync_isConnected(p->client)) {
			MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;

			d.timeout = 1000;
			MQTTAsync_disconnect(p->client, &d);
		}
		MQTTAsync_destroy(&p->client);
	}
	/* paho calls back no more: the sends' contexts can go */
	for (int i = 0; i < p->n_flights; i++)
		flight_free(p->flights[i]);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->server);
	free(p);
}

struct publisher *
mqttpub_open(const struct broker *b, int index)
{
	struct publisher *p = xcalloc(1, sizeof(*p));
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
	MQTTAsync_connectOptions v3 = MQTTAsync_connectOptions_initializer;
	MQTTAsync_connectOptions v5 = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_connectOptions *opts;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	char **uris = NULL, *uri = NULL;
	size_t n_uris;
	char *client_id = b->outbox_relays > 1 ? xasprintf("%s-relay-%d", mqtt_broker_cfg(b)->client_id, index)
					       : xasprintf("%s-relay", mqtt_broker_cfg(b)->client_id);
	struct timespec until;
	int rc;

	p->b = b;
	p->v5 = mqtt_broker_cfg(b)->mqtt_version == 5;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	n_uris = mqtt_servers(b, &uris, &p->tls);
	if (n_uris == 0)
		goto fail;
	uri = mqtt_servers_text(uris, n_uris);
	mqtt_tls_options(b, &ssl, &p->tls_reported);
	co.MQTTVersion = p->v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
	/* paho refuses sends once this many wait for its send thread (100 by
	 * default): the whole window must fit */
	p->window = b->outbox_batch_size < 64 ? 64 : (size_t)b->outbox_batch_size;
	co.maxBufferedMessages = (int)p->window + 16;
	rc = MQTTAsync_createWithOptions(&p->client, uris[0], client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		log_error("could not create an MQTT client for \"%s\": %s", uri, MQTTAsync_strerror(rc));
		p->client = NULL;
		goto fail;
	}
	MQTTAsync_setCallbacks(p->client, p, on_lost, on_message, NULL);
	opts = p->v5 ? &v5 : &v3;
	opts->keepAliveInterval = (int)mqtt_broker_cfg(b)->keepalive;
	opts->maxInflight = (int)p->window;
	opts->MQTTVersion = p->v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1; /* never the default: see LIBRARY-FACTS */
	if (p->v5) {
		opts->cleanstart = 1;
		opts->onSuccess5 = on_connect5;
		opts->onFailure5 = on_connect_failure5;
	} else {
		opts->cleansession = 1;
		opts->onSuccess = on_connect;
		opts->onFailure = on_connect_failure;
	}
	opts->context = p;
	opts->connectTimeout = (int)((b->connect_timeout_ms + 999) / 1000);
	opts->username = b->user;
	opts->password = b->password;
	opts->ssl = p->tls ? &ssl : NULL;
	if (n_uris > 1) {
		opts->serverURIs = uris;
		opts->serverURIcount = (int)n_uris;
	}
	rc = MQTTAsync_connect(p->client, opts);
	if (rc != MQTTASYNC_SUCCESS) {
		repeat_fail("broker", NULL, "could not connect to \"%s\": %s", uri, MQTTAsync_strerror(rc));
		goto fail;
	}
	/* paho tries each server in turn, each for up to the connect timeout */
	deadline_in(&until, (int64_t)n_uris * b->connect_timeout_ms + 1000);
	pthread_mutex_lock(&p->mu);
	while (p->connect_result == 0 && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
		;
	rc = p->connect_result;
	pthread_mutex_unlock(&p->mu);
	if (rc <= 0) {
		if (rc == 0)
			repeat_fail("broker", NULL, "could not connect to \"%s\": timeout", uri);
		goto fail;
	}
	pthread_mutex_lock(&p->mu);
	repeat_clear("broker", "connected to %s again", uris[mqtt_uri_index(uris, n_uris, p->server)]);
	log_info("connected to %s for publishing as \"%s\" (MQTT %s)", uris[mqtt_uri_index(uris, n_uris, p->server)],
	    client_id, p->v5 ? "5" : "3.1.1");
	pthread_mutex_unlock(&p->mu);
	free(uri);
	mqtt_servers_free(uris);
	free(client_id);
	return p;
fail:
	free(uri);
	mqtt_servers_free(uris);
	free(client_id);
	mqttpub_close(p);
	return NULL;
}

static char *
base64(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

/* MQTT 3.1.1: the payload inside an envelope that carries the event ID. */
static char *
envelope(const struct outbound *m, size_t *len)
{
	struct json_object *env = json_object_new_object(), *payload = NULL;
	char *out;

	json_object_object_add(env, "event_id", json_object_new_string(m->event_id));
	if (m->content_type && strcmp(m->content_type, "application/json") == 0) {
		struct json_tokener *tok = json_tokener_new();

		payload = json_tokener_parse_ex(tok, m->payload, (int)m->payload_len);
		if (json_tokener_get_error(tok) != json_tokener_success && payload) {
			json_object_put(payload);
			payload = NULL;
		}
		json_tokener_free(tok);
	}
	if (payload) {
		json_object_object_add(env, "payload", payload);
	} else if (text_is_clean(m->payload, m->payload_len) || m->payload_len == 0) {
		json_object_object_add(env, "payload_text", json_object_new_string_len(m->payload, (int)m->payload_len));
	} else {
		char *b64 = base64(m->payload, m->payload_len);

		json_object_object_add(env, "payload_base64", json_object_new_string(b64));
		free(b64);
	}
	if (m->n_headers) {
		struct json_object *h = json_object_new_object();

		for (size_t i = 0; i < m->n_headers; i++)
			json_object_object_add(h, m->headers[i].name,
			    json_object_new_string_len(m->headers[i].value, (int)m->headers[i].value_len));
		json_object_object_add(env, "headers", h);
	}
	out = xstrdup(json_object_to_json_string_ext(env, JSON_C_TO_STRING_PLAIN));
	*len = strlen(out);
	json_object_put(env);
	return out;
}

static void
add_property(MQTTProperties *props, enum MQTTPropertyCodes code, const char *name, const char *value, size_t len)
{
	MQTTProperty prop;

	memset(&prop, 0, sizeof(prop));
	prop.identifier = code;
	if (code == MQTTPROPERTY_CODE_USER_PROPERTY) {
		prop.value.data.data = (char *)name;
		prop.value.data.len = (int)strlen(name);
		prop.value.value.data = (char *)value;
		prop.value.value.len = (int)len;
	} else {
		prop.value.data.data = (char *)value;
		prop.value.data.len = (int)len;
	}
	MQTTProperties_add(props, &prop);
}

static int
send_one(struct publisher *p, const struct outbound *m, struct slot *slot)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char *wrapped = NULL;
	size_t len = m->payload_len;
	int rc;

	msg.qos = 1;
	msg.retained = 0;
	ro.context = slot;
	if (p->v5) {
		add_property(&msg.properties, MQTTPROPERTY_CODE_USER_PROPERTY, EVENT_ID_PROPERTY, m->event_id,
		    strlen(m->event_id));
		for (size_t i = 0; i < m->n_headers; i++)
			if (strcmp(m->headers[i].name, EVENT_ID_PROPERTY) != 0)
				add_property(&msg.properties, MQTTPROPERTY_CODE_USER_PROPERTY, m->headers[i].name,
				    m->headers[i].value, m->headers[i].value_len);
		if (m->content_type)
			add_property(&msg.properties, MQTTPROPERTY_CODE_CONTENT_TYPE, NULL, m->content_type,
			    strlen(m->content_type));
		msg.payload = (void *)m->payload;
		ro.onSuccess5 = on_sent5;
		ro.onFailure5 = on_send_failure5;
	} else {
		wrapped = envelope(m, &len);
		msg.payload = wrapped;
		ro.onSuccess = on_sent;
		ro.onFailure = on_send_failure;
	}
	msg.payloadlen = (int)len;
	rc = MQTTAsync_sendMessage(p->client, m->topic, &msg, &ro);
	MQTTProperties_free(&msg.properties);
	free(wrapped);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warn("could not publish event %s to \"%s\": %s", m->event_id, m->topic, MQTTAsync_strerror(rc));
		return -1;
	}
	return 0;
}

/* Hand paho the next messages waiting, in order, while it holds fewer
 * than the window. Only the relay's thread calls this (send, settle), so
 * the order holds; paho is called without the publisher's mutex, which
 * its callbacks take. Returns -1 when paho refused a send. */
static int
hand_over(struct publisher *p)
{
	for (;;) {
		struct flight *f = NULL;
		size_t i;

		pthread_mutex_lock(&p->mu);
		for (int k = 0; k < p->n_flights && f == NULL && p->in_paho < p->window; k++)
			if (p->flights[k]->handed < p->flights[k]->n)
				f = p->flights[k];
		if (f) {
			i = f->handed++;
			p->in_paho++;
		}
		pthread_mutex_unlock(&p->mu);
		if (f == NULL)
			return 0;
		if (send_one(p, &f->msgs[i], &f->slots[i]) < 0) {
			pthread_mutex_lock(&p->mu);
			p->in_paho--;
			pthread_mutex_unlock(&p->mu);
			p->failed = true;
			return -1;
		}
	}
}

int
mqttpub_send(struct publisher *p, const struct outbound *msgs, size_t n)
{
	struct flight *f;

	if (p->failed)
		return -1;
	if (p->n_flights == MAX_FLIGHTS) {
		log_error("a third batch sent before the first was settled");
		return -1;
	}
	f = flight_new(p, n);
	f->msgs = msgs;
	p->flights[p->n_flights++] = f;
	return hand_over(p);
}

/* Wait for the answers to the oldest batch in flight. A batch not settled
 * in full stays in flights[], since paho may still answer its sends: the
 * publisher has failed and only closing it is left. */
int
mqttpub_settle(struct publisher *p, bool *confirmed, int64_t timeout_ms)
{
	struct flight *f = p->flights[0];
	struct timespec until;
	int rc = p->failed ? -1 : 0;

	if (p->n_flights == 0)
		return 0;
	deadline_in(&until, timeout_ms);
	pthread_mutex_lock(&p->mu);
	while (rc == 0 && f->pending > 0 && !p->lost) {
		bool waiting = p->flights[p->n_flights - 1]->handed < p->flights[p->n_flights - 1]->n;

		if (waiting && p->in_paho <= p->window / 2) {
			pthread_mutex_unlock(&p->mu);
			rc = hand_over(p);
			pthread_mutex_lock(&p->mu);
		} else if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0) {
			break;
		}
	}
	if (rc == 0) {
		if (f->pending > 0) {
			log_warn("%zu of %zu messages not confirmed %s; reconnecting to republish them", f->pending,
			    f->n, p->lost ? "before the connection was lost" : "in time");
			rc = -1;
		}
	}
	if (p->lost)
		rc = -1;
	for (size_t i = 0; i < f->n; i++)
		confirmed[i] = rc == 0 && f->ok[i];
	pthread_mutex_unlock(&p->mu);
	if (rc < 0) {
		p->failed = true;
		return -1;
	}
	flight_free(f);
	p->flights[0] = p->flights[1];
	p->flights[MAX_FLIGHTS - 1] = NULL;
	p->n_flights--;
	return 0;
}

int
mqttpub_idle(struct publisher *p)
{
	bool lost;

	pthread_mutex_lock(&p->mu);
	lost = p->lost;
	pthread_mutex_unlock(&p->mu);
	return lost ? -1 : 0;
}
