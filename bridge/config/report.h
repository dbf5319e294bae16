/* SPDX-License-Identifier: Apache-2.0 */
/* The report of "oncebridge check": one line per check, each ok, warning
 * or error, with its subject (a file and key, or a server object), the
 * reason and, where it applies, the fix. The core's checks and each
 * adapter's live checks (adapters/adapter.h, check_live) add to one
 * report; it prints as aligned text or as JSON for automation. */
#ifndef ONCEBRIDGE_REPORT_H
#define ONCEBRIDGE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum check_level {
	CHECK_OK,
	CHECK_WARNING,
	CHECK_ERROR,
};

struct check_line {
	enum check_level level;
	char *subject;
	char *reason;
	char *fix;     /* NULL when there is nothing to do */
};

struct report {
	struct check_line *lines;
	size_t n;
};

/* Add one line; fix may be NULL. */
void report_add(struct report *r, enum check_level level, const char *subject, const char *fix,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same, with the subject formatted: "FILE:LINE key \"KEY\"" and the like. */
char *report_subject(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Aligned columns, one line per check, then a summary line. */
void report_print(const struct report *r, FILE *out);
/* {"checks": [{"status", "subject", "reason", "fix"}...], "summary": {...}, "status": N} */
void report_print_json(const struct report *r, FILE *out, int status);
/* Exit status: 2 on any error, 1 on any warning when strict, else 0. */
int report_status(const struct report *r, bool strict);
const char *check_level_name(enum check_level level);
void report_free(struct report *r);

#endif
