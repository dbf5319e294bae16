/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of event ID extraction and parameter binding from messages. */
#include "config.h"

#include <stdlib.h>

#include "bridge/core/source.h"
#include "tests/unit/tap.h"

static const struct limits lim = { .max_payload = 1 << 20, .max_event_id_length = 64, .max_json_depth = 8 };

static struct message
msg(const char *payload)
{
	struct message m = { 0 };

	m.payload = payload;
	m.payload_len = strlen(payload);
	m.topic = "meters.berlin.7";
	m.topic_separator = '.';
	m.source = "q1";
	m.exchange = "amq.topic";
	return m;
}

/* event ID of payload via spec, or the failure reason prefixed with "!" */
static char *
event_id(const char *spec, const struct message *m)
{
	struct source src;
	struct msg_view v;
	char buf[256], *err = NULL, *out;
	const char *reason = NULL;

	if (source_parse(spec, true, &src, &err) < 0) {
		out = malloc(strlen(err) + 2);
		sprintf(out, "!%s", err);
		free(err);
		return out;
	}
	msg_view_init(&v, m, "b1");
	if (source_event_id(&src, &v, &lim, buf, sizeof(buf), &reason) == 0) {
		out = strdup(buf);
	} else {
		out = malloc(strlen(reason) + 2);
		sprintf(out, "!%s", reason);
	}
	msg_view_clear(&v);
	source_free(&src);
	return out;
}

/* parameter value as text, "(null)" for NULL, "!reason" on failure */
static char *
param(const char *spec, const struct message *m)
{
	struct source src;
	struct msg_view v;
	struct value val;
	char *err = NULL, *out;
	const char *reason = NULL;

	if (source_parse(spec, false, &src, &err) < 0) {
		out = malloc(strlen(err) + 2);
		sprintf(out, "!%s", err);
		free(err);
		return out;
	}
	msg_view_init(&v, m, "b1");
	if (source_value(&src, &v, &lim, "route1", "ev-1", &val, &reason) == 0) {
		out = val.data ? strndup(val.data, val.len) : strdup("(null)");
		value_clear(&val);
	} else {
		out = malloc(strlen(reason) + 2);
		sprintf(out, "!%s", reason);
	}
	msg_view_clear(&v);
	source_free(&src);
	return out;
}

/* true when the extraction failed; frees the result */
static bool
failed(char *got)
{
	bool f = got[0] == '!';

	free(got);
	return f;
}

#define CHECK(call, want, ...) \
	do { \
		char *got_ = (call); \
		is_str(got_, want, __VA_ARGS__); \
		free(got_); \
	} while (0)

int
main(void)
{
	struct message m = msg("{\"id\":\"7f1c\",\"n\":42,\"deep\":{\"a\":[10,{\"b\":\"x\"}]},\"f\":1.50,"
			       "\"t\":true,\"z\":null,\"o\":{\"k\":1}}");
	struct message bad = msg("{\"id\": \"a\"");
	struct message trailing = msg("{\"id\":\"a\"} x");
	struct message deep = msg("[[[[[[[[[[[[\"x\"]]]]]]]]]]]]");
	struct message noid = msg("{\"other\":1}");
	struct message emptyid = msg("{\"id\":\"\"}");
	struct message longid = msg("{\"id\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}");
	struct message ctrlid = msg("{\"id\":\"a\\nb\"}");
	struct message nulid = msg("{\"id\":\"a\\u0000b\"}");
	struct message objid = msg("{\"id\":{\"x\":1}}");
	struct message intid = msg("{\"id\":12345}");
	struct message badutf8 = msg("{\"id\":\"\xff\xfe\"}");
	struct msg_header hdrs[] = { { "x-event-id", "hdr-1", 5 }, { "x-empty", "", 0 } };
	struct message withhdr = msg("not json at all");

	withhdr.headers = hdrs;
	withhdr.n_headers = 2;
	withhdr.message_id = "mid-9";
	withhdr.message_id_len = 5;

	/* event IDs */
	CHECK(event_id("json:id", &m), "7f1c", "event ID from a JSON field");
	CHECK(event_id("json:id", &intid), "12345", "an integer event ID is accepted as text");
	CHECK(event_id("json:deep.a.1.b", &m), "x", "event ID from a nested path with an array index");
	CHECK(event_id("json:id", &bad), "!invalid JSON: unexpected end of input", "truncated JSON is invalid");
	ok(failed(event_id("json:id", &trailing)), "JSON with trailing data is invalid");
	ok(failed(event_id("json:id", &deep)), "JSON nested deeper than the limit is invalid");
	CHECK(event_id("json:id", &noid), "!missing event ID", "missing field");
	CHECK(event_id("json:id", &emptyid), "!event ID is empty", "empty event ID");
	CHECK(event_id("json:id", &longid), "!event ID is too long", "event ID over max_event_id_length");
	CHECK(event_id("json:id", &ctrlid), "!event ID is not valid UTF-8 or contains control characters",
	    "event ID with a control character");
	CHECK(event_id("json:id", &nulid), "!event ID is not valid UTF-8 or contains control characters",
	    "event ID with a NUL byte");
	CHECK(event_id("json:id", &objid), "!event ID is neither a string nor an integer", "object as event ID");
	ok(failed(event_id("json:id", &badutf8)), "invalid UTF-8 in JSON is rejected");
	CHECK(event_id("header:x-event-id", &withhdr), "hdr-1", "event ID from an AMQP header");
	CHECK(event_id("header:x-empty", &withhdr), "!event ID is empty", "empty header");
	CHECK(event_id("header:x-none", &withhdr), "!missing event ID", "absent header");
	CHECK(event_id("property:message_id", &withhdr), "mid-9", "event ID from message_id");
	CHECK(event_id("property:message_id", &m), "!missing event ID", "absent message_id");
	{
		char *a = event_id("payload_hash", &m), *b = event_id("payload_hash", &m);
		struct message other = m;
		char *c;

		other.topic = "meters.berlin.8";
		c = event_id("payload_hash", &other);
		ok(strncmp(a, "sha256:", 7) == 0 && strlen(a) == 7 + 64, "payload_hash is a sha256");
		is_str(a, b, "payload_hash is stable");
		ok(strcmp(a, c) != 0, "payload_hash depends on the topic");
		free(a);
		free(b);
		free(c);
	}
	CHECK(event_id("payload", &m), "!\"payload\" cannot be used as an event ID source", "payload is no ID source");
	CHECK(event_id("json", &m), "!source \"json\" needs an argument, as in \"json:NAME\"", "json needs a path");
	CHECK(event_id("nope:x", &m), "!unknown source \"nope\"", "unknown source");
	CHECK(event_id("property:priority", &m), "!unknown property \"priority\" (known: message_id, content_type)",
	    "unknown property");

	/* parameters */
	CHECK(param("json:n", &m), "42", "number as text");
	CHECK(param("json:f", &m), "1.50", "decimal keeps its digits");
	CHECK(param("json:t", &m), "true", "boolean as text");
	CHECK(param("json:z", &m), "(null)", "JSON null is SQL NULL");
	CHECK(param("json:missing", &m), "(null)", "missing field is SQL NULL");
	CHECK(param("json:o", &m), "{\"k\":1}", "object as JSON text");
	CHECK(param("json:deep.a.0", &m), "10", "array element");
	CHECK(param("json:deep.a.9", &m), "(null)", "array index out of range is NULL");
	{
		char *got = param("json:n", &withhdr);

		ok(strncmp(got, "!invalid JSON: ", 15) == 0, "JSON field of a non-JSON payload fails (%s)", got);
		free(got);
	}
	CHECK(param("payload", &withhdr), "not json at all", "whole payload");
	CHECK(param("topic", &m), "meters.berlin.7", "topic");
	CHECK(param("topic_level:2", &m), "berlin", "topic level 2");
	CHECK(param("topic_level:3", &m), "7", "last topic level");
	CHECK(param("topic_level:4", &m), "(null)", "topic level past the end is NULL");
	CHECK(param("topic_level:0", &m), "!topic level \"0\" must be a number from 1 to 64", "topic level 0");
	CHECK(param("event_id", &m), "ev-1", "event ID");
	CHECK(param("route", &m), "route1", "route name");
	CHECK(param("broker", &m), "b1", "broker name");
	CHECK(param("queue", &m), "q1", "queue");
	CHECK(param("exchange", &m), "amq.topic", "exchange");
	CHECK(param("redelivered", &m), "false", "redelivered flag");
	CHECK(param("header:x-event-id", &withhdr), "hdr-1", "header");
	CHECK(param("property:message_id", &withhdr), "mid-9", "message_id property");
	CHECK(param("payload_hash", &m), "!\"payload_hash\" cannot be used as a parameter", "payload_hash is no parameter");
	CHECK(param("json:a..b", &m), "!invalid JSON path \"a..b\"", "empty path segment");
	return tap_done();
}
