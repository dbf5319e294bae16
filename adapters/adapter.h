/* The one interface every broker protocol implements. An adapter owns the
 * broker connection of one worker process: it receives messages, hands them
 * to the core (bridge/apply.h) and acks the broker only for messages the
 * core reports settled, i.e. committed, duplicate or dead-lettered. */
#ifndef ONCEBRIDGE_ADAPTER_H
#define ONCEBRIDGE_ADAPTER_H

#include "bridge/cfgtable.h"
#include "bridge/diag.h"

struct broker;
struct worker;

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
};

const struct adapter *adapter_find(const char *name);
/* Registered adapters, NULL-terminated. */
extern const struct adapter *const adapters[];

extern const struct adapter amqp_adapter;
extern const struct adapter mqtt_adapter;

#endif
