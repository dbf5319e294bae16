/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the payload decoders (bridge/core/decode*.c): the value
 * tree and text forms of CBOR, MessagePack and Sparkplug B payloads (the
 * vectors were encoded by python3-cbor2, python3-msgpack and
 * python3-protobuf), hostile payloads that must be refused with the format
 * and offset in the reason, and the sources that read them. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridge/core/decode.h"
#include "bridge/core/source.h"
#include "tests/unit/tap.h"

static const struct limits lim = { .max_payload = 1 << 20, .max_event_id_length = 64, .max_json_depth = 8 };

/* {"id": "ev-1", "big": 2**63 + 5, "neg": -2**63, "f": 1.5, "t": True, "n": None,
 *  "nested": {"a": [1, "zwölf €", b"\x00\xff"]}, "arr": [1, 2, 3]} */
static const char cbor_doc[] =
    "\xa8\x62\x69\x64\x64\x65\x76\x2d\x31\x63\x62\x69\x67\x1b\x80\x00\x00\x00\x00\x00\x00\x05\x63\x6e\x65"
    "\x67\x3b\x7f\xff\xff\xff\xff\xff\xff\xff\x61\x66\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00\x61\x74\xf5\x61"
    "\x6e\xf6\x66\x6e\x65\x73\x74\x65\x64\xa1\x61\x61\x83\x01\x6a\x7a\x77\xc3\xb6\x6c\x66\x20\xe2\x82\xac"
    "\x42\x00\xff\x63\x61\x72\x72\x83\x01\x02\x03";
static const char msgpack_doc[] =
    "\x88\xa2\x69\x64\xa4\x65\x76\x2d\x31\xa3\x62\x69\x67\xcf\x80\x00\x00\x00\x00\x00\x00\x05\xa3\x6e\x65"
    "\x67\xd3\x80\x00\x00\x00\x00\x00\x00\x00\xa1\x66\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\xa1\x74\xc3\xa1"
    "\x6e\xc0\xa6\x6e\x65\x73\x74\x65\x64\x81\xa1\x61\x93\x01\xaa\x7a\x77\xc3\xb6\x6c\x66\x20\xe2\x82\xac"
    "\xc4\x02\x00\xff\xa3\x61\x72\x72\x93\x01\x02\x03";
static const char want_doc[] =
    "{\"id\":\"ev-1\",\"big\":9223372036854775813,\"neg\":-9223372036854775808,\"f\":1.5,\"t\":true,"
    "\"n\":null,\"nested\":{\"a\":[1,\"zwölf €\",\"\\\\x00ff\"]},\"arr\":[1,2,3]}";

/* the payload decoded in format f, as JSON text, or "!reason" */
static char *
decoded(enum payload_format f, const char *data, size_t len)
{
	struct json_object *o = NULL;
	char err[160], *out;

	if (payload_decode(f, data, len, &lim, &o, err, sizeof(err)) < 0) {
		out = malloc(strlen(err) + 2);
		out[0] = '!';
		strcpy(out + 1, err);
		return out;
	}
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}

#define IS(f, bytes, want, ...) \
	do { \
		char *got_ = decoded(f, bytes, sizeof(bytes) - 1); \
		is_str(got_, want, __VA_ARGS__); \
		free(got_); \
	} while (0)

/* A reason that starts with prefix. */
#define FAILS(f, bytes, prefix, ...) \
	do { \
		char *got_ = decoded(f, bytes, sizeof(bytes) - 1); \
		if (!ok(got_[0] == '!' && strncmp(got_ + 1, prefix, strlen(prefix)) == 0, __VA_ARGS__)) \
			printf("#   got: %s\n#   want a reason starting with: %s\n", got_, prefix); \
		free(got_); \
	} while (0)

static void
test_formats(void)
{
	enum payload_format f;

	ok(payload_format_parse("cbor", &f) == 0 && f == FORMAT_CBOR, "\"cbor\" is a format");
	ok(payload_format_parse("msgpack", &f) == 0 && f == FORMAT_MSGPACK, "\"msgpack\" is a format");
	ok(payload_format_parse("xml", &f) < 0, "\"xml\" is not");
	is_str(payload_format_name(FORMAT_JSON), "json", "the name of the default format");
}

static void
test_cbor(void)
{
	IS(FORMAT_CBOR, cbor_doc, want_doc, "CBOR: integers beyond 2^53, floats, booleans, null, maps, arrays, "
	    "multibyte UTF-8 and byte strings");
	IS(FORMAT_CBOR, "\x3b\xff\xff\xff\xff\xff\xff\xff\xff", "-18446744073709551616",
	    "CBOR: a negative integer below -2^63 keeps its exact text");
	IS(FORMAT_CBOR, "\xf9\x7e\x00", "\"NaN\"", "CBOR: NaN as the text PostgreSQL reads");
	IS(FORMAT_CBOR, "\xc1\x1a\x65\x53\xf1\x00", "1700000000", "CBOR: a tag is dropped, its value kept");
	IS(FORMAT_CBOR, "\xa2\x01\x61\x61\x61\x62\x81\xf5", "{\"1\":\"a\",\"b\":[true]}",
	    "CBOR: an integer map key becomes its text");
	IS(FORMAT_CBOR, "\x5f\x42\x01\x02\x41\x03\xff", "\"\\\\x010203\"", "CBOR: an indefinite byte string");
	IS(FORMAT_CBOR, "\x9f\x01\x7f\x61\x61\x61\x62\xff\xff", "[1,\"ab\"]",
	    "CBOR: an indefinite array holding an indefinite text string");
	FAILS(FORMAT_CBOR, "\x9b\x00\x00\x00\x01\x00\x00\x00\x00\x01", "invalid CBOR: array of 4294967296 items at offset 0",
	    "CBOR: an array declaring more items than bytes is refused before any allocation");
	FAILS(FORMAT_CBOR, "\xa1\x61\x61\x83\x01\x02", "invalid CBOR: unexpected end of input at offset 6",
	    "CBOR: a truncated payload names the offset");
	FAILS(FORMAT_CBOR, "\x81\x81\x81\x81\x81\x81\x81\x81\x81\x01", "invalid CBOR: nesting deeper than limits.max_json_depth",
	    "CBOR: nesting beyond the limit");
	FAILS(FORMAT_CBOR, "\x62\xc3\x28", "invalid CBOR: text string at offset 0 is not valid UTF-8",
	    "CBOR: a text string that is not UTF-8");
	FAILS(FORMAT_CBOR, "\x61\x00", "invalid CBOR: text string at offset 0 is not valid UTF-8 or holds a NUL",
	    "CBOR: a text string with NUL");
	FAILS(FORMAT_CBOR, "\x01\x02", "invalid CBOR: trailing data at offset 1", "CBOR: two values");
	FAILS(FORMAT_CBOR, "\xff", "invalid CBOR: ", "CBOR: a stray break");
	FAILS(FORMAT_CBOR, "\x5f\x61\x61\xff", "invalid CBOR: a chunk of an indefinite-length string",
	    "CBOR: a text chunk inside an indefinite byte string");
	FAILS(FORMAT_CBOR, "", "invalid CBOR: empty payload", "CBOR: an empty payload");
	FAILS(FORMAT_CBOR, "\xa1\xa1\x61\x61\x01\x02", "invalid CBOR: map key ending at offset 4 is a map or an array",
	    "CBOR: a map as a map key (keys of keys would grow the text exponentially)");
}

static void
test_msgpack(void)
{
	IS(FORMAT_MSGPACK, msgpack_doc, want_doc, "MessagePack: the same document gives the same tree");
	IS(FORMAT_MSGPACK, "\xd4\x05\x41", "{\"type\":5,\"data\":\"\\\\x41\"}", "MessagePack: an ext value");
	IS(FORMAT_MSGPACK, "\xca\x3f\xc0\x00\x00", "1.5", "MessagePack: a float32");
	FAILS(FORMAT_MSGPACK, "\xdd\xff\xff\xff\xff\x01", "invalid MessagePack: array of 4294967295 items at offset 0",
	    "MessagePack: an array declaring more items than bytes is refused before msgpack-c allocates it");
	FAILS(FORMAT_MSGPACK, "\xdf\x00\x01\x00\x00\x01", "invalid MessagePack: map of 131072 items at offset 0",
	    "MessagePack: the same for a map");
	FAILS(FORMAT_MSGPACK, "\x92\x01\xc1", "invalid MessagePack: type byte 0xc1 at offset 2",
	    "MessagePack: the unused type byte");
	FAILS(FORMAT_MSGPACK, "\xdb\x00\x10\x00\x00\x61", "invalid MessagePack: item at offset 0 is longer than the payload",
	    "MessagePack: a string longer than the payload");
	FAILS(FORMAT_MSGPACK, "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x01",
	    "invalid MessagePack: nesting deeper than limits.max_json_depth", "MessagePack: nesting beyond the limit");
	FAILS(FORMAT_MSGPACK, "\x92\x01", "invalid MessagePack: array of 2 items at offset 0 is longer",
	    "MessagePack: a truncated array");
	FAILS(FORMAT_MSGPACK, "\x92\x01\xcd\x01", "invalid MessagePack: item at offset 2 is longer than the payload",
	    "MessagePack: a truncated integer");
	FAILS(FORMAT_MSGPACK, "\xa2\xc3\x28", "invalid MessagePack: string at offset 1 is not valid UTF-8",
	    "MessagePack: a string that is not UTF-8");
	FAILS(FORMAT_MSGPACK, "\x01\x02", "invalid MessagePack: trailing data at offset 1", "MessagePack: two values");
	FAILS(FORMAT_MSGPACK, "\x81\x91\x01\x02", "invalid MessagePack: a map key is a map or an array",
	    "MessagePack: an array as a map key");
}

/* Payload{timestamp 1000, seq 7, metrics: t (alias 1, Int32, -5 as uint32),
 * alias 2 alone (float 0.1), n (Double, is_null), ds (a DataSet of UInt32
 * and String)}, encoded by python3-protobuf from sparkplug_b.proto */
static const char spb_doc[] =
    "\x08\xe8\x07\x12\x0d\x0a\x01\x74\x10\x01\x20\x03\x50\xfb\xff\xff\xff\x0f\x12\x07\x10\x02\x65\xcd\xcc\xcc"
    "\x3d\x12\x07\x0a\x01\x6e\x20\x0a\x38\x01\x12\x20\x0a\x02\x64\x73\x20\x10\x8a\x01\x17\x08\x02\x12\x01"
    "\x61\x12\x01\x62\x18\x07\x18\x0c\x22\x09\x0a\x02\x08\x05\x0a\x03\x32\x01\x78\x18\x07";
/* a Template metric nested 40 deep */
static const char spb_deep[] =
    "\x12\xf5\x02\x0a\x01\x78\x20\x13\x92\x01\xec\x02\x12\xe9\x02\x0a\x01\x78\x92\x01\xe2\x02\x12\xdf\x02"
    "\x0a\x01\x78\x92\x01\xd8\x02\x12\xd5\x02\x0a\x01\x78\x92\x01\xce\x02\x12\xcb\x02\x0a\x01\x78\x92\x01"
    "\xc4\x02\x12\xc1\x02\x0a\x01\x78\x92\x01\xba\x02\x12\xb7\x02\x0a\x01\x78\x92\x01\xb0\x02\x12\xad\x02"
    "\x0a\x01\x78\x92\x01\xa6\x02\x12\xa3\x02\x0a\x01\x78\x92\x01\x9c\x02\x12\x99\x02\x0a\x01\x78\x92\x01"
    "\x92\x02\x12\x8f\x02\x0a\x01\x78\x92\x01\x88\x02\x12\x85\x02\x0a\x01\x78\x92\x01\xfe\x01\x12\xfb\x01"
    "\x0a\x01\x78\x92\x01\xf4\x01\x12\xf1\x01\x0a\x01\x78\x92\x01\xea\x01\x12\xe7\x01\x0a\x01\x78\x92\x01"
    "\xe0\x01\x12\xdd\x01\x0a\x01\x78\x92\x01\xd6\x01\x12\xd3\x01\x0a\x01\x78\x92\x01\xcc\x01\x12\xc9\x01"
    "\x0a\x01\x78\x92\x01\xc2\x01\x12\xbf\x01\x0a\x01\x78\x92\x01\xb8\x01\x12\xb5\x01\x0a\x01\x78\x92\x01"
    "\xae\x01\x12\xab\x01\x0a\x01\x78\x92\x01\xa4\x01\x12\xa1\x01\x0a\x01\x78\x92\x01\x9a\x01\x12\x97\x01"
    "\x0a\x01\x78\x92\x01\x90\x01\x12\x8d\x01\x0a\x01\x78\x92\x01\x86\x01\x12\x83\x01\x0a\x01\x78\x92\x01"
    "\x7d\x12\x7b\x0a\x01\x78\x92\x01\x75\x12\x73\x0a\x01\x78\x92\x01\x6d\x12\x6b\x0a\x01\x78\x92\x01\x65"
    "\x12\x63\x0a\x01\x78\x92\x01\x5d\x12\x5b\x0a\x01\x78\x92\x01\x55\x12\x53\x0a\x01\x78\x92\x01\x4d\x12"
    "\x4b\x0a\x01\x78\x92\x01\x45\x12\x43\x0a\x01\x78\x92\x01\x3d\x12\x3b\x0a\x01\x78\x92\x01\x35\x12\x33"
    "\x0a\x01\x78\x92\x01\x2d\x12\x2b\x0a\x01\x78\x92\x01\x25\x12\x23\x0a\x01\x78\x92\x01\x1d\x12\x1b\x0a"
    "\x01\x78\x92\x01\x15\x12\x13\x0a\x01\x78\x92\x01\x0d\x12\x0b\x0a\x01\x78\x92\x01\x05\x12\x03\x0a\x01"
    "\x78";

static void
test_sparkplug(void)
{
	IS(FORMAT_SPARKPLUG_B, spb_doc,
	    "{\"timestamp\":1000,\"seq\":7,\"metrics\":[{\"name\":\"t\",\"alias\":1,\"datatype\":3,"
	    "\"datatype_name\":\"Int32\",\"value\":-5},{\"alias\":2,\"value\":0.1},{\"name\":\"n\",\"datatype\":10,"
	    "\"datatype_name\":\"Double\",\"is_null\":true,\"value\":null},{\"name\":\"ds\",\"datatype\":16,"
	    "\"datatype_name\":\"DataSet\",\"value\":{\"num_of_columns\":2,\"columns\":[\"a\",\"b\"],"
	    "\"types\":[\"UInt32\",\"String\"],\"rows\":[[5,\"x\"]]}}]}",
	    "Sparkplug B: a signed Int32 from its two's complement, a float by alias alone, a null metric, a DataSet");
	FAILS(FORMAT_SPARKPLUG_B, spb_deep, "invalid Sparkplug B: nesting deeper than limits.max_json_depth",
	    "Sparkplug B: templates nested beyond the limit are refused before protobuf-c recurses");
	FAILS(FORMAT_SPARKPLUG_B, "\x12\x05\x0a\x03\x61\x00\x62",
	    "invalid Sparkplug B: text field \"name\" at offset 2 is not valid UTF-8 or holds a NUL byte",
	    "Sparkplug B: a name with a NUL byte (protobuf-c would cut it)");
	FAILS(FORMAT_SPARKPLUG_B, "\x08\xe8\x07\x12\x0d\x0a",
	    "invalid Sparkplug B: malformed or truncated field at offset 3", "Sparkplug B: a truncated payload");
	FAILS(FORMAT_SPARKPLUG_B, "\x0b\x01", "invalid Sparkplug B: malformed or truncated field at offset 0",
	    "Sparkplug B: a group wire type");
}

/* sparkplug:PART and composite event IDs */
static void
test_sparkplug_sources(void)
{
	struct message m = { 0 };
	struct msg_view v;
	struct source id, dev, grp;
	char buf[128], *err = NULL;
	const char *reason = NULL;
	struct value val;

	m.payload = spb_doc;
	m.payload_len = sizeof(spb_doc) - 1;
	m.topic = "spBv1.0/plant/NDATA/edge1";
	m.topic_separator = '/';
	ok(source_parse("topic + field:timestamp + field:seq", true, &id, &err) == 0 && id.n_parts == 3,
	    "\"A + B + C\" is a composite event ID");
	ok(source_parse("sparkplug:device", false, &dev, &err) == 0 && source_parse("sparkplug:group", false, &grp,
	    &err) == 0, "sparkplug:device and sparkplug:group are sources");
	msg_view_init(&v, &m, "b");
	msg_view_format(&v, FORMAT_SPARKPLUG_B);
	ok(source_event_id(&id, &v, &lim, buf, sizeof(buf), &reason) == 0 &&
	    strcmp(buf, "spBv1.0/plant/NDATA/edge1/1000/7") == 0, "the composite joins its parts with '/'");
	ok(source_value(&grp, &v, &lim, "r", buf, &val, &reason) == 0 && val.data && strcmp(val.data, "plant") == 0,
	    "sparkplug:group of the topic");
	value_clear(&val);
	ok(source_value(&dev, &v, &lim, "r", buf, &val, &reason) == 0 && val.data == NULL,
	    "sparkplug:device of a node message is NULL");
	value_clear(&val);
	m.topic = "spBv1.0/STATE/host";
	ok(source_value(&grp, &v, &lim, "r", buf, &val, &reason) == 0 && val.data == NULL,
	    "a topic outside the namespace gives NULL");
	msg_view_clear(&v);
	source_free(&dev);
	source_free(&grp);
	source_free(&id);
	ok(source_parse("topic + payload", true, &id, &err) < 0 && strstr(err, "cannot be part of an event ID"),
	    "the whole payload cannot be part of an event ID");
	free(err);
	err = NULL;
	ok(source_parse("sparkplug:site", false, &id, &err) < 0 && strstr(err, "unknown Sparkplug B topic part"),
	    "an unknown Sparkplug B part is refused");
	free(err);
}

/* json:PATH, field:PATH and payload read the decoded tree */
static void
test_sources(void)
{
	struct message m = { 0 };
	struct msg_view v;
	struct source id, big, payload;
	struct value val;
	char buf[64], *err = NULL;
	const char *reason = NULL;

	m.payload = cbor_doc;
	m.payload_len = sizeof(cbor_doc) - 1;
	ok(source_parse("field:id", true, &id, &err) == 0, "field:PATH is a source");
	ok(source_parse("json:big", false, &big, &err) == 0 && source_parse("payload", false, &payload, &err) == 0,
	    "json:PATH and payload too");
	msg_view_init(&v, &m, "b");
	msg_view_format(&v, FORMAT_CBOR);
	ok(source_event_id(&id, &v, &lim, buf, sizeof(buf), &reason) == 0 && strcmp(buf, "ev-1") == 0,
	    "the event ID from a CBOR field");
	ok(source_value(&big, &v, &lim, "r", "ev-1", &val, &reason) == 0 && val.data &&
	    strcmp(val.data, "9223372036854775813") == 0, "a uint64 field as its decimal text");
	value_clear(&val);
	ok(source_value(&payload, &v, &lim, "r", "ev-1", &val, &reason) == 0 && val.data && val.data[0] == '{' &&
	    strstr(val.data, "\"arr\":[1,2,3]") != NULL, "payload is the CBOR document as JSON text, for jsonb");
	value_clear(&val);
	msg_view_format(&v, FORMAT_JSON);
	ok(source_event_id(&id, &v, &lim, buf, sizeof(buf), &reason) < 0 && strncmp(reason, "invalid JSON", 12) == 0,
	    "the same bytes read by a JSON route are invalid JSON");
	msg_view_clear(&v);
	source_free(&id);
	source_free(&big);
	source_free(&payload);
}

int
main(void)
{
	test_formats();
	test_cbor();
	test_msgpack();
	test_sparkplug();
	test_sparkplug_sources();
	test_sources();
	return tap_done();
}
