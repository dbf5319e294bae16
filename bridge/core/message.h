/* SPDX-License-Identifier: Apache-2.0 */
/* One message as an adapter hands it to the core, protocol-neutral. */
#ifndef ONCEBRIDGE_MESSAGE_H
#define ONCEBRIDGE_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A header (or user property) of a message, as text. */
struct msg_header {
	const char *name;
	const char *value;
	size_t value_len;
};

struct message {
	const void *payload;
	size_t payload_len;
	const char *topic;        /* topic or routing key */
	size_t topic_len;         /* its length, when it may hold NUL bytes; 0: strlen */
	char topic_separator;     /* between its levels: the adapter's (adapters/adapter.h) */
	const char *source;       /* where it was consumed: queue or subscription filter */
	const char *exchange;     /* where it was published, NULL when the protocol has none */
	const char *message_id;   /* the message_id property, NULL when the protocol has none */
	size_t message_id_len;
	const char *content_type; /* content type property, NULL when unset */
	const struct msg_header *headers;
	size_t n_headers;
	bool redelivered;
	int64_t delivery_count;   /* earlier deliveries, when the broker counts them (quorum queues), else 0 */
	int64_t received_at_us;   /* monotonic, for latency figures */
};

#endif
