/* SPDX-License-Identifier: Apache-2.0 */
/* The MQTT adapter's configuration: its own part of a broker and of a
 * route (keys in its tables, reached through mqtt_broker_cfg and
 * mqtt_route_cfg), the checks of -t, and what the core learns from it
 * through the adapter hooks (adapters/adapter.h): workers, in-flight
 * window and redelivery profile. May call bridge/config/settings.h,
 * bridge/config/cfgtable.h, bridge/config/tls.h, bridge/common/util.h, adapters/mqtt_conn.h
 * and adapters/mqtt_topic.h. */
#ifndef ONCEBRIDGE_MQTT_CFG_H
#define ONCEBRIDGE_MQTT_CFG_H

#include <stdbool.h>
#include <stdint.h>

#include <libconfig.h>

#include "adapters/adapter.h"
#include "bridge/config/settings.h"

/* The MQTT part of a broker (struct broker's proto). */
struct mqtt_broker_cfg {
	char *client_id;
	char **failover_urls;    /* more servers of the same broker, after url */
	size_t n_failover_urls;
	int64_t keepalive;
	int64_t mqtt_version;    /* 4 = 3.1.1, 5 */
	bool clean_session;
	int64_t session_expiry;
	int64_t qos;
	int64_t workers;
	int64_t max_inflight_bytes; /* MQTT 5: Receive Maximum is this over limits.max_payload */
};

/* The MQTT part of a route (struct route's proto). */
struct mqtt_route_cfg {
	char *topic;             /* topic filter */
};

static inline const struct mqtt_broker_cfg *
mqtt_broker_cfg(const struct broker *b)
{
	return b->proto;
}

static inline const struct mqtt_route_cfg *
mqtt_route_cfg(const struct route *r)
{
	return r->proto;
}

extern const struct cfg_key mqtt_broker_keys[];
extern const struct cfg_key mqtt_route_keys[];

void mqtt_check(const struct broker *b, const config_setting_t *group, const config_setting_t *routes,
    const char *file, struct diag *d);
void mqtt_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d);
/* oncebridge check: the live checks (adapters/mqtt_check.c) */
void mqtt_check_live(const struct settings *s, const struct broker *b, struct report *r);
int mqtt_workers(const struct broker *b);
/* The client ID of worker index of b: client_id, or with several workers
 * client_id-index (allocated). */
char *mqtt_worker_client_id(const struct broker *b, int index);
/* What a worker of b subscribes for a route's topic filter (allocated):
 * with several workers a filter that is not "$share/..." becomes
 * "$share/GROUP/filter", GROUP being client_id with any '/', '+' and '#'
 * replaced by '_'; with one worker the filter itself. */
char *mqtt_subscription(const struct broker *b, const char *topic);
int64_t mqtt_in_flight(const struct broker *b);
void mqtt_redelivery(const struct broker *b, int index, struct redelivery *out);

#endif
