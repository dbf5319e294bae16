/* SPDX-License-Identifier: Apache-2.0 */
/* The dead-letter row format, both ways: the properties JSON written for a
 * message, and the message rebuilt from a row for a replay. No database
 * here, so that it can be tested and fuzzed on its own. */
#ifndef ONCEBRIDGE_DEADLETTER_ROW_H
#define ONCEBRIDGE_DEADLETTER_ROW_H

#include <stddef.h>

#include "bridge/core/message.h"

struct json_object;
struct limits;

/* How many of a poison payload's len bytes its dead letter keeps: no more
 * than limits.max_payload nor limits.dead_letter_payload. */
size_t deadletter_kept_bytes(const struct limits *lim, size_t len);

/* SHA-256 of the full payload, stored beside a possibly truncated one. */
void deadletter_sha256(const char *payload, size_t len, unsigned char digest[32]);

/* The properties column of m's dead letter (message_id, content_type,
 * redelivered, headers) as JSON text, every string made safe for jsonb
 * with text_sanitize(). malloc'd. */
char *deadletter_properties_json(const struct message *m);

/* The columns of a dead-letter row a message is rebuilt from, as libpq
 * returns them in text format; NULL for SQL NULL. */
struct dl_row {
	const char *source;
	const char *exchange;
	const char *topic;
	const char *properties;  /* properties::text */
	const char *payload_hex; /* encode(payload, 'hex') */
};

/* A message rebuilt from a row. msg points into the row and into the
 * storage below, which dl_message_free() releases. */
struct dl_message {
	struct message msg;
	unsigned char *payload;
	struct msg_header *headers;
	struct json_object *props;
};

/* Rebuild the message of row for a broker whose topic levels are split at
 * sep. Returns 0, or -1 with *err set (malloc'd) when the row does not
 * hold a message that can be replayed. */
int dl_message_build(struct dl_message *dm, const struct dl_row *row, char sep, char **err);
void dl_message_free(struct dl_message *dm);

/* Decode hex digits (as encode(..., 'hex') writes them, either case) into
 * a malloc'd buffer of *len bytes plus a terminating NUL; NULL when hex
 * has an odd length or a character that is not a hex digit. */
unsigned char *hex_decode(const char *hex, size_t *len);

#endif
