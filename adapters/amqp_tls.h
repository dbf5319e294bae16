/* SPDX-License-Identifier: Apache-2.0 */
/* TLS sockets for AMQP connections (consumer and outbox publisher alike):
 * the one place where rabbitmq-c's OpenSSL socket is set up. */
#ifndef ONCEBRIDGE_AMQP_TLS_H
#define ONCEBRIDGE_AMQP_TLS_H

#ifdef HAVE_RABBITMQ_C_AMQP_H
#include <rabbitmq-c/amqp.h>
#else
#include <amqp.h>
#endif

struct broker;

/* A TLS socket of conn for host, set up from b's "tls" group; NULL after
 * logging why. */
amqp_socket_t *amqpc_tls_socket(amqp_connection_state_t conn, const char *host, const struct broker *b);

/* Why the last TLS connection attempt failed, as OpenSSL said it (e.g.
 * "unable to get local issuer certificate", "hostname mismatch"), or NULL
 * when it gave no reason. Clears the reason. */
const char *amqpc_tls_failure(void);

#endif
