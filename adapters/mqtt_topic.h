/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT topic filters of the MQTT adapter: matching (a route's "topic"
 * key), the validity check of -t and which route takes a message. May
 * call only libc, the broker and route model (bridge/config/settings.h) and
 * adapters/mqtt_cfg.h. */
#ifndef ONCEBRIDGE_MQTT_TOPIC_H
#define ONCEBRIDGE_MQTT_TOPIC_H

#include <stdbool.h>

#include "bridge/core/message.h"
#include "bridge/config/settings.h"

/* Levels split at '/', '+' is one level, a final '#' is any rest
 * (including none). A "$share/GROUP/" prefix on the filter is ignored.
 * Wildcards at the first level do not match topics starting with '$'. */
bool mqtt_filter_match(const char *filter, const char *topic);

/* Validity check for config; NULL when valid, else a static reason. */
const char *mqtt_filter_error(const char *filter);

/* A route takes a message when its topic filter matches the topic. */
bool mqtt_route_matches(const struct route *r, const struct message *m);
/* The topic filter of route r: where its messages come from (adapter hook route_source). */
const char *mqtt_route_source(const struct route *r);

#endif
