/* SPDX-License-Identifier: Apache-2.0 */
/* Logging to stderr. Under systemd (JOURNAL_STREAM names stderr) each
 * message becomes a journal entry with structured fields (log_fields.c),
 * and, should the journal socket refuse it, a line with a "<N>" priority
 * prefix that journald turns into the log level and strips. Elsewhere
 * each line is text with a timestamp, pid and level word, or with
 * log_format = "json" one JSON object. Messages follow PostgreSQL's
 * style: lower case, no final period. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bridge/common/log.h"
#include "bridge/common/log_int.h"

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

static int log_threshold = LOG_INFO;
static int log_to_journal;
static enum log_format log_format = LOG_FORMAT_TEXT;
static char log_context[128];
static struct log_process log_proc = { "oncebridge", "", "", -1 };

static const struct {
	const char *name;
	int level;
} level_names[] = {
	{ "error", LOG_ERR },
	{ "warning", LOG_WARNING },
	{ "notice", LOG_NOTICE },
	{ "info", LOG_INFO },
	{ "debug", LOG_DEBUG },
};

void
log_init(const char *ident)
{
	if (ident)
		log_proc.ident = ident;
	log_to_journal = log_stderr_is_journal();
}

void
log_set_level(int level)
{
	log_threshold = level;
}

int
log_level_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(name, level_names[i].name) == 0)
			return level_names[i].level;
	return -1;
}

const char *
log_level_name(int level)
{
	if (level <= LOG_ERR)
		return "error";
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (level == level_names[i].level)
			return level_names[i].name;
	return "debug";
}

int
log_set_format(const char *name)
{
	if (name == NULL || strcmp(name, "text") == 0)
		log_format = LOG_FORMAT_TEXT;
	else if (strcmp(name, "json") == 0)
		log_format = LOG_FORMAT_JSON;
	else
		return -1;
	return 0;
}

void
log_set_context(const char *context)
{
	snprintf(log_context, sizeof(log_context), "%s", context ? context : "");
}

void
log_set_process(const char *role, const char *broker, int index)
{
	snprintf(log_proc.role, sizeof(log_proc.role), "%s", role ? role : "");
	snprintf(log_proc.broker, sizeof(log_proc.broker), "%s", broker ? broker : "");
	log_proc.index = index;
}

static const char *
level_word(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "ERROR";
	case LOG_WARNING:
		return "WARNING";
	case LOG_NOTICE:
		return "NOTICE";
	case LOG_INFO:
		return "INFO";
	default:
		return "DEBUG";
	}
}

/* The message itself: the context prefix and the formatted text, on one
 * line. */
static void
format_message(char *msg, size_t size, const char *fmt, va_list ap)
{
	size_t n = 0;

	if (log_context[0])
		n = (size_t)snprintf(msg, size, "%s: ", log_context);
	if (n < size)
		vsnprintf(msg + n, size - n, fmt, ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
}

/* The text line of msg: "<N>msg" for journald's stream, else with a
 * timestamp, pid and level word. */
static size_t
text_line(char *line, size_t size, int level, const char *msg)
{
	size_t n;

	if (log_to_journal) {
		n = (size_t)snprintf(line, size, "<%d>", level);
	} else {
		struct timeval tv;
		struct tm tm;

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		n = strftime(line, size, "%Y-%m-%d %H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, size - n, ".%03d [%ld] %s:  ",
		    (int)(tv.tv_usec / 1000), (long)getpid(), level_word(level));
	}
	if (n < size)
		n += (size_t)snprintf(line + n, size - n, "%s", msg);
	if (n >= size - 1)
		n = size - 2;
	line[n++] = '\n';
	return n;
}

void
log_vmsg_ctx(int level, const struct log_ctx *ctx, const char *fmt, va_list ap)
{
	char msg[2048], line[12288]; /* JSON: the message and every field escaped fit */
	size_t n;

	if (level > log_threshold)
		return;
	format_message(msg, sizeof(msg), fmt, ap);
	if (log_to_journal && log_journal_send(level, msg, &log_proc, ctx) >= 0)
		return;
	if (log_format == LOG_FORMAT_JSON && !log_to_journal)
		n = log_json_line(line, sizeof(line), level, msg, &log_proc, ctx);
	else
		n = text_line(line, sizeof(line), level, msg);
	/* one write per line so lines of several processes do not interleave */
	(void)!write(STDERR_FILENO, line, n);
}

void
log_msg_ctx(int level, const struct log_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg_ctx(level, ctx, fmt, ap);
	va_end(ap);
}

void
log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg_ctx(level, NULL, fmt, ap);
	va_end(ap);
}
