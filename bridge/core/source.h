/* SPDX-License-Identifier: Apache-2.0 */
/* Where a value comes from: the event ID of a route and each parameter of
 * its business SQL are "sources" such as json:meter.id or topic_level:2. */
#ifndef ONCEBRIDGE_SOURCE_H
#define ONCEBRIDGE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/decode.h"
#include "bridge/core/message.h"

struct json_object;
struct json_tokener;

enum source_kind {
	SRC_EVENT_ID,      /* the route's event ID */
	SRC_PAYLOAD,       /* whole payload as text (json, jsonb, text columns) */
	SRC_PAYLOAD_BYTES, /* whole payload as bytea */
	SRC_JSON,          /* a field of the decoded payload, by dotted path (json: or field:) */
	SRC_TOPIC,         /* the message's topic (or routing key) */
	SRC_TOPIC_LEVEL,   /* one level of it, 1-based */
	SRC_HEADER,        /* a header (or user property) of the message */
	SRC_PROPERTY,      /* a message property: message_id, content_type */
	SRC_BROKER,        /* name of the broker connection */
	SRC_ROUTE,         /* name of the route */
	SRC_QUEUE,         /* where it was consumed: queue or subscription */
	SRC_EXCHANGE,      /* the exchange it was published to, if the protocol has one */
	SRC_REDELIVERED,   /* broker's redelivered / dup flag, "true"/"false" */
	SRC_PAYLOAD_HASH,  /* event ID only: sha256 of topic and payload */
	SRC_SPARKPLUG,     /* a part of a Sparkplug B topic: group, message_type, edge_node, device */
	SRC_COMPOSITE,     /* event ID only: "A + B + C", the parts' values joined with '/' */
};

struct source {
	enum source_kind kind;
	char *spec;   /* the text it was parsed from, for messages */
	char *arg;    /* header/property name, JSON path text */
	char **path;  /* JSON path split at '.' */
	size_t path_len;
	int level;    /* SRC_TOPIC_LEVEL; SRC_SPARKPLUG: topic level of the part (2..5) */
	struct source *parts; /* SRC_COMPOSITE */
	size_t n_parts;
};

/* Parse spec into *out. for_event_id restricts the kinds to those that can
 * carry an event ID. On error returns -1 and sets *err (malloc'd). */
int source_parse(const char *spec, bool for_event_id, struct source *out, char **err);
void source_free(struct source *src);

/* A message while the core looks at it: its payload decoded at most once
 * (again only if a route of another format looks at it too). */
struct msg_view {
	const struct message *msg;
	const char *broker;
	enum payload_format format; /* of the route looking at it: msg_view_format() */
	enum payload_format decoded_as;
	int json_state;             /* 0 not decoded, 1 decoded, -1 invalid */
	struct json_object *json;   /* the value tree; NULL is also JSON null */
	char json_error[160];
};

struct limits {
	size_t max_payload;
	size_t max_event_id_length;
	int max_json_depth;
	size_t max_topic_length;
	size_t max_headers;
	size_t dead_letter_payload; /* bytes of a poison payload kept */
};

/* Which limit on untrusted input m breaks (payload size, topic length, a
 * topic that is not clean UTF-8, header count): a malloc'd reason, or NULL
 * when it breaks none. */
char *limits_check(const struct limits *lim, const struct message *m);

void msg_view_init(struct msg_view *v, const struct message *m, const char *broker);
void msg_view_clear(struct msg_view *v);
/* The format the next sources read the payload in (json by default). */
void msg_view_format(struct msg_view *v, enum payload_format f);
/* Decodes the payload in v's format if not done yet; 0 on success, -1
 * with v->json_error set. */
int msg_view_json(struct msg_view *v, const struct limits *lim);

/* A value extracted for a parameter. data is NULL for SQL NULL. */
struct value {
	const char *data;
	size_t len;
	bool binary;  /* send as bytea in binary format */
	char *owned;  /* storage to free, if any */
};
void value_clear(struct value *val);

/* Extract a parameter value. route and event_id fill SRC_ROUTE and
 * SRC_EVENT_ID. Returns 0, or -1 with *reason set to a static or
 * v-owned text (payload is not JSON). A missing field is NULL, not an
 * error. */
int source_value(const struct source *src, struct msg_view *v, const struct limits *lim,
    const char *route, const char *event_id, struct value *out, const char **reason);

/* Extract and validate an event ID into buf (NUL-terminated, at most
 * lim->max_event_id_length bytes, except a payload_hash ID: that one is
 * not untrusted input and always "sha256:" and 64 hex digits). Returns 0,
 * or -1 with *reason set: missing, empty, too long, not valid UTF-8 or has
 * control characters, payload not JSON. */
int source_event_id(const struct source *src, struct msg_view *v, const struct limits *lim,
    char *buf, size_t bufsize, const char **reason);

#endif
