/* SPDX-License-Identifier: Apache-2.0 */
/* AMQP routing of the AMQP adapter: topic-exchange patterns (a route's
 * "match" key) and which route takes a delivery. May call only libc, the
 * broker and route model (bridge/config/settings.h) and adapters/amqp_cfg.h. */
#ifndef ONCEBRIDGE_AMQP_PATTERN_H
#define ONCEBRIDGE_AMQP_PATTERN_H

#include <stdbool.h>

#include "bridge/core/message.h"
#include "bridge/config/settings.h"

/* Words split at '.', '*' is exactly one word, '#' zero or more. */
bool amqpc_pattern_match(const char *pattern, const char *routing_key);

/* Validity check for config; NULL when valid, else a static reason. */
const char *amqpc_pattern_error(const char *pattern);

/* A route takes a delivery when its queue equals the delivery's queue and
 * its match pattern, when set, matches the routing key. */
bool amqpc_route_matches(const struct route *r, const struct message *m);
/* The queue of route r: where its messages come from (adapter hook route_source). */
const char *amqpc_route_source(const struct route *r);

#endif
