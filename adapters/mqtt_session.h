/* SPDX-License-Identifier: Apache-2.0 */
/* One MQTT session of a consumer worker, inside the MQTT adapter: the paho
 * client, its connection state and the filters it subscribes. A worker
 * runs its own session (adapters/mqtt.c) and, in worker 0, briefly the
 * sessions an earlier configuration left behind, to drain and delete them
 * (adapters/mqtt_retire.c). Not seen outside adapters/mqtt*.c. */
#ifndef ONCEBRIDGE_MQTT_SESSION_H
#define ONCEBRIDGE_MQTT_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <MQTTAsync.h>

#include "bridge/common/backoff.h"

struct worker;
struct broker;

enum conn_state {
	ST_DOWN,        /* not connected; connect when the database is ready */
	ST_CONNECTING,  /* CONNECT sent */
	ST_SUBSCRIBING, /* CONNACK received, SUBSCRIBE sent */
	ST_READY,       /* subscribed (a session being retired: connected) */
	ST_LOST,        /* connect, subscribe or the connection failed */
};

/* How a session connects. */
enum session_mode {
	SESSION_OWN,     /* the worker's own: resume, subscribe the routes */
	SESSION_RESUME,  /* an old session: resume it, subscribe nothing */
	SESSION_CLEAN,   /* an old session: connect with a clean start/session to end it */
};

struct mqtt_session {
	struct worker *w;
	const struct broker *b;
	enum session_mode mode;
	MQTTAsync client;
	char **uris;           /* the servers, as paho wants them (tcp://host:port, ssl://, ws://, wss://) */
	size_t n_uris;
	char **order;          /* uris from the one that answered last: each connect's list */
	char *uri;             /* the servers, for messages */
	bool tls;
	bool tls_reported;     /* OpenSSL explained the last failure (paho's threads) */
	MQTTAsync_SSLOptions ssl;
	char *client_id;
	char **filters;        /* distinct topic filters of the routes, as configured */
	char **subs;           /* what is subscribed for each: the filter, or $share/GROUP/filter */
	int *qos;              /* requested QoS of each, for subscribeMany */
	size_t n_filters;
	MQTTProperties connect_props;
	struct backoff broker_backoff;
	struct backoff retry_backoff;

	pthread_mutex_t mu;    /* guards what follows: shared with paho's threads */
	enum conn_state state;
	bool in_callback;      /* messageArrived is applying a message */
	bool closing;          /* the worker is returning: callbacks must park */
	int parked;            /* callbacks that will never return (unacked) */
	bool disconnected;     /* our DISCONNECT completed */
	bool client_used;      /* the client had a connection: renew it before the next */
	size_t last;           /* index in uris of the server that answered last */
	bool had_session;      /* a connection had a (new or resumed) session before */
	bool present;          /* the last CONNACK said the broker had the session */
	int64_t last_message_us; /* when the last message settled (or the connection came) */
	int unsubscribed;      /* 0: no UNSUBSCRIBE answered yet, 1: done, -1: failed */
};

/* A session of worker w as client_id (NULL: the worker's own ID), not
 * connected; NULL after logging why. */
struct mqtt_session *mqtt_session_new(struct worker *w, const char *client_id, enum session_mode mode);
/* From state ST_DOWN: a fresh client when the last one had a connection,
 * then CONNECT. 0 when sent, 1 when a message callback still runs (try
 * again), -1 on a fatal error. */
int mqtt_session_connect(struct mqtt_session *s);
enum conn_state mqtt_session_state(struct mqtt_session *s);
/* Whether the last CONNACK said the broker had the session. */
bool mqtt_session_present(struct mqtt_session *s);
/* Whether no message callback runs and none settled for quiet_ms. */
bool mqtt_session_quiet(struct mqtt_session *s, int64_t quiet_ms);
/* Drain (a running transaction finishes), DISCONNECT, destroy and free. */
void mqtt_session_close(struct mqtt_session *s);

/* Retire what earlier configurations of the worker's broker left: sessions
 * under client IDs the current configuration does not use
 * (adapters/mqtt_retire.c). own: the worker's own, connected session. */
int mqtt_retire_record(struct worker *w, const struct mqtt_session *own);
int mqtt_retire_old(struct worker *w, const struct mqtt_session *own);

#endif
