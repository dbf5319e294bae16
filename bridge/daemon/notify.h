/* SPDX-License-Identifier: Apache-2.0 */
/* Talking to systemd (Type=notify): readiness, status and watchdog pings.
 * Without NOTIFY_SOCKET every call does nothing. */
#ifndef ONCEBRIDGE_NOTIFY_H
#define ONCEBRIDGE_NOTIFY_H

#include <stdint.h>

void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_watchdog(void);

/* Interval at which to ping the watchdog (half of WATCHDOG_USEC), in ms; 0
 * when systemd asked for no watchdog. */
int64_t notify_watchdog_interval_ms(void);

#endif
