/* SPDX-License-Identifier: Apache-2.0 */
/* Payload formats: a route's "format" names how its payloads are decoded
 * into the one value tree (json-c objects) that json:PATH / field:PATH,
 * the payload-as-JSON source and the event ID sources read. Each decoder
 * is bounded by the limits on untrusted input (depth, sizes) and never
 * trusts a declared length; a payload that does not decode is poison,
 * with a reason naming the format and the byte offset.
 *
 * Text forms (the same for every format): text strings as they are (valid
 * UTF-8 without NUL bytes, else poison), integers in decimal however wide
 * (64 bits unsigned or signed), floats as JSON numbers (NaN and the
 * infinities as the strings "NaN", "Infinity", "-Infinity", which
 * PostgreSQL's float types read), byte strings as PostgreSQL's bytea hex
 * text "\x0a1b..." (a text parameter cast with $n::bytea gives the bytes
 * back), map keys that are scalars but not strings as their text form (a
 * map or array as a key is poison). */
#ifndef ONCEBRIDGE_DECODE_H
#define ONCEBRIDGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

struct json_object;
struct limits;

enum payload_format {
	FORMAT_JSON,
	FORMAT_CBOR,
	FORMAT_MSGPACK,
	FORMAT_SPARKPLUG_B,
};

/* The format called name ("json", "cbor", "msgpack", "sparkplug_b"); -1
 * when there is none. */
int payload_format_parse(const char *name, enum payload_format *out);
const char *payload_format_name(enum payload_format f);
/* "json", "cbor", ...: the names payload_format_parse knows, for messages */
const char *payload_format_list(void);

/* Decode data into *out (a new reference). Returns 0, or -1 with err set
 * (e.g. "invalid CBOR: unexpected end of input at offset 17"). */
int payload_decode(enum payload_format f, const char *data, size_t len, const struct limits *lim,
    struct json_object **out, char *err, size_t errsize);

/* One decoder per format (decode_json.c, decode_cbor.c, ...), same contract. */
int decode_json(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize);
int decode_cbor(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize);
int decode_msgpack(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize);
int decode_sparkplug_b(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize);

/* Shared by the decoders (decode.c). */
/* a byte string as "\x" and two lower-case hex digits per byte */
struct json_object *decode_bytes_value(const uint8_t *p, size_t len);
/* a text string that must be valid UTF-8 without NUL bytes; NULL if not */
struct json_object *decode_text_value(const char *p, size_t len);
/* a float as its shortest exact decimal text; NaN and the infinities as
 * strings */
struct json_object *decode_double_value(double d);
/* the same for a single-precision float */
struct json_object *decode_float_value(float f);
/* the text a map key that is not a string stands for (malloc'd); NULL
 * for a map or an array, which cannot be a key */
char *decode_key_text(struct json_object *key);

#endif
