/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: rebuilding a message from a dead-letter row for a replay
 * (bridge/core/deadletter_row.c, used by deadletter_replay.c and by "dead-letters
 * show" for the payload), then what the core does with it first: limits,
 * event ID and parameters of a fixed route.
 *
 * The input is the row's text columns as libpq returns them, separated by
 * NUL bytes (text cannot hold one):
 *
 *   source NUL exchange NUL topic NUL properties NUL payload-hex
 *
 * Columns past the end of the input are SQL NULL. Without an exchange the
 * row is an MQTT one ('/' levels), else AMQP ('.').
 *
 * A row the rebuilt message is written back from must be a fixed point:
 * the properties JSON of the rebuilt message, rebuilt and written again,
 * is the same text, and sanitizing a topic twice changes nothing. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bridge/core/deadletter_row.h"
#include "bridge/core/source.h"
#include "bridge/common/text.h"
#include "bridge/common/util.h"
#include "tests/fuzz/fuzz.h"

static const struct limits lim = { .max_payload = 1048576, .max_event_id_length = 128, .max_json_depth = 32,
	.max_topic_length = 1024, .max_headers = 128 };

static const char *const event_ids[] = { "json:event_id", "header:x-event-id", "property:message_id", NULL };
static const char *const params[] = { "topic_level:2", "header:x-trace", "property:content_type", "payload",
	"json:meter", "redelivered", "exchange", "queue", NULL };

static void
extract(const struct message *m)
{
	struct msg_view v;
	char *why = limits_check(&lim, m), *err = NULL, idbuf[1100];
	const char *reason;

	if (why) {
		free(why);
		return;
	}
	msg_view_init(&v, m, "broker-1");
	for (size_t i = 0; event_ids[i]; i++) {
		struct source src;

		fuzz_assert(source_parse(event_ids[i], true, &src, &err) == 0);
		if (source_event_id(&src, &v, &lim, idbuf, sizeof(idbuf), &reason) == 0)
			fuzz_assert(text_is_clean(idbuf, strlen(idbuf)));
		source_free(&src);
	}
	for (size_t i = 0; params[i]; i++) {
		struct source src;
		struct value val;

		fuzz_assert(source_parse(params[i], false, &src, &err) == 0);
		if (source_value(&src, &v, &lim, "route-1", "ev-1", &val, &reason) == 0)
			value_clear(&val);
		source_free(&src);
	}
	msg_view_clear(&v);
}

/* the properties written for m, rebuilt and written again, do not change */
static void
check_round_trip(const struct dl_row *row, const struct message *m)
{
	char *props = deadletter_properties_json(m), *again, *err = NULL;
	struct dl_row row2 = *row;
	struct dl_message dm2;

	row2.properties = props;
	fuzz_assert(dl_message_build(&dm2, &row2, m->topic_separator, &err) == 0);
	fuzz_assert(dm2.msg.n_headers <= m->n_headers);
	again = deadletter_properties_json(&dm2.msg);
	fuzz_assert(strcmp(props, again) == 0);
	free(again);
	dl_message_free(&dm2);
	free(props);
}

static void
check_sanitize(const char *s)
{
	char *once, *twice;

	if (s == NULL)
		return;
	once = text_sanitize(s, strlen(s));
	twice = text_sanitize(once, strlen(once));
	fuzz_assert(strcmp(once, twice) == 0);
	free(twice);
	free(once);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = xmalloc(size + 1), *col[5] = { NULL, NULL, NULL, NULL, NULL }, *err = NULL;
	struct dl_row row;
	struct dl_message dm;
	size_t n = 0;

	memcpy(copy, data, size);
	copy[size] = '\0';
	/* NUL-separated columns; the last one ends at the end of the input */
	for (char *p = copy; n < 5 && p <= copy + size; p += strlen(p) + 1)
		col[n++] = p;
	row.source = col[0];
	row.exchange = col[1];
	row.topic = col[2];
	row.properties = col[3];
	row.payload_hex = col[4];

	if (dl_message_build(&dm, &row, row.exchange ? '.' : '/', &err) == 0) {
		extract(&dm.msg);
		check_round_trip(&row, &dm.msg);
		dl_message_free(&dm);
	} else {
		fuzz_assert(err != NULL);
		free(err);
	}
	check_sanitize(row.topic);
	if (row.payload_hex) {
		size_t len = 0;
		unsigned char *bytes = hex_decode(row.payload_hex, &len);

		if (bytes)
			(void)text_is_clean((const char *)bytes, len);
		free(bytes);
	}
	free(copy);
	return 0;
}
