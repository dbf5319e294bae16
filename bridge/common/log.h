/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: one line per message to stderr as text (readable by humans,
 * and by journald through its "<N>" prefix) or as JSON, or, under
 * systemd, one journal entry per message with structured fields. */
#ifndef ONCEBRIDGE_LOG_H
#define ONCEBRIDGE_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <syslog.h>

/* Levels are syslog's: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG. */
void log_init(const char *ident);
void log_set_level(int level);
int log_level_from_name(const char *name); /* -1 when unknown */
void log_set_context(const char *context);  /* the text prefix, e.g. "broker main" */

/* Output formats off the journal: "text" (the default) or "json", one
 * object per line. Returns -1 for an unknown name. */
int log_set_format(const char *name);

/* Who this process is, carried by every line it logs as fields: role
 * ("supervisor", "worker", "relay", "retention"), broker name (NULL for
 * none) and worker index (-1 for none). Set once after fork. */
void log_set_process(const char *role, const char *broker, int index);

/* What one line is about, beyond the process; NULL/-1 members are left
 * out. Strings are untrusted (event IDs): they are cut and cleaned. */
struct log_ctx {
	const char *route;
	const char *event_id;
	const char *sqlstate;
	const char *condition;       /* a repeated condition (repeat.h): "database", "broker" */
	const char *condition_state; /* "started", "continuing", "ended" */
	int64_t attempts;            /* failed attempts of the condition so far, -1: none */
	int64_t duration_ms;         /* how long the condition has lasted, -1: none */
};
#define LOG_CTX_INIT { NULL, NULL, NULL, NULL, NULL, -1, -1 }

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msg_ctx(int level, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg_ctx(int level, const struct log_ctx *ctx, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#define log_warn_ctx(ctx, ...) log_msg_ctx(LOG_WARNING, ctx, __VA_ARGS__)

#endif
