/* Topic matching: AMQP topic-exchange patterns and MQTT topic filters. */
#ifndef ONCEBRIDGE_PATTERN_H
#define ONCEBRIDGE_PATTERN_H

#include <stdbool.h>

/* AMQP: words split at '.', '*' is exactly one word, '#' zero or more. */
bool amqp_pattern_match(const char *pattern, const char *routing_key);

/* MQTT: levels split at '/', '+' is one level, a final '#' is any rest
 * (including none). A "$share/GROUP/" prefix on the filter is ignored.
 * Wildcards at the first level do not match topics starting with '$'. */
bool mqtt_filter_match(const char *filter, const char *topic);

/* Validity checks for config; NULL when valid, else a static reason. */
const char *mqtt_filter_error(const char *filter);
const char *amqp_pattern_error(const char *pattern);

#endif
