/* Matching of a message against the routes of its broker connection. */
#include "config.h"

#include <string.h>

#include "bridge/pattern.h"
#include "bridge/route.h"

bool
route_matches(const struct route *r, const struct message *m)
{
	const char *topic = m->topic ? m->topic : "";

	if (r->queue && (m->source == NULL || strcmp(r->queue, m->source) != 0))
		return false;
	if (r->match && !amqp_pattern_match(r->match, topic))
		return false;
	if (r->topic && !mqtt_filter_match(r->topic, topic))
		return false;
	return true;
}
