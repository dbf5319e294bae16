/* Which routes a message goes to. */
#ifndef ONCEBRIDGE_ROUTE_H
#define ONCEBRIDGE_ROUTE_H

#include <stdbool.h>

#include "bridge/message.h"
#include "bridge/settings.h"

/* A route takes a message when its queue (AMQP) equals the message's
 * source, its match pattern (AMQP) matches the routing key, and its topic
 * filter (MQTT) matches the topic; keys a route does not set match all. */
bool route_matches(const struct route *r, const struct message *m);

#endif
