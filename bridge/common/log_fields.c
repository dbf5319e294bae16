/* SPDX-License-Identifier: Apache-2.0 */
/* One log message with its fields: as a journal entry through
 * libsystemd's sd_journal_sendv (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and
 * ONCEBRIDGE_* fields, so that "journalctl ONCEBRIDGE_ROUTE=x" selects a
 * route's lines), or as one JSON object built with json-c for
 * log_format = "json". Both carry the same fields under the same names,
 * lower case in JSON. Values that come from the network (event IDs,
 * route names in messages) are cut and cleaned of control characters and
 * invalid UTF-8 first. */
#include "config.h"

#define SD_JOURNAL_SUPPRESS_LOCATION 1 /* every call would name this file */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include "bridge/common/log_int.h"
#include "bridge/common/text.h"

#define FIELD_MAX 256 /* bytes kept of one context value */

int
log_stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

const char *
log_clean(char *buf, size_t n, const char *s)
{
	size_t len = strlen(s), i = 0, o = 0;

	while (i < len) {
		size_t cl = utf8_char_len((const unsigned char *)s + i, len - i);

		if (cl == 0 || (cl == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f))) {
			if (o + 1 >= n)
				break;
			buf[o++] = '?';
			i++;
			continue;
		}
		if (o + cl >= n)
			break;
		memcpy(buf + o, s + i, cl);
		o += cl;
		i += cl;
	}
	buf[o] = '\0';
	return buf;
}

/* The fields of p and ctx, as (name, value) pairs in names/values (room
 * for 16), values cleaned into store (16 * FIELD_MAX). Returns the count. */
static int
collect(const struct log_process *p, const struct log_ctx *ctx, const char **names, const char **values,
    char store[][FIELD_MAX])
{
	int k = 0;

#define ADD_STR(name, v)                                                     \
	do {                                                                 \
		if ((v) && *(v)) {                                           \
			names[k] = (name);                                   \
			values[k] = log_clean(store[k], FIELD_MAX, (v));     \
			k++;                                                 \
		}                                                            \
	} while (0)
#define ADD_INT(name, v)                                                     \
	do {                                                                 \
		if ((v) >= 0) {                                              \
			names[k] = (name);                                   \
			snprintf(store[k], FIELD_MAX, "%lld", (long long)(v)); \
			values[k] = store[k];                                \
			k++;                                                 \
		}                                                            \
	} while (0)
	ADD_STR("role", p->role);
	ADD_STR("broker", p->broker);
	ADD_INT("worker", (int64_t)p->index);
	ADD_INT("pid", (int64_t)getpid());
	if (ctx) {
		ADD_STR("route", ctx->route);
		ADD_STR("event_id", ctx->event_id);
		ADD_STR("sqlstate", ctx->sqlstate);
		ADD_STR("condition", ctx->condition);
		ADD_STR("condition_state", ctx->condition_state);
		ADD_INT("attempts", ctx->attempts);
		ADD_INT("duration_ms", ctx->duration_ms);
	}
#undef ADD_STR
#undef ADD_INT
	return k;
}

int
log_journal_send(int level, const char *message, const struct log_process *p, const struct log_ctx *ctx)
{
	const char *names[16], *values[16];
	char store[16][FIELD_MAX], field[16][FIELD_MAX + 32], msg[2100], prio[16], ident[64];
	struct iovec iov[19];
	int k = collect(p, ctx, names, values, store), n = 0;

	snprintf(msg, sizeof(msg), "MESSAGE=%s", message);
	snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
	snprintf(ident, sizeof(ident), "SYSLOG_IDENTIFIER=%s", p->ident);
	iov[n++] = (struct iovec){ msg, strlen(msg) };
	iov[n++] = (struct iovec){ prio, strlen(prio) };
	iov[n++] = (struct iovec){ ident, strlen(ident) };
	for (int i = 0; i < k; i++) {
		char *f = field[i];
		int len = snprintf(f, sizeof(field[i]), "ONCEBRIDGE_%s=%s", names[i], values[i]);

		/* journal field names are upper case */
		for (char *c = f + 11; *c && *c != '='; c++)
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 'a' + 'A');
		iov[n++] = (struct iovec){ f, (size_t)len };
	}
	return sd_journal_sendv(iov, n);
}

static void
iso_time(char *buf, size_t n)
{
	struct timeval tv;
	struct tm tm;
	size_t len;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + len, n - len, ".%03dZ", (int)(tv.tv_usec / 1000));
}

size_t
log_json_line(char *buf, size_t n, int level, const char *message, const struct log_process *p,
    const struct log_ctx *ctx)
{
	const char *names[16], *values[16];
	char store[16][FIELD_MAX], when[40], clean[2048];
	json_object *o = json_object_new_object();
	int k = collect(p, ctx, names, values, store);
	size_t len;

	iso_time(when, sizeof(when));
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "level", json_object_new_string(log_level_name(level)));
	json_object_object_add(o, "message",
	    json_object_new_string(log_clean(clean, sizeof(clean), message)));
	for (int i = 0; i < k; i++) {
		bool number = strcmp(names[i], "worker") == 0 || strcmp(names[i], "pid") == 0 ||
		    strcmp(names[i], "attempts") == 0 || strcmp(names[i], "duration_ms") == 0;

		json_object_object_add(o, names[i],
		    number ? json_object_new_int64(atoll(values[i])) : json_object_new_string(values[i]));
	}
	len = (size_t)snprintf(buf, n, "%s",
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	if (len >= n - 1)
		len = n - 2; /* cut: an object too long for one line is no longer valid JSON, but a line */
	buf[len++] = '\n';
	json_object_put(o);
	return len;
}
