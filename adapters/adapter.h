/* The one interface every broker protocol implements. Inbound, an adapter
 * owns the broker connection of one worker process: it receives messages,
 * hands them to the core (bridge/apply.h) and acks the broker only for
 * messages the core reports settled, i.e. committed, duplicate or
 * dead-lettered. Outbound, a publisher sends outbox rows for the relay
 * (bridge/relay.c) and reports which ones the broker confirmed. */
#ifndef ONCEBRIDGE_ADAPTER_H
#define ONCEBRIDGE_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/cfgtable.h"
#include "bridge/diag.h"
#include "bridge/message.h"

struct broker;
struct worker;
struct publisher;

/* One outbox row to publish. */
struct outbound {
	int64_t id;                /* outbox order */
	const char *event_id;      /* travels with the message */
	const char *topic;         /* AMQP routing key or MQTT topic */
	const char *exchange;      /* AMQP exchange; NULL: the destination's default */
	const void *payload;
	size_t payload_len;
	const char *content_type;  /* NULL when unset */
	const struct msg_header *headers;
	size_t n_headers;
};

struct adapter {
	const char *name;                  /* value of "type" in the broker group */
	const struct cfg_key *broker_keys; /* keys of the broker group beyond the common ones */
	const struct cfg_key *route_keys;  /* keys of a route beyond the common ones */
	/* Check a loaded broker and its routes without any I/O; group and
	 * routes are the libconfig settings they came from, for line numbers. */
	void (*check)(const struct broker *b, const config_setting_t *group, const config_setting_t *routes,
	    const char *file, struct diag *d);
	/* Consume until w->stop is set; reconnects by itself. Returns the
	 * worker's exit status. */
	int (*run)(struct worker *w);

	/* Outbound, for the outbox relay; NULL when the protocol cannot
	 * publish. open connects (NULL after logging why). The confirm window
	 * may span batches: send puts msgs[0..n) in flight (at most two
	 * batches at a time; msgs must live until settled); settle waits up to
	 * timeout_ms for the broker's answers to the oldest batch in flight,
	 * sets its confirmed[i] and forgets it. A relay with a window of one
	 * batch sends and settles in turn. Both return -1 when the connection
	 * is gone: every batch in flight then counts as not confirmed; close
	 * and open again (a new client: never reuse one across a connection
	 * loss). idle services heartbeats while nothing is in flight; -1 when
	 * the connection is gone. */
	struct publisher *(*publisher_open)(const struct broker *b, int index);
	int (*publish_send)(struct publisher *p, const struct outbound *msgs, size_t n);
	int (*publish_settle)(struct publisher *p, bool *confirmed, int64_t timeout_ms);
	int (*publisher_idle)(struct publisher *p);
	void (*publisher_close)(struct publisher *p);
};

const struct adapter *adapter_find(const char *name);
/* Registered adapters, NULL-terminated. */
extern const struct adapter *const adapters[];

extern const struct adapter amqp_adapter;
extern const struct adapter mqtt_adapter;

#endif
