/* SPDX-License-Identifier: Apache-2.0 */
/* The AMQP adapter's configuration: its own part of a broker and of a
 * route (keys in its tables, reached through amqpc_broker_cfg and
 * amqpc_route_cfg), the checks of -t, and what the core learns from it
 * through the adapter hooks (adapters/adapter.h): workers, in-flight
 * window and redelivery profile. May call bridge/config/settings.h,
 * bridge/config/cfgtable.h, bridge/config/tls.h, bridge/common/util.h, adapters/amqp_conn.h,
 * adapters/amqp_endpoints.h and adapters/amqp_pattern.h. */
#ifndef ONCEBRIDGE_AMQP_CFG_H
#define ONCEBRIDGE_AMQP_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include "adapters/adapter.h"
#include "bridge/config/settings.h"

/* The AMQP part of a broker (struct broker's proto). */
struct amqpc_broker_cfg {
	int64_t heartbeat;       /* seconds; 0: none */
	int64_t prefetch;
	int64_t batch_size;
	int64_t batch_linger_ms;
	int64_t max_inflight_bytes; /* payload bytes a batch may hold; one larger message goes alone */
	char *outbox_exchange;   /* group "outbox": exchange of rows that name none */
	char **hosts;            /* further nodes of a cluster (adapters/amqp_endpoints.h) */
	size_t n_hosts;
};

/* The AMQP part of a route (struct route's proto). */
struct amqpc_route_cfg {
	char *queue;
	char *match;             /* routing-key pattern, optional */
	bool declare_queue;
	char *bind_exchange;
	char **bind_keys;
	size_t n_bind_keys;
	char *queue_type;        /* declared type: NULL or "classic" (no arguments), or "quorum" */
	int64_t delivery_limit;  /* quorum: x-delivery-limit; 0: none */
};

static inline const struct amqpc_broker_cfg *
amqpc_broker_cfg(const struct broker *b)
{
	return b->proto;
}

static inline const struct amqpc_route_cfg *
amqpc_route_cfg(const struct route *r)
{
	return r->proto;
}

extern const struct cfg_key amqpc_broker_keys[];
extern const struct cfg_key amqpc_outbox_keys[];
extern const struct cfg_key amqpc_route_keys[];

void amqpc_check(const struct broker *b, const config_setting_t *group, const config_setting_t *routes,
    const char *file, struct diag *d);
void amqpc_check_main(const struct broker *b, const struct settings *s, struct diag *d);
void amqpc_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d);
/* oncebridge check: the live checks (adapters/amqp_check.c) */
void amqpc_check_live(const struct settings *s, const struct broker *b, struct report *r);
int amqpc_workers(const struct broker *b);
int64_t amqpc_in_flight(const struct broker *b);
void amqpc_redelivery(const struct broker *b, int index, struct redelivery *out);

#endif
