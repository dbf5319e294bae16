/* One message as an adapter hands it to the core, protocol-neutral. */
#ifndef ONCEBRIDGE_MESSAGE_H
#define ONCEBRIDGE_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An AMQP header or an MQTT 5 user property, as text. */
struct msg_header {
	const char *name;
	const char *value;
	size_t value_len;
};

struct message {
	const void *payload;
	size_t payload_len;
	const char *topic;        /* AMQP routing key or MQTT topic */
	size_t topic_len;         /* its length, when it may hold NUL bytes; 0: strlen */
	char topic_separator;     /* '.' for AMQP, '/' for MQTT */
	const char *source;       /* AMQP queue or MQTT subscription filter */
	const char *exchange;     /* AMQP only, else NULL */
	const char *message_id;   /* AMQP message_id property, else NULL */
	size_t message_id_len;
	const char *content_type; /* AMQP content_type / MQTT 5 content type */
	const struct msg_header *headers;
	size_t n_headers;
	bool redelivered;
	int64_t delivery_count;   /* earlier deliveries: AMQP x-delivery-count (quorum queues), else 0 */
	int64_t received_at_us;   /* monotonic, for latency figures */
};

#endif
