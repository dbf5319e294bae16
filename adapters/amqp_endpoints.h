/* SPDX-License-Identifier: Apache-2.0 */
/* The endpoints of one AMQP broker: the node named by key "url" and the
 * further nodes of a RabbitMQ cluster in key "hosts", each reached with
 * the url's scheme (TLS), vhost, user and password and the broker's "tls"
 * group. The consumer worker (amqp.c) and the outbox publisher
 * (amqp_publish.c) connect to the endpoint that answered last and move on
 * to the next one in the list when it fails or its connection is lost, so
 * that a lost node costs one failed connect, not a wait for it. */
#ifndef ONCEBRIDGE_AMQP_ENDPOINTS_H
#define ONCEBRIDGE_AMQP_ENDPOINTS_H

#include <stddef.h>

#include "adapters/amqp_conn.h"

struct broker;

struct amqpc_endpoints {
	struct amqpc_target *targets; /* [0]: from "url"; then one per "hosts" entry */
	size_t n;
	size_t cur;                   /* the endpoint to try first */
	char node[64];                /* " (node I of N)" of the last open; "" when alone */
};

/* Check one "hosts" entry without I/O: NULL when valid ("host",
 * "host:port", "[IPv6 address]:port"), else a static reason. */
const char *amqpc_host_error(const char *spec);

/* Fill e from the broker's url, hosts, user and password. Returns NULL, or
 * the reason the configuration is invalid (e is then empty). */
const char *amqpc_endpoints_init(struct amqpc_endpoints *e, const struct broker *b);
void amqpc_endpoints_free(struct amqpc_endpoints *e);

/* Connect to the current endpoint and, if it fails, to each next one in
 * turn, once around the list; the one that answered becomes current.
 * NULL when none did (each failure is logged). */
amqp_connection_state_t amqpc_endpoints_open(struct amqpc_endpoints *e);

/* The connection to the current endpoint was lost or is unusable: the
 * next open starts with the next endpoint. */
void amqpc_endpoints_next(struct amqpc_endpoints *e);

/* The current endpoint, and its place in the list for the log
 * (" (node 2 of 3)", or "" for a broker of one node). */
const struct amqpc_target *amqpc_endpoints_current(const struct amqpc_endpoints *e);
const char *amqpc_endpoints_node(const struct amqpc_endpoints *e);

#endif
