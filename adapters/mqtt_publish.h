/* SPDX-License-Identifier: Apache-2.0 */
/* The MQTT outbox publisher (mqtt_publish.c), for struct adapter. */
#ifndef ONCEBRIDGE_MQTT_PUBLISH_H
#define ONCEBRIDGE_MQTT_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct publisher;
struct outbound;

struct publisher *mqttpub_open(const struct broker *b, int index);
int mqttpub_send(struct publisher *p, const struct outbound *msgs, size_t n);
int mqttpub_settle(struct publisher *p, bool *confirmed, int64_t timeout_ms);
int mqttpub_idle(struct publisher *p);
void mqttpub_close(struct publisher *p);

#endif
