/* SPDX-License-Identifier: Apache-2.0 */
/* Repeated conditions (repeat.h): a small table of named conditions per
 * process (a child forgets its parent's), each with when it started, when
 * its last line was written and how many attempts failed. The first failure and one in each interval
 * are logged at WARNING; the ones in between at DEBUG, so that a backoff
 * loop of many processes writes a few lines per interval, not one per
 * step. */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bridge/common/repeat.h"
#include "bridge/common/util.h"

#define MAX_CONDITIONS 8

struct condition {
	char name[32];
	int64_t since_ms;     /* 0: not on */
	int64_t last_line_ms; /* of the start or the latest summary */
	int64_t attempts;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct condition conditions[MAX_CONDITIONS];
static pid_t owner; /* a forked child starts with no condition of its parent's */
static int64_t interval_ms = REPEAT_INTERVAL_DEFAULT_MS;

void
repeat_set_interval(int64_t ms)
{
	pthread_mutex_lock(&mu);
	interval_ms = ms > 0 ? ms : 0;
	pthread_mutex_unlock(&mu);
}

/* The entry of name (under mu); a new one when create, else NULL. When
 * the table is full, the last entry is shared. */
static struct condition *
find(const char *name, bool create)
{
	if (owner != getpid()) {
		memset(conditions, 0, sizeof(conditions));
		owner = getpid();
	}
	for (int i = 0; i < MAX_CONDITIONS; i++) {
		if (strcmp(conditions[i].name, name) == 0)
			return &conditions[i];
		if (conditions[i].name[0] == '\0') {
			if (!create)
				return NULL;
			snprintf(conditions[i].name, sizeof(conditions[i].name), "%s", name);
			return &conditions[i];
		}
	}
	return create ? &conditions[MAX_CONDITIONS - 1] : NULL;
}

static void
fail(int loud, const char *condition, const struct log_ctx *ctx, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* One failure, logged at loud when it starts or is due for a summary. */
static void
fail(int loud, const char *condition, const struct log_ctx *ctx, const char *fmt, va_list ap)
{
	struct log_ctx c = LOG_CTX_INIT;
	struct condition *e;
	char msg[1536];
	int64_t now = now_ms(), every;
	int level = LOG_DEBUG;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (ctx)
		c = *ctx;
	pthread_mutex_lock(&mu);
	if (interval_ms == 0) {
		pthread_mutex_unlock(&mu);
		log_msg_ctx(loud, &c, "%s", msg);
		return;
	}
	e = find(condition, true);
	every = interval_ms;
	e->attempts++;
	if (e->since_ms == 0) {
		e->since_ms = e->last_line_ms = now;
		e->attempts = 1;
		c.condition_state = "started";
		level = loud;
	} else {
		c.condition_state = "continuing";
		if (now - e->last_line_ms >= every) {
			e->last_line_ms = now;
			level = loud;
		}
	}
	c.condition = condition;
	c.attempts = e->attempts;
	c.duration_ms = now - e->since_ms;
	pthread_mutex_unlock(&mu);
	if (c.attempts == 1)
		log_msg_ctx(level, &c, "%s (retrying; until this ends, a summary every %lld %s)", msg,
		    (long long)(every % 1000 ? every : every / 1000), every % 1000 ? "ms" : "s");
	else if (level == loud)
		log_msg_ctx(level, &c, "still failing after %lld s and %lld attempts: %s", (long long)(c.duration_ms / 1000),
		    (long long)c.attempts, msg);
	else
		log_msg_ctx(level, &c, "%s (attempt %lld)", msg, (long long)c.attempts);
}

void
repeat_fail(const char *condition, const struct log_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail(LOG_WARNING, condition, ctx, fmt, ap);
	va_end(ap);
}

void
repeat_error(const char *condition, const struct log_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail(LOG_ERR, condition, ctx, fmt, ap);
	va_end(ap);
}

void
repeat_clear(const char *condition, const char *fmt, ...)
{
	struct log_ctx c = LOG_CTX_INIT;
	struct condition *e;
	char msg[512];
	va_list ap;

	pthread_mutex_lock(&mu);
	e = find(condition, false);
	if (e == NULL || e->since_ms == 0) {
		pthread_mutex_unlock(&mu);
		return;
	}
	c.condition = condition;
	c.condition_state = "ended";
	c.attempts = e->attempts;
	c.duration_ms = now_ms() - e->since_ms;
	e->since_ms = 0;
	e->attempts = 0;
	pthread_mutex_unlock(&mu);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg_ctx(LOG_NOTICE, &c, "%s after %.1f s and %lld failed attempts", msg, (double)c.duration_ms / 1000.0,
	    (long long)c.attempts);
}

bool
repeat_active(const char *condition)
{
	struct condition *e;
	bool on;

	pthread_mutex_lock(&mu);
	e = find(condition, false);
	on = e != NULL && e->since_ms != 0;
	pthread_mutex_unlock(&mu);
	return on;
}
