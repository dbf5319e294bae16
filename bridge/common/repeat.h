/* SPDX-License-Identifier: Apache-2.0 */
/* Conditions that repeat while they last - the database down, a broker
 * unreachable - logged by state change instead of once per retry: one
 * WARNING when a condition starts, one WARNING summary (how long, how
 * many failed attempts, the latest reason) every interval while it
 * lasts, one NOTICE when it ends; the attempts in between go to DEBUG.
 * State is per process and per condition name; every line carries the
 * process's role, broker and pid (log_set_process), so that several
 * processes facing one outage are told apart. Thread-safe. */
#ifndef ONCEBRIDGE_REPEAT_H
#define ONCEBRIDGE_REPEAT_H

#include <stdbool.h>
#include <stdint.h>

#include "bridge/common/log.h"

#define REPEAT_INTERVAL_DEFAULT_MS 60000

/* How often a lasting condition is summarized (the main file's
 * log_repeat_interval_s); 0 for a one-shot command that does not retry:
 * every failure is logged as it is. */
void repeat_set_interval(int64_t ms);

/* One failed attempt of condition (e.g. "database", "broker"); the
 * message says what failed and why. ctx (may be NULL) adds fields. */
void repeat_fail(const char *condition, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same for a failure that needs an operator (a schema too old): its
 * start and summaries are logged at ERROR. */
void repeat_error(const char *condition, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The condition is over: when it was on, one NOTICE line, the message
 * followed by how long it lasted and how many attempts failed. */
void repeat_clear(const char *condition, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True while condition is on in this process. */
bool repeat_active(const char *condition);

#endif
