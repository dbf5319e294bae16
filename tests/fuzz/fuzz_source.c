/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: what the core does with one untrusted message before any
 * SQL runs (bridge/core/apply.c, items_add_for_message): route matching, the
 * limits on untrusted input, event ID extraction and validation, the
 * parameters of a fixed set of routes, and the properties JSON a poison
 * message's dead letter would get.
 *
 * The input: one flags byte, then fields separated by the byte 0xff
 * (which never occurs in UTF-8):
 *
 *   flags: bit 0 MQTT ('/' levels) else AMQP ('.'), bit 1 redelivered,
 *          bits 2-3 which set of limits
 *   topic 0xff payload 0xff message_id 0xff content_type 0xff header ...
 *
 * each header "name=value" (the value may hold NUL bytes). A missing field
 * is absent from the message. The content type also serves as an AMQP
 * pattern and an MQTT filter, matched against the topic when valid. */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "adapters/adapter.h"
#include "adapters/amqp_cfg.h"
#include "adapters/amqp_pattern.h"
#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_topic.h"
#include "bridge/core/deadletter_row.h"
#include "bridge/config/settings.h"
#include "bridge/core/source.h"
#include "bridge/common/text.h"
#include "bridge/common/util.h"
#include "tests/fuzz/fuzz.h"

#define MAX_FIELDS 300

static const struct limits limit_sets[4] = {
	{ .max_payload = 1048576, .max_event_id_length = 128, .max_json_depth = 32, .max_topic_length = 1024,
	    .max_headers = 128 }, /* the defaults */
	{ .max_payload = 256, .max_event_id_length = 8, .max_json_depth = 2, .max_topic_length = 16,
	    .max_headers = 2 },
	{ .max_payload = 1048576, .max_event_id_length = 1024, .max_json_depth = 1000, .max_topic_length = 65535,
	    .max_headers = 65535 }, /* the largest the configuration allows */
	{ .max_payload = 4096, .max_event_id_length = 1, .max_json_depth = 1, .max_topic_length = 1,
	    .max_headers = 0 }, /* the smallest */
};

static const struct {
	const char *name;
	const char *event_id;
	const char *params[16];
	const char *match; /* AMQP pattern */
	const char *topic; /* MQTT filter */
} routes[] = {
	{ "readings", "json:event_id", { "event_id", "json:meter", "json:kwh", "topic_level:2", "payload",
	    "payload_bytes", "header:x-trace", "property:content_type", "queue", "exchange", "redelivered",
	    "broker", "route", "topic", NULL }, "meters.#", "meters/+/reading" },
	{ "by-header", "header:x-event-id", { "json:a.0.b", "json:list.2", "topic_level:64",
	    "property:message_id", "json:deep.deeper.deepest", NULL }, "#", "#" },
	{ "by-message-id", "property:message_id", { "json:0", "topic_level:1", "json:event_id", NULL },
	    "*.#", "+/#" },
	{ "by-hash", "payload_hash", { "payload", "topic_level:3", NULL }, NULL, NULL },
	{ "nested", "json:id.value", { NULL }, NULL, NULL },
};

/* field i as a NUL-terminated copy in exactly len + 1 bytes */
static char *
field(const uint8_t *p, size_t len)
{
	char *s = xmalloc(len + 1);

	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

/* Read every byte of a value, as libpq will: the sanitizers see a value
 * whose length runs past its storage. */
static volatile unsigned char sink;

static void
touch(const char *p, size_t len)
{
	unsigned char sum = 0;

	for (size_t i = 0; p && i < len; i++)
		sum ^= (unsigned char)p[i];
	sink = sum;
}

/* no string or key of o holds a NUL byte (PostgreSQL's jsonb refuses
 * \u0000) */
static void
check_no_nul(struct json_object *o)
{
	if (json_object_is_type(o, json_type_string)) {
		fuzz_assert(memchr(json_object_get_string(o), '\0', (size_t)json_object_get_string_len(o)) == NULL);
	} else if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, key, val) {
			(void)key;
			check_no_nul(val);
		}
	}
}

/* the JSON text of a dead letter's properties must be valid UTF-8 JSON
 * without NUL bytes in its strings: PostgreSQL's jsonb refuses both */
static void
check_properties(const struct message *m)
{
	char *props = deadletter_properties_json(m);
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, props, (int)strlen(props));
	fuzz_assert(o != NULL && json_tokener_get_error(tok) == json_tokener_success);
	check_no_nul(o);
	json_object_put(o);
	json_tokener_free(tok);
	free(props);
}

static void
apply_route(size_t ri, struct msg_view *v, const struct limits *lim)
{
	const struct message *m = v->msg;
	struct route r;
	struct amqpc_route_cfg amqp_part;
	struct mqtt_route_cfg mqtt_part;
	struct source id;
	char *err = NULL, *why, idbuf[1100];
	const char *reason = NULL;

	memset(&r, 0, sizeof(r));
	memset(&amqp_part, 0, sizeof(amqp_part));
	memset(&mqtt_part, 0, sizeof(mqtt_part));
	r.name = (char *)routes[ri].name;
	mqtt_part.topic = (char *)routes[ri].topic;
	amqp_part.match = (char *)routes[ri].match;
	r.proto = m->topic_separator == '/' ? (void *)&mqtt_part : (void *)&amqp_part;
	if (!(m->topic_separator == '/' ? &mqtt_adapter : &amqpc_adapter)->route_matches(&r, m))
		return;
	why = limits_check(lim, m);
	if (why) {
		free(why);
		return;
	}
	fuzz_assert(source_parse(routes[ri].event_id, true, &id, &err) == 0);
	if (source_event_id(&id, v, lim, idbuf, sizeof(idbuf), &reason) == 0) {
		size_t len = strlen(idbuf);

		if (id.kind == SRC_PAYLOAD_HASH)
			fuzz_assert(len == 71 && strncmp(idbuf, "sha256:", 7) == 0);
		else
			fuzz_assert(len > 0 && len <= lim->max_event_id_length);
		fuzz_assert(text_is_clean(idbuf, len));
	} else {
		fuzz_assert(reason != NULL);
		source_free(&id);
		return;
	}
	for (size_t p = 0; routes[ri].params[p]; p++) {
		struct source src;
		struct value val;

		fuzz_assert(source_parse(routes[ri].params[p], false, &src, &err) == 0);
		if (source_value(&src, v, lim, r.name, idbuf, &val, &reason) == 0) {
			touch(val.data, val.len);
			value_clear(&val);
		} else {
			fuzz_assert(reason != NULL);
		}
		source_free(&src);
	}
	source_free(&id);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *start[MAX_FIELDS];
	size_t len[MAX_FIELDS], n = 0;
	struct message m;
	struct msg_header *headers;
	char *topic = NULL, *payload = NULL, *message_id = NULL, *content_type = NULL;
	const struct limits *lim;
	struct msg_view v;

	if (size < 1)
		return 0;
	memset(&m, 0, sizeof(m));
	m.topic_separator = data[0] & 1 ? '/' : '.';
	m.redelivered = data[0] & 2;
	lim = &limit_sets[(data[0] >> 2) & 3];
	for (const uint8_t *p = data + 1, *end = data + size; n < MAX_FIELDS;) {
		const uint8_t *sep = memchr(p, 0xff, (size_t)(end - p));

		start[n] = p;
		len[n] = sep ? (size_t)(sep - p) : (size_t)(end - p);
		n++;
		if (sep == NULL)
			break;
		p = sep + 1;
	}
	if (n > 0) {
		topic = field(start[0], len[0]);
		m.topic = topic;
		m.topic_len = len[0];
	}
	if (n > 1) {
		payload = field(start[1], len[1]);
		m.payload = payload;
		m.payload_len = len[1];
	}
	if (n > 2) {
		message_id = field(start[2], len[2]);
		m.message_id = message_id;
		m.message_id_len = len[2];
	}
	if (n > 3) {
		content_type = field(start[3], len[3]);
		m.content_type = content_type;
	}
	headers = xcalloc(n + 1, sizeof(struct msg_header));
	for (size_t i = 4; i < n; i++) {
		const uint8_t *eq = memchr(start[i], '=', len[i]);
		size_t nlen = eq ? (size_t)(eq - start[i]) : len[i];

		headers[m.n_headers].name = field(start[i], nlen);
		headers[m.n_headers].value = eq ? field(eq + 1, len[i] - nlen - 1) : field(start[i], 0);
		headers[m.n_headers].value_len = eq ? len[i] - nlen - 1 : 0;
		m.n_headers++;
	}
	m.headers = headers;
	m.source = "queue-1";
	m.exchange = m.topic_separator == '.' ? "amq.topic" : NULL;

	if (content_type && amqpc_pattern_error(content_type) == NULL)
		(void)amqpc_pattern_match(content_type, topic);
	if (content_type && mqtt_filter_error(content_type) == NULL)
		(void)mqtt_filter_match(content_type, topic);

	msg_view_init(&v, &m, "broker-1");
	for (size_t r = 0; r < sizeof(routes) / sizeof(routes[0]); r++)
		apply_route(r, &v, lim);
	msg_view_clear(&v);
	check_properties(&m);

	for (size_t i = 0; i < m.n_headers; i++) {
		free((char *)headers[i].name);
		free((char *)headers[i].value);
	}
	free(headers);
	free(topic);
	free(payload);
	free(message_id);
	free(content_type);
	return 0;
}
