/* The MQTT adapter's configuration and what the core learns from it
 * through the adapter hooks (adapters/adapter.h): -t checks, workers,
 * in-flight window and redelivery profile. May call bridge/settings.h,
 * bridge/cfgtable.h, bridge/diag.h and bridge/util.h. */
#ifndef ONCEBRIDGE_MQTT_CFG_H
#define ONCEBRIDGE_MQTT_CFG_H

#include <stdint.h>

#include "adapters/adapter.h"
#include "bridge/settings.h"

void mqtt_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d);
int mqtt_workers(const struct broker *b);
int64_t mqtt_in_flight(const struct broker *b);
void mqtt_redelivery(const struct broker *b, int index, struct redelivery *out);

#endif
