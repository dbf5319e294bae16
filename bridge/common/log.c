/* Logging to stderr. Under systemd (JOURNAL_STREAM set) each line starts
 * with a "<N>" priority prefix that journald turns into the log level and
 * strips; on a terminal each line gets a timestamp, pid and level word.
 * Messages follow PostgreSQL's style: lower case, no final period. */
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

static int log_threshold = LOG_INFO;
static int log_to_journal;
static char log_context[128];

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
	(void)ident;
	log_to_journal = getenv("JOURNAL_STREAM") != NULL;
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

void
log_set_context(const char *context)
{
	snprintf(log_context, sizeof(log_context), "%s", context ? context : "");
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

void
log_msg(int level, const char *fmt, ...)
{
	char line[2048];
	size_t n = 0;
	va_list ap;

	if (level > log_threshold)
		return;
	if (log_to_journal) {
		n = (size_t)snprintf(line, sizeof(line), "<%d>", level);
	} else {
		struct timeval tv;
		struct tm tm;

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03d [%ld] %s:  ",
		    (int)(tv.tv_usec / 1000), (long)getpid(), level_word(level));
	}
	if (log_context[0] && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s: ", log_context);
	if (n < sizeof(line)) {
		va_start(ap, fmt);
		n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	/* one write per line so lines of several processes do not interleave */
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\t')
			line[i] = ' ';
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}
