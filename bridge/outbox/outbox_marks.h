/* SPDX-License-Identifier: Apache-2.0 */
/* The relay's marks of confirmed outbox rows, sent with its next read in
 * one round trip and read back while the broker works. See
 * outbox_marks.c. */
#ifndef ONCEBRIDGE_OUTBOX_MARKS_H
#define ONCEBRIDGE_OUTBOX_MARKS_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "bridge/common/util.h"

struct outbox_marks {
	struct buf ok;        /* ids confirmed by the broker: published */
	struct buf failed;    /* ids not confirmed: one more attempt counted */
	int outstanding;      /* marks sent after a read whose results are still to be read */
};

/* Note the outcome of row id: to be marked by the next flush or read. */
void outbox_marks_add(struct outbox_marks *m, int64_t id, bool confirmed);
/* Whether marks wait to be sent. */
bool outbox_marks_pending(const struct outbox_marks *m);
/* Forget everything (the session is gone): those rows are published again. */
void outbox_marks_reset(struct outbox_marks *m);

/* Read the results of marks sent after a read. Returns false, after
 * logging why, when a mark or the session failed. Before any other use of
 * conn. */
bool outbox_marks_collect(PGconn *conn, struct outbox_marks *m);
/* Collect, then send the marks waiting and wait for them. */
bool outbox_marks_flush(PGconn *conn, struct outbox_marks *m);
/* Run the read sql (text parameters, results in result_format) with the
 * marks waiting, in one round trip. behind: the read cannot return a row
 * that is to be marked, so the marks go after it and their results are
 * read later (outbox_marks_collect), while the caller works on the rows;
 * else the marks go first and are read now. Returns the read's result (to
 * be checked by the caller), or NULL when a mark failed. */
PGresult *outbox_marks_read(PGconn *conn, struct outbox_marks *m, bool behind, const char *sql, int n,
    const char *const *values, int result_format);

#endif
