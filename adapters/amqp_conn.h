/* SPDX-License-Identifier: Apache-2.0 */
/* AMQP connection setup shared by the consumer (amqp.c) and the outbox
 * publisher (amqp_publish.c): URL parsing, login, one channel. */
#ifndef ONCEBRIDGE_AMQP_CONN_H
#define ONCEBRIDGE_AMQP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef HAVE_RABBITMQ_C_AMQP_H
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

struct broker;

#define AMQPC_CHANNEL 1

struct amqpc_target {
	char *host;
	int port;
	char *vhost;
	char *user;
	const char *password;
	int heartbeat;
	int64_t timeout_ms;
	const struct broker *tls; /* amqps://: the broker whose "tls" group applies; else NULL */
};

/* Check an AMQP URL without I/O: NULL when valid, else a static reason;
 * *tls tells whether it is amqps://. */
const char *amqpc_url_error(const char *url, bool *tls);

/* Fill t from the broker's url, user and password. Returns NULL, or the
 * reason the URL is invalid. */
const char *amqpc_target_init(struct amqpc_target *t, const struct broker *b);
void amqpc_target_free(struct amqpc_target *t);

/* Connect, log in and open channel AMQPC_CHANNEL; NULL after logging why. */
amqp_connection_state_t amqpc_open(const struct amqpc_target *t);
/* Close (politely when graceful) and destroy; sets *conn to NULL. */
void amqpc_close(amqp_connection_state_t *conn, bool graceful);

/* true for a normal reply; otherwise logs "could not WHAT: reason". */
bool amqpc_reply_ok(amqp_rpc_reply_t r, const char *what);

/* Log a channel.close or connection.close method frame; returns true when
 * the frame was one (the connection or channel is gone). */
bool amqpc_close_frame(const amqp_frame_t *frame);

/* The outbox publisher (amqp_publish.c), for struct adapter. */
struct publisher;
struct outbound;
struct publisher *amqpub_open(const struct broker *b, int index);
int amqpub_send(struct publisher *p, const struct outbound *msgs, size_t n);
int amqpub_settle(struct publisher *p, bool *confirmed, int64_t timeout_ms);
int amqpub_idle(struct publisher *p);
void amqpub_close(struct publisher *p);

#endif
