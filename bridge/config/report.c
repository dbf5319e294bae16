/* SPDX-License-Identifier: Apache-2.0 */
/* The report of "oncebridge check" (bridge/config/report.h): collecting
 * lines, the terminal layout and the JSON form. The JSON keys and status
 * names are an interface for automation: add keys, never rename them. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridge/config/report.h"
#include "bridge/common/util.h"

#define SUBJECT_COLUMN_MAX 48 /* longer subjects push their reason to the right */

static char *
vformat(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	return s;
}

char *
report_subject(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = vformat(fmt, ap);
	va_end(ap);
	return s;
}

void
report_add(struct report *r, enum check_level level, const char *subject, const char *fix, const char *fmt, ...)
{
	struct check_line *l;
	va_list ap;

	r->lines = xrealloc(r->lines, (r->n + 1) * sizeof(*r->lines));
	l = &r->lines[r->n++];
	l->level = level;
	l->subject = xstrdup(subject);
	l->fix = fix ? xstrdup(fix) : NULL;
	va_start(ap, fmt);
	l->reason = vformat(fmt, ap);
	va_end(ap);
}

const char *
check_level_name(enum check_level level)
{
	switch (level) {
	case CHECK_OK:
		return "ok";
	case CHECK_WARNING:
		return "warning";
	case CHECK_ERROR:
		return "error";
	}
	return "error";
}

static void
report_counts(const struct report *r, size_t counts[3])
{
	counts[0] = counts[1] = counts[2] = 0;
	for (size_t i = 0; i < r->n; i++)
		counts[r->lines[i].level]++;
}

void
report_print(const struct report *r, FILE *out)
{
	size_t width = 0, counts[3];

	for (size_t i = 0; i < r->n; i++) {
		size_t len = strlen(r->lines[i].subject);

		if (len > width && len <= SUBJECT_COLUMN_MAX)
			width = len;
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct check_line *l = &r->lines[i];

		fprintf(out, "%-7s  %-*s  %s", check_level_name(l->level), (int)width, l->subject, l->reason);
		if (l->fix)
			fprintf(out, "; fix: %s", l->fix);
		fputc('\n', out);
	}
	report_counts(r, counts);
	fprintf(out, "%zu check%s: %zu ok, %zu warning%s, %zu error%s\n", r->n, r->n == 1 ? "" : "s", counts[0],
	    counts[1], counts[1] == 1 ? "" : "s", counts[2], counts[2] == 1 ? "" : "s");
}

void
report_print_json(const struct report *r, FILE *out, int status)
{
	struct json_object *root = json_object_new_object(), *checks = json_object_new_array();
	struct json_object *summary = json_object_new_object();
	size_t counts[3];

	for (size_t i = 0; i < r->n; i++) {
		const struct check_line *l = &r->lines[i];
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "status", json_object_new_string(check_level_name(l->level)));
		json_object_object_add(o, "subject", json_object_new_string(l->subject));
		json_object_object_add(o, "reason", json_object_new_string(l->reason));
		json_object_object_add(o, "fix", l->fix ? json_object_new_string(l->fix) : NULL);
		json_object_array_add(checks, o);
	}
	report_counts(r, counts);
	json_object_object_add(summary, "ok", json_object_new_int64((int64_t)counts[0]));
	json_object_object_add(summary, "warning", json_object_new_int64((int64_t)counts[1]));
	json_object_object_add(summary, "error", json_object_new_int64((int64_t)counts[2]));
	json_object_object_add(root, "checks", checks);
	json_object_object_add(root, "summary", summary);
	json_object_object_add(root, "status", json_object_new_int(status));
	fprintf(out, "%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

int
report_status(const struct report *r, bool strict)
{
	size_t counts[3];

	report_counts(r, counts);
	if (counts[CHECK_ERROR] > 0)
		return 2;
	return strict && counts[CHECK_WARNING] > 0 ? 1 : 0;
}

void
report_free(struct report *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->lines[i].subject);
		free(r->lines[i].reason);
		free(r->lines[i].fix);
	}
	free(r->lines);
	r->lines = NULL;
	r->n = 0;
}
