/* SPDX-License-Identifier: Apache-2.0 */
/* Between log.c, which formats a line and picks where it goes, and
 * log_fields.c, which writes it with its fields as a journal entry or a
 * JSON object. */
#ifndef ONCEBRIDGE_LOG_INT_H
#define ONCEBRIDGE_LOG_INT_H

#include <stddef.h>

#include "bridge/common/log.h"

/* The process's own fields (log_set_process). */
struct log_process {
	const char *ident;
	char role[32];
	char broker[128];
	int index;
};

/* True when stderr is the stream journald gave this process:
 * JOURNAL_STREAM names stderr's device and inode. */
int log_stderr_is_journal(void);

/* Send one entry to the journal; < 0 when it could not be sent. */
int log_journal_send(int level, const char *message, const struct log_process *p, const struct log_ctx *ctx);

/* The line as one JSON object and a newline, in buf (size n); returns its
 * length. */
size_t log_json_line(char *buf, size_t n, int level, const char *message, const struct log_process *p,
    const struct log_ctx *ctx);

/* A copy of s in buf (size n), cut to fit, with control characters and
 * invalid UTF-8 replaced by '?'. */
const char *log_clean(char *buf, size_t n, const char *s);

/* "error", "warning", "notice", "info" or "debug". */
const char *log_level_name(int level);

#endif
