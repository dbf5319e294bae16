/* SPDX-License-Identifier: Apache-2.0 */
/* The dead-letter row format, both ways: properties JSON for the row a
 * poison message becomes (apply_tx.c), and the message rebuilt from such a
 * row when it is replayed (deadletter_replay.c). The row may have been
 * edited by hand, so rebuilding trusts nothing in it. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "bridge/core/deadletter_row.h"
#include "bridge/core/source.h"
#include "bridge/common/text.h"
#include "bridge/common/util.h"

size_t
deadletter_kept_bytes(const struct limits *lim, size_t len)
{
	if (len > lim->max_payload)
		len = lim->max_payload;
	if (len > lim->dead_letter_payload)
		len = lim->dead_letter_payload;
	return len;
}

void
deadletter_sha256(const char *payload, size_t len, unsigned char digest[32])
{
	unsigned int n = 32;

	if (EVP_Digest(payload ? payload : "", payload ? len : 0, digest, &n, EVP_sha256(), NULL) != 1) {
		fputs("oncebridge: could not compute a SHA-256 digest\n", stderr);
		abort(); /* nothing acked: the message comes back */
	}
}

char *
deadletter_properties_json(const struct message *m)
{
	struct json_object *o = json_object_new_object(), *h;
	char *s;

	if (m->message_id) {
		s = text_sanitize(m->message_id, m->message_id_len);
		json_object_object_add(o, "message_id", json_object_new_string(s));
		free(s);
	}
	if (m->content_type) {
		s = text_sanitize(m->content_type, strlen(m->content_type));
		json_object_object_add(o, "content_type", json_object_new_string(s));
		free(s);
	}
	json_object_object_add(o, "redelivered", json_object_new_boolean(m->redelivered));
	if (m->n_headers) {
		h = json_object_new_object();
		for (size_t i = 0; i < m->n_headers; i++) {
			char *name = text_sanitize(m->headers[i].name, strlen(m->headers[i].name));

			s = text_sanitize(m->headers[i].value, m->headers[i].value_len);
			json_object_object_add(h, name, json_object_new_string(s));
			free(s);
			free(name);
		}
		json_object_object_add(o, "headers", h);
	}
	s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

unsigned char *
hex_decode(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2;
	unsigned char *out;

	if (strlen(hex) % 2 != 0)
		return NULL;
	out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			free(out);
			return NULL;
		}
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	out[n] = '\0';
	*len = n;
	return out;
}

/* Fill m from the properties object of the row; the strings stay in it. */
static int
message_properties(struct dl_message *dm, struct json_object *props, char **err)
{
	struct message *m = &dm->msg;
	struct json_object *v, *h;

	if (json_object_object_get_ex(props, "message_id", &v) && json_object_is_type(v, json_type_string)) {
		m->message_id = json_object_get_string(v);
		m->message_id_len = (size_t)json_object_get_string_len(v);
	}
	if (json_object_object_get_ex(props, "content_type", &v) && json_object_is_type(v, json_type_string))
		m->content_type = json_object_get_string(v);
	if (json_object_object_get_ex(props, "redelivered", &v))
		m->redelivered = json_object_get_boolean(v);
	if (json_object_object_get_ex(props, "headers", &h) && json_object_is_type(h, json_type_object)) {
		size_t n = 0;

		dm->headers = xcalloc((size_t)json_object_object_length(h) + 1, sizeof(struct msg_header));
		json_object_object_foreach(h, key, val) {
			/* the writer stores every header as a string; anything else
			 * (null has no text at all) was put there by hand */
			if (!json_object_is_type(val, json_type_string)) {
				char *name = text_sanitize(key, strlen(key));

				*err = xasprintf("header \"%s\" in the properties is not a string", name);
				free(name);
				return -1;
			}
			dm->headers[n].name = key;
			dm->headers[n].value = json_object_get_string(val);
			dm->headers[n].value_len = (size_t)json_object_get_string_len(val);
			n++;
		}
		m->headers = dm->headers;
		m->n_headers = n;
	}
	return 0;
}

int
dl_message_build(struct dl_message *dm, const struct dl_row *row, char sep, char **err)
{
	struct message *m = &dm->msg;
	size_t len = 0;

	memset(dm, 0, sizeof(*dm));
	dm->payload = row->payload_hex ? hex_decode(row->payload_hex, &len) : NULL;
	if (dm->payload == NULL) {
		*err = xstrdup("the payload is not valid hex");
		return -1;
	}
	m->payload = dm->payload;
	m->payload_len = len;
	m->source = row->source;
	m->exchange = row->exchange;
	m->topic = row->topic ? row->topic : "";
	m->topic_separator = sep;
	m->received_at_us = now_us();
	if (row->properties)
		dm->props = json_tokener_parse(row->properties);
	if (dm->props && message_properties(dm, dm->props, err) < 0) {
		dl_message_free(dm);
		return -1;
	}
	return 0;
}

void
dl_message_free(struct dl_message *dm)
{
	if (dm->props)
		json_object_put(dm->props);
	free(dm->headers);
	free(dm->payload);
	memset(dm, 0, sizeof(*dm));
}
