/* SPDX-License-Identifier: Apache-2.0 */
/* The payload-format registry and what every decoder shares: the text
 * forms of byte strings, floats and non-string map keys (decode.h). */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridge/common/text.h"
#include "bridge/common/util.h"
#include "bridge/core/decode.h"

static const struct {
	const char *name;
	enum payload_format format;
} formats[] = {
	{ "json", FORMAT_JSON },
	{ "cbor", FORMAT_CBOR },
	{ "msgpack", FORMAT_MSGPACK },
	{ "sparkplug_b", FORMAT_SPARKPLUG_B },
};

int
payload_format_parse(const char *name, enum payload_format *out)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (strcmp(name, formats[i].name) == 0) {
			*out = formats[i].format;
			return 0;
		}
	return -1;
}

const char *
payload_format_name(enum payload_format f)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (formats[i].format == f)
			return formats[i].name;
	return "?";
}

const char *
payload_format_list(void)
{
	return "\"json\", \"cbor\", \"msgpack\" or \"sparkplug_b\"";
}

int
payload_decode(enum payload_format f, const char *data, size_t len, const struct limits *lim,
    struct json_object **out, char *err, size_t errsize)
{
	*out = NULL;
	switch (f) {
	case FORMAT_JSON:
		return decode_json(data, len, lim, out, err, errsize);
	case FORMAT_CBOR:
		return decode_cbor(data, len, lim, out, err, errsize);
	case FORMAT_MSGPACK:
		return decode_msgpack(data, len, lim, out, err, errsize);
	case FORMAT_SPARKPLUG_B:
		return decode_sparkplug_b(data, len, lim, out, err, errsize);
	}
	snprintf(err, errsize, "unknown payload format %d", (int)f);
	return -1;
}

struct json_object *
decode_bytes_value(const uint8_t *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *s = xmalloc(2 * len + 3);
	struct json_object *o;

	s[0] = '\\';
	s[1] = 'x';
	for (size_t i = 0; i < len; i++) {
		s[2 + 2 * i] = hex[p[i] >> 4];
		s[3 + 2 * i] = hex[p[i] & 15];
	}
	o = json_object_new_string_len(s, (int)(2 * len + 2));
	free(s);
	return o;
}

struct json_object *
decode_text_value(const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;

	for (size_t i = 0, n; i < len; i += n) {
		n = utf8_char_len(u + i, len - i);
		if (n == 0 || u[i] == 0)
			return NULL;
	}
	return json_object_new_string_len(p, (int)len);
}

/* A finite number as the shortest decimal text that reads back to the same
 * double (single: float), so 0.1 stays "0.1" rather than its binary
 * expansion. */
static struct json_object *
shortest_number(double d, bool single)
{
	char text[40];

	for (int digits = single ? 6 : 15; digits <= 17; digits++) {
		snprintf(text, sizeof(text), "%.*g", digits, d);
		if (single ? strtof(text, NULL) == (float)d : strtod(text, NULL) == d)
			break;
	}
	return json_object_new_double_s(d, text);
}

struct json_object *
decode_double_value(double d)
{
	if (isnan(d))
		return json_object_new_string("NaN");
	if (isinf(d))
		return json_object_new_string(d > 0 ? "Infinity" : "-Infinity");
	return shortest_number(d, false);
}

struct json_object *
decode_float_value(float f)
{
	if (isnan(f) || isinf(f))
		return decode_double_value(f);
	return shortest_number(f, true);
}

char *
decode_key_text(struct json_object *key)
{
	if (key == NULL)
		return xstrdup("null");
	/* a container's text nests quotes that every level escapes again:
	 * keys of keys of keys would grow exponentially */
	if (json_object_is_type(key, json_type_object) || json_object_is_type(key, json_type_array))
		return NULL;
	if (json_object_is_type(key, json_type_string))
		return xstrdup(json_object_get_string(key));
	return xstrdup(json_object_to_json_string_ext(key, JSON_C_TO_STRING_PLAIN));
}
