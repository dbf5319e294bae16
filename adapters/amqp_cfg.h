/* The AMQP adapter's configuration and what the core learns from it
 * through the adapter hooks (adapters/adapter.h): -t checks, workers,
 * in-flight window and redelivery profile. May call bridge/settings.h,
 * bridge/cfgtable.h, bridge/diag.h and bridge/util.h. */
#ifndef ONCEBRIDGE_AMQP_CFG_H
#define ONCEBRIDGE_AMQP_CFG_H

#include <stdint.h>

#include "adapters/adapter.h"
#include "bridge/settings.h"

void amqp_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d);
int amqp_workers(const struct broker *b);
int64_t amqp_in_flight(const struct broker *b);
void amqp_redelivery(const struct broker *b, int index, struct redelivery *out);

#endif
