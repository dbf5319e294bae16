/* SPDX-License-Identifier: Apache-2.0 */
/* The one interface every broker protocol implements. Inbound, an adapter
 * owns the broker connection of one worker process: it receives messages,
 * hands them to the core (bridge/core/apply.h) and acks the broker only for
 * messages the core reports settled, i.e. committed, duplicate or
 * dead-lettered. Outbound, a publisher sends outbox rows for the relay
 * (bridge/outbox/relay.c) and reports which ones the broker confirmed. */
#ifndef ONCEBRIDGE_ADAPTER_H
#define ONCEBRIDGE_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/config/cfgtable.h"
#include "bridge/config/diag.h"
#include "bridge/core/message.h"

struct broker;
struct report;
struct route;
struct settings;
struct worker;
struct publisher;

/* What the core's redelivery horizon (bridge/retention/horizon.c) needs to know of
 * one consumer worker: the adapter knows when its broker redelivers. */
struct redelivery {
	char *worker;             /* identity of the worker's session, the same wherever it runs (allocated) */
	int64_t grace_ms;         /* how long a lost connection may go unnoticed */
	int64_t ready_after_ms;   /* after a connect, deliveries this long may still be redeliveries */
	int64_t ready_deliveries; /* deliveries applied after that which make a connection ready; -1: the
	                           * first one that is not a resend (resends come first) */
	int64_t hold_s;           /* how long the broker keeps what the worker left when it is gone; -1: unknown */
};

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
	/* The adapter's own configuration: its keys point into its own part
	 * of a broker and of a route, which the loader allocates with these
	 * sizes (zeroed) and keeps in struct broker's and struct route's
	 * proto. The core never reads them. */
	const struct cfg_key *broker_keys; /* keys of the broker group beyond the common ones */
	const struct cfg_key *outbox_keys; /* keys of the outbox group beyond the common ones, into the broker part */
	size_t broker_size;
	const struct cfg_key *route_keys;  /* keys of a route beyond the common ones */
	size_t route_size;
	/* Check a loaded broker and its routes without any I/O; group and
	 * routes are the libconfig settings they came from, for line numbers. */
	void (*check)(const struct broker *b, const config_setting_t *group, const config_setting_t *routes,
	    const char *file, struct diag *d);
	/* Optional: warnings of -t for a broker with routes against the
	 * dedupe window (retention.dedupe_window_s, > 0) of main_file: what
	 * the broker may redeliver after the window. */
	void (*check_window)(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d);
	/* Optional: the live checks of "oncebridge check" (bridge/daemon/check.c):
	 * connect to the broker of b and add to r one line per precondition
	 * of the guarantee it can see there (queues, sessions, horizons),
	 * naming the file and key or the server object. Consumes, publishes,
	 * acks and creates nothing. s: every broker, for checks across them. */
	void (*check_live)(const struct settings *s, const struct broker *b, struct report *r);
	/* Optional: warnings of -t for a broker that weigh its keys against
	 * the main file's settings s (the retry budget, ...). */
	void (*check_main)(const struct broker *b, const struct settings *s, struct diag *d);

	/* What the core asks of a broker with routes (all required). */
	char topic_separator;              /* between the levels of a topic, as in struct message */
	/* Whether route r of this broker takes message m. */
	bool (*route_matches)(const struct route *r, const struct message *m);
	/* Optional: where a worker consumes route r's messages (its queue,
	 * its subscription filter), as struct message's source; for the
	 * messages "oncebridge try" builds. */
	const char *(*route_source)(const struct route *r);
	/* Consumer worker processes the broker needs, at least 1. */
	int (*workers)(const struct broker *b);
	/* Most (message, route) pairs one worker may hold unsettled at once,
	 * which sizes the core's per-message state (bridge/core/attempts.h). */
	int64_t (*in_flight)(const struct broker *b);
	/* The redelivery profile of consumer worker index (0 when alone). */
	void (*redelivery)(const struct broker *b, int index, struct redelivery *out);
	/* Consume until w->stop is set; reconnects by itself. Returns the
	 * worker's exit status. */
	int (*run)(struct worker *w);
	/* Optional: the scheme of the adapter's TLS URLs ("xyzs://"), which
	 * config errors name; NULL when it has none. */
	const char *tls_scheme;

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

	/* Optional: the client library and its version, e.g. "rabbitmq-c
	 * 0.11.0", for the metric oncebridge_build_info. */
	const char *(*library_version)(void);
};

const struct adapter *adapter_find(const char *name);
/* Registered adapters, NULL-terminated. */
extern const struct adapter *const adapters[];
/* Make an adapter outside that list known to adapter_find, for this
 * process: the test programs' null adapter (adapters/null.h). The daemon
 * registers none, so its "type" values and keys are those above. */
void adapter_register(const struct adapter *a);

extern const struct adapter amqpc_adapter;
extern const struct adapter mqtt_adapter;

#endif
