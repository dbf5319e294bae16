/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing of value sources ("json:a.b", "header:x-event-id", ...) and
 * extraction of event IDs and SQL parameter values from a message. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "bridge/core/source.h"
#include "bridge/common/text.h"
#include "bridge/common/util.h"

static const struct {
	const char *name;
	enum source_kind kind;
	bool has_arg;
	bool event_id_ok;
	bool param_ok;
} source_kinds[] = {
	{ "event_id", SRC_EVENT_ID, false, false, true },
	{ "payload", SRC_PAYLOAD, false, false, true },
	{ "payload_bytes", SRC_PAYLOAD_BYTES, false, false, true },
	{ "json", SRC_JSON, true, true, true },
	{ "field", SRC_JSON, true, true, true }, /* the same, for payloads that are not JSON */
	{ "topic", SRC_TOPIC, false, false, true },
	{ "topic_level", SRC_TOPIC_LEVEL, true, false, true },
	{ "header", SRC_HEADER, true, true, true },
	{ "property", SRC_PROPERTY, true, true, true },
	{ "broker", SRC_BROKER, false, false, true },
	{ "route", SRC_ROUTE, false, false, true },
	{ "queue", SRC_QUEUE, false, false, true },
	{ "exchange", SRC_EXCHANGE, false, false, true },
	{ "redelivered", SRC_REDELIVERED, false, false, true },
	{ "payload_hash", SRC_PAYLOAD_HASH, false, true, false },
	{ "sparkplug", SRC_SPARKPLUG, true, false, true },
};

/* the parts of a Sparkplug B topic spBv1.0/GROUP/TYPE/EDGE[/DEVICE], by level */
static const char *const sparkplug_parts[] = { "group", "message_type", "edge_node", "device", NULL };

/* "A + B + C": an event ID made of the values of several sources */
#define COMPOSITE_SEP " + "

static int source_parse_one(const char *spec, bool for_event_id, struct source *out, char **err);

static int
source_parse_composite(const char *spec, struct source *out, char **err)
{
	const char *p = spec;

	memset(out, 0, sizeof(*out));
	out->kind = SRC_COMPOSITE;
	out->spec = xstrdup(spec);
	for (;;) {
		const char *end = strstr(p, COMPOSITE_SEP);
		char *part = end ? xstrndup(p, (size_t)(end - p)) : xstrdup(p);
		struct source *src;

		out->parts = xrealloc(out->parts, (out->n_parts + 1) * sizeof(struct source));
		src = &out->parts[out->n_parts];
		/* any parameter source but the whole payload or the ID itself */
		if (source_parse_one(part, false, src, err) < 0 || src->kind == SRC_EVENT_ID ||
		    src->kind == SRC_PAYLOAD || src->kind == SRC_PAYLOAD_BYTES) {
			if (*err == NULL) {
				*err = xasprintf("\"%s\" cannot be part of an event ID", part);
				source_free(src);
			}
			free(part);
			source_free(out);
			return -1;
		}
		out->n_parts++;
		free(part);
		if (end == NULL)
			return 0;
		p = end + strlen(COMPOSITE_SEP);
	}
}

int
source_parse(const char *spec, bool for_event_id, struct source *out, char **err)
{
	*err = NULL;
	if (for_event_id && strstr(spec, COMPOSITE_SEP))
		return source_parse_composite(spec, out, err);
	return source_parse_one(spec, for_event_id, out, err);
}

static const char *const property_names[] = { "message_id", "content_type", NULL };

static int
source_parse_one(const char *spec, bool for_event_id, struct source *out, char **err)
{
	const char *colon = strchr(spec, ':');
	size_t namelen = colon ? (size_t)(colon - spec) : strlen(spec);
	const char *arg = colon ? colon + 1 : NULL;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sizeof(source_kinds) / sizeof(source_kinds[0]); i++) {
		if (strlen(source_kinds[i].name) != namelen ||
		    strncmp(source_kinds[i].name, spec, namelen) != 0)
			continue;
		if (for_event_id ? !source_kinds[i].event_id_ok : !source_kinds[i].param_ok) {
			*err = xasprintf("\"%s\" cannot be used as %s", source_kinds[i].name,
			    for_event_id ? "an event ID source" : "a parameter");
			return -1;
		}
		if (source_kinds[i].has_arg && (arg == NULL || *arg == '\0')) {
			*err = xasprintf("source \"%s\" needs an argument, as in \"%s:NAME\"",
			    source_kinds[i].name, source_kinds[i].name);
			return -1;
		}
		if (!source_kinds[i].has_arg && arg != NULL) {
			*err = xasprintf("source \"%s\" takes no argument", source_kinds[i].name);
			return -1;
		}
		out->kind = source_kinds[i].kind;
		out->spec = xstrdup(spec);
		if (arg == NULL)
			return 0; /* the kinds below all take an argument */
		out->arg = xstrdup(arg);
		if (out->kind == SRC_TOPIC_LEVEL) {
			char *end;
			long lvl = strtol(arg, &end, 10);

			if (*end != '\0' || lvl < 1 || lvl > 64) {
				*err = xasprintf("topic level \"%s\" must be a number from 1 to 64", arg);
				source_free(out);
				return -1;
			}
			out->level = (int)lvl;
		} else if (out->kind == SRC_SPARKPLUG) {
			for (int p = 0; sparkplug_parts[p]; p++)
				if (strcmp(sparkplug_parts[p], arg) == 0)
					out->level = p + 2;
			if (out->level == 0) {
				*err = xasprintf("unknown Sparkplug B topic part \"%s\" (known: group, message_type, "
				    "edge_node, device)", arg);
				source_free(out);
				return -1;
			}
		} else if (out->kind == SRC_PROPERTY) {
			bool known = false;

			for (size_t p = 0; property_names[p]; p++)
				known |= strcmp(property_names[p], arg) == 0;
			if (!known) {
				*err = xasprintf("unknown property \"%s\" (known: message_id, content_type)", arg);
				source_free(out);
				return -1;
			}
		} else if (out->kind == SRC_JSON) {
			char *copy = xstrdup(arg), *save = NULL;

			for (char *part = strtok_r(copy, ".", &save); part; part = strtok_r(NULL, ".", &save)) {
				out->path = xrealloc(out->path, (out->path_len + 1) * sizeof(char *));
				out->path[out->path_len++] = xstrdup(part);
			}
			free(copy);
			if (out->path_len == 0 || arg[0] == '.' || arg[strlen(arg) - 1] == '.' ||
			    strstr(arg, "..")) {
				*err = xasprintf("invalid %s path \"%s\"",
				    strncmp(spec, "json:", 5) == 0 ? "JSON" : "field", arg);
				source_free(out);
				return -1;
			}
		}
		return 0;
	}
	*err = xasprintf("unknown source \"%.*s\"", (int)namelen, spec);
	return -1;
}

void
source_free(struct source *src)
{
	for (size_t i = 0; i < src->n_parts; i++)
		source_free(&src->parts[i]);
	free(src->parts);
	for (size_t i = 0; i < src->path_len; i++)
		free(src->path[i]);
	free(src->path);
	free(src->spec);
	free(src->arg);
	memset(src, 0, sizeof(*src));
}

char *
limits_check(const struct limits *lim, const struct message *m)
{
	size_t topic_len = m->topic ? (m->topic_len ? m->topic_len : strlen(m->topic)) : 0;

	if (m->payload_len > lim->max_payload)
		return xasprintf("payload of %zu bytes exceeds limits.max_payload (%zu)", m->payload_len,
		    lim->max_payload);
	if (topic_len > lim->max_topic_length)
		return xasprintf("topic of %zu bytes exceeds limits.max_topic_length (%zu)", topic_len,
		    lim->max_topic_length);
	if (m->topic && !text_is_clean(m->topic, topic_len))
		return xstrdup("topic is not valid UTF-8 or contains control characters");
	if (m->n_headers > lim->max_headers)
		return xasprintf("%zu headers or user properties exceed limits.max_headers (%zu)", m->n_headers,
		    lim->max_headers);
	return NULL;
}

void
msg_view_init(struct msg_view *v, const struct message *m, const char *broker)
{
	memset(v, 0, sizeof(*v));
	v->msg = m;
	v->broker = broker;
}

void
msg_view_clear(struct msg_view *v)
{
	if (v->json)
		json_object_put(v->json);
	v->json = NULL;
	v->json_state = 0;
}

void
msg_view_format(struct msg_view *v, enum payload_format f)
{
	if (v->json_state && v->decoded_as != f)
		msg_view_clear(v);
	v->format = f;
}

int
msg_view_json(struct msg_view *v, const struct limits *lim)
{
	if (v->json_state)
		return v->json_state > 0 ? 0 : -1;
	v->decoded_as = v->format;
	if (payload_decode(v->format, v->msg->payload ? v->msg->payload : "", v->msg->payload_len, lim, &v->json,
	    v->json_error, sizeof(v->json_error)) < 0) {
		v->json_state = -1;
		return -1;
	}
	v->json_state = 1;
	return 0;
}

void
value_clear(struct value *val)
{
	free(val->owned);
	memset(val, 0, sizeof(*val));
}

/* Walk a dotted path; a numeric segment indexes an array. NULL when absent
 * (also for JSON null). */
static struct json_object *
json_walk(struct json_object *obj, char *const *path, size_t path_len)
{
	for (size_t i = 0; i < path_len && obj; i++) {
		if (json_object_is_type(obj, json_type_object)) {
			struct json_object *next = NULL;

			if (!json_object_object_get_ex(obj, path[i], &next))
				return NULL;
			obj = next;
		} else if (json_object_is_type(obj, json_type_array)) {
			char *end;
			long idx = strtol(path[i], &end, 10);

			if (*end != '\0' || end == path[i] || idx < 0 ||
			    (size_t)idx >= json_object_array_length(obj))
				return NULL;
			obj = json_object_array_get_idx(obj, (size_t)idx);
		} else {
			return NULL;
		}
	}
	return obj;
}

/* Text of a JSON value as a parameter: strings unquoted, numbers and
 * booleans as written, objects and arrays as JSON text. */
static void
json_value_text(struct json_object *obj, struct value *out)
{
	if (json_object_is_type(obj, json_type_string)) {
		out->data = json_object_get_string(obj);
		out->len = (size_t)json_object_get_string_len(obj);
	} else {
		size_t len = 0;
		const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &len);

		out->owned = xstrndup(s, len);
		out->data = out->owned;
		out->len = len;
	}
}

static const struct msg_header *
find_header(const struct message *m, const char *name)
{
	for (size_t i = 0; i < m->n_headers; i++)
		if (strcmp(m->headers[i].name, name) == 0)
			return &m->headers[i];
	return NULL;
}

/* Level n (1-based) of topic, split at sep. */
static bool
topic_level(const char *topic, char sep, int n, const char **start, size_t *len)
{
	const char *p = topic;

	for (int i = 1; i < n; i++) {
		p = strchr(p, sep);
		if (p == NULL)
			return false;
		p++;
	}
	*start = p;
	*len = strchrnul(p, sep) - p;
	return true;
}

/* Level (2..5) of a Sparkplug B topic spBv1.0/GROUP/TYPE/EDGE[/DEVICE];
 * NULL when the topic is not one, or has no device. */
static void
sparkplug_part(const struct message *m, int level, struct value *out)
{
	static const char ns[] = "spBv1.0/";
	const char *p = m->topic;
	int levels = 1;

	out->data = NULL;
	if (p == NULL || strncmp(p, ns, sizeof(ns) - 1) != 0)
		return;
	for (const char *q = p; *q; q++)
		levels += *q == '/';
	if (levels < 4 || levels > 5 || level > levels || !topic_level(p, '/', level, &out->data, &out->len)) {
		out->data = NULL;
		return;
	}
	out->owned = xstrndup(out->data, out->len);
	out->data = out->owned;
}

int
source_value(const struct source *src, struct msg_view *v, const struct limits *lim,
    const char *route, const char *event_id, struct value *out, const char **reason)
{
	const struct message *m = v->msg;

	memset(out, 0, sizeof(*out));
	switch (src->kind) {
	case SRC_EVENT_ID:
		out->data = event_id;
		out->len = event_id ? strlen(event_id) : 0;
		break;
	case SRC_PAYLOAD:
		if (v->format != FORMAT_JSON) { /* the decoded tree as JSON text, for json and jsonb */
			size_t len = 0;
			const char *text;

			if (msg_view_json(v, lim) < 0) {
				*reason = v->json_error;
				return -1;
			}
			text = json_object_to_json_string_length(v->json, JSON_C_TO_STRING_PLAIN, &len);
			out->owned = xstrndup(text, len);
			out->data = out->owned;
			out->len = len;
			break;
		}
		/* text parameters must be NUL-terminated; the payload is not */
		out->owned = xstrndup(m->payload ? m->payload : "", m->payload_len);
		out->data = out->owned;
		out->len = m->payload_len;
		break;
	case SRC_PAYLOAD_BYTES:
		out->data = m->payload ? m->payload : "";
		out->len = m->payload_len;
		out->binary = true;
		break;
	case SRC_JSON: {
		struct json_object *obj;

		if (msg_view_json(v, lim) < 0) {
			*reason = v->json_error;
			return -1;
		}
		obj = json_walk(v->json, src->path, src->path_len);
		if (obj)
			json_value_text(obj, out);
		break;
	}
	case SRC_TOPIC:
		out->data = m->topic;
		out->len = m->topic ? strlen(m->topic) : 0;
		break;
	case SRC_TOPIC_LEVEL:
		if (m->topic && topic_level(m->topic, m->topic_separator, src->level, &out->data, &out->len)) {
			out->owned = xstrndup(out->data, out->len);
			out->data = out->owned;
		} else {
			out->data = NULL;
		}
		break;
	case SRC_HEADER: {
		const struct msg_header *h = find_header(m, src->arg);

		if (h) {
			out->data = h->value;
			out->len = h->value_len;
		}
		break;
	}
	case SRC_PROPERTY:
		if (strcmp(src->arg, "message_id") == 0) {
			out->data = m->message_id;
			out->len = m->message_id_len;
		} else {
			out->data = m->content_type;
			out->len = m->content_type ? strlen(m->content_type) : 0;
		}
		break;
	case SRC_BROKER:
		out->data = v->broker;
		out->len = v->broker ? strlen(v->broker) : 0;
		break;
	case SRC_ROUTE:
		out->data = route;
		out->len = route ? strlen(route) : 0;
		break;
	case SRC_QUEUE:
		out->data = m->source;
		out->len = m->source ? strlen(m->source) : 0;
		break;
	case SRC_EXCHANGE:
		out->data = m->exchange;
		out->len = m->exchange ? strlen(m->exchange) : 0;
		break;
	case SRC_REDELIVERED:
		out->data = m->redelivered ? "true" : "false";
		out->len = strlen(out->data);
		break;
	case SRC_SPARKPLUG:
		sparkplug_part(m, src->level, out);
		break;
	case SRC_PAYLOAD_HASH:
	case SRC_COMPOSITE:
		*reason = "this source is not a parameter source";
		return -1;
	}
	return 0;
}

static void
payload_hash(const struct message *m, char *buf, size_t bufsize)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	const char *topic = m->topic ? m->topic : "";

	if (ctx == NULL)
		abort();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, topic, strlen(topic) + 1);
	EVP_DigestUpdate(ctx, m->payload ? m->payload : "", m->payload_len);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	snprintf(buf, bufsize, "sha256:");
	for (unsigned int i = 0; i < mdlen && strlen(buf) + 3 <= bufsize; i++)
		snprintf(buf + strlen(buf), bufsize - strlen(buf), "%02x", md[i]);
}

/* A JSON value that may be (part of) an event ID: a string or an integer. */
static bool
id_json_ok(const struct source *src, struct msg_view *v)
{
	struct json_object *obj;

	if (src->kind != SRC_JSON)
		return true;
	obj = json_walk(v->json, src->path, src->path_len);
	return json_object_is_type(obj, json_type_string) || json_object_is_type(obj, json_type_int);
}

/* The parts of a composite event ID joined with '/'. A missing part
 * (device of a node message, seq of a death certificate) joins as empty;
 * all parts missing, or a JSON part that is neither a string nor an
 * integer, fail (the reason lives in v). */
static int
composite_value(const struct source *src, struct msg_view *v, const struct limits *lim, struct value *out,
    const char **reason)
{
	struct buf joined = { 0 };
	size_t present = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < src->n_parts; i++) {
		struct value part;

		if (source_value(&src->parts[i], v, lim, NULL, NULL, &part, reason) < 0) {
			buf_free(&joined);
			return -1;
		}
		if (part.data && !id_json_ok(&src->parts[i], v)) {
			snprintf(v->json_error, sizeof(v->json_error), "event ID part \"%s\" is neither a string nor an "
			    "integer", src->parts[i].spec);
			*reason = v->json_error;
			value_clear(&part);
			buf_free(&joined);
			return -1;
		}
		if (i > 0)
			buf_append(&joined, "/", 1);
		if (part.data) {
			buf_append(&joined, part.data, part.len);
			present++;
		}
		value_clear(&part);
	}
	buf_append(&joined, "", 1);
	if (present == 0) {
		buf_free(&joined);
		return 0; /* out->data NULL: missing */
	}
	out->owned = joined.data;
	out->data = joined.data;
	out->len = joined.len - 1;
	return 0;
}

int
source_event_id(const struct source *src, struct msg_view *v, const struct limits *lim,
    char *buf, size_t bufsize, const char **reason)
{
	struct value val;
	size_t max = lim->max_event_id_length;

	if (src->kind == SRC_PAYLOAD_HASH) {
		payload_hash(v->msg, buf, bufsize);
		return 0;
	}
	if (src->kind == SRC_COMPOSITE) {
		if (composite_value(src, v, lim, &val, reason) < 0)
			return -1;
	} else if (source_value(src, v, lim, NULL, NULL, &val, reason) < 0) {
		return -1;
	}
	if (val.data == NULL) {
		*reason = "missing event ID";
		goto fail;
	}
	if (!id_json_ok(src, v)) {
		*reason = "event ID is neither a string nor an integer";
		goto fail;
	}
	if (val.len == 0) {
		*reason = "event ID is empty";
		goto fail;
	}
	if (max >= bufsize)
		max = bufsize - 1;
	if (val.len > max) {
		*reason = "event ID is too long";
		goto fail;
	}
	if (!text_is_clean(val.data, val.len)) {
		*reason = "event ID is not valid UTF-8 or contains control characters";
		goto fail;
	}
	memcpy(buf, val.data, val.len);
	buf[val.len] = '\0';
	value_clear(&val);
	return 0;
fail:
	value_clear(&val);
	return -1;
}
