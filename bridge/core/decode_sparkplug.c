/* SPDX-License-Identifier: Apache-2.0 */
/* The Sparkplug B payload format: a Protocol Buffers Payload (schema in
 * sparkplug_b.proto, compiled by protoc-c) decoded by protobuf-c into the
 * value tree the other formats give:
 *
 *   {"timestamp": ms, "seq": n, "uuid": "...", "body": "\x...",
 *    "metrics": [{"name": "...", "alias": n, "timestamp": ms,
 *                 "datatype": 10, "datatype_name": "Double",
 *                 "is_historical": b, "is_transient": b, "is_null": b,
 *                 "value": ..., "properties": {...}, "metadata": {...}}]}
 *
 * with only the fields the message has. A metric's value takes the text
 * form of its data type: signed integers from their two's complement,
 * DateTime as ms, String/Text/UUID as text, Bytes/File and the array types
 * as "\x..." hex, a DataSet as {"columns", "types", "rows"}, a Template as
 * {"version", "template_ref", "is_definition", "metrics", "parameters"},
 * a null metric as null. Aliases are not resolved here: data messages
 * carry what the edge node sent (see README, "Sparkplug B").
 *
 * protobuf-c recurses into nested messages without a limit and keeps a
 * string only up to its first NUL byte, so a first pass walks the wire
 * format with the schema's descriptors: nesting deeper than
 * limits.max_json_depth, a truncated field, a length beyond the payload,
 * a text field that is not UTF-8 or holds NUL make the payload poison,
 * with the offset. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <protobuf-c/protobuf-c.h>

#include "bridge/common/text.h"
#include "bridge/core/decode.h"
#include "bridge/core/source.h"
#include "bridge/core/sparkplug_b.pb-c.h"

typedef Oncebridge__SparkplugB__Payload SpPayload;
typedef Oncebridge__SparkplugB__Payload__Metric SpMetric;
typedef Oncebridge__SparkplugB__Payload__DataSet SpDataSet;
typedef Oncebridge__SparkplugB__Payload__Template SpTemplate;
typedef Oncebridge__SparkplugB__Payload__PropertySet SpPropertySet;
typedef Oncebridge__SparkplugB__Payload__PropertyValue SpPropertyValue;
typedef Oncebridge__SparkplugB__Payload__MetaData SpMetaData;

static const char *const type_names[] = {
	"Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float", "Double",
	"Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes", "File", "Template", "PropertySet",
	"PropertySetList", "Int8Array", "Int16Array", "Int32Array", "Int64Array", "UInt8Array", "UInt16Array",
	"UInt32Array", "UInt64Array", "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
};
#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))
enum { T_INT8 = 1, T_INT16, T_INT32, T_INT64, T_FLOAT = 9 };

/* --- the first pass --- */

struct walk {
	const uint8_t *data;
	size_t len;
	int max_depth;
	char *err;
	size_t errsize;
};

/* A varint at p (at most left bytes): its length, 0 when truncated or
 * longer than 10 bytes. */
static size_t
varint(const uint8_t *p, size_t left, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < left && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80))
			return i + 1;
	}
	return 0;
}

static bool
text_ok(const uint8_t *p, size_t len)
{
	for (size_t i = 0, n; i < len; i += n) {
		n = utf8_char_len(p + i, len - i);
		if (n == 0 || p[i] == 0)
			return false;
	}
	return true;
}

static int
walk_message(struct walk *w, const ProtobufCMessageDescriptor *d, size_t off, size_t end, int depth)
{
	if (depth > w->max_depth) {
		snprintf(w->err, w->errsize, "invalid Sparkplug B: nesting deeper than limits.max_json_depth (%d) at "
		    "offset %zu", w->max_depth, off);
		return -1;
	}
	while (off < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t key, n;
		size_t at = off, k = varint(w->data + off, end - off, &key);

		if (k == 0 || key >> 3 == 0 || key >> 3 > UINT32_MAX)
			goto bad;
		off += k;
		switch (key & 7) {
		case 0:
			k = varint(w->data + off, end - off, &n);
			if (k == 0)
				goto bad;
			off += k;
			break;
		case 1:
		case 5:
			if (end - off < ((key & 7) == 1 ? 8u : 4u))
				goto bad;
			off += (key & 7) == 1 ? 8 : 4;
			break;
		case 2:
			k = varint(w->data + off, end - off, &n);
			if (k == 0 || n > end - off - k)
				goto bad;
			off += k;
			f = protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    walk_message(w, f->descriptor, off, off + (size_t)n, depth + 1) < 0)
				return -1;
			if (f && f->type == PROTOBUF_C_TYPE_STRING && !text_ok(w->data + off, (size_t)n)) {
				snprintf(w->err, w->errsize, "invalid Sparkplug B: text field \"%s\" at offset %zu is not "
				    "valid UTF-8 or holds a NUL byte", f->name, at);
				return -1;
			}
			off += (size_t)n;
			break;
		default:
			goto bad;
		}
		continue;
bad:
		snprintf(w->err, w->errsize, "invalid Sparkplug B: malformed or truncated field at offset %zu", at);
		return -1;
	}
	return 0;
}

/* --- the value tree --- */

static struct json_object *
u64_value(uint64_t v)
{
	return v <= INT64_MAX ? json_object_new_int64((int64_t)v) : json_object_new_uint64(v);
}

static struct json_object *
type_name(uint32_t type)
{
	return type < N_TYPES ? json_object_new_string(type_names[type]) : NULL;
}

/* One scalar of a oneof whose members run int, long, float, double,
 * boolean, string from field number first: the same in every message. */
struct scalar {
	int kind; /* 0 int, 1 long, 2 float, 3 double, 4 boolean, 5 string, else none */
	uint64_t u;
	double d;
	bool b;
	const char *s;
};

#define SCALAR_OF(sc, msg, first) \
	do { \
		(sc).kind = (int)(msg)->value_case - (first); \
		switch ((sc).kind) { \
		case 0: (sc).u = (msg)->int_value; break; \
		case 1: (sc).u = (msg)->long_value; break; \
		case 2: (sc).d = (msg)->float_value; break; \
		case 3: (sc).d = (msg)->double_value; break; \
		case 4: (sc).b = (msg)->boolean_value; break; \
		case 5: (sc).s = (msg)->string_value; break; \
		default: (sc).kind = -1; \
		} \
	} while (0)

static struct json_object *
scalar_value(uint32_t type, const struct scalar *sc)
{
	switch (sc->kind) {
	case 0:
		if (type == T_INT8)
			return json_object_new_int((int8_t)sc->u);
		if (type == T_INT16)
			return json_object_new_int((int16_t)sc->u);
		if (type == T_INT32)
			return json_object_new_int((int32_t)sc->u);
		return json_object_new_int64((int64_t)(uint32_t)sc->u);
	case 1:
		return type == T_INT64 ? json_object_new_int64((int64_t)sc->u) : u64_value(sc->u);
	case 2:
		return decode_float_value((float)sc->d);
	case 3:
		return decode_double_value(sc->d);
	case 4:
		return json_object_new_boolean(sc->b);
	case 5:
		return decode_text_value(sc->s, strlen(sc->s));
	}
	return NULL;
}

static void
put(struct json_object *o, const char *key, struct json_object *v)
{
	json_object_object_add(o, key, v);
}

static struct json_object *property_set(const SpPropertySet *ps);

static struct json_object *
property_value(const SpPropertyValue *pv)
{
	struct scalar sc;
	struct json_object *arr;

	if (pv->has_is_null && pv->is_null)
		return NULL;
	if (pv->value_case == ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__PROPERTY_VALUE__VALUE_PROPERTYSET_VALUE)
		return property_set(pv->propertyset_value);
	if (pv->value_case == ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__PROPERTY_VALUE__VALUE_PROPERTYSETS_VALUE) {
		arr = json_object_new_array();
		for (size_t i = 0; i < pv->propertysets_value->n_propertyset; i++)
			json_object_array_add(arr, property_set(pv->propertysets_value->propertyset[i]));
		return arr;
	}
	SCALAR_OF(sc, pv, ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__PROPERTY_VALUE__VALUE_INT_VALUE);
	return scalar_value(pv->has_type ? pv->type : 0, &sc);
}

static struct json_object *
property_set(const SpPropertySet *ps)
{
	struct json_object *o = json_object_new_object();

	for (size_t i = 0; i < ps->n_keys && i < ps->n_values; i++)
		put(o, ps->keys[i], property_value(ps->values[i]));
	return o;
}

static struct json_object *
data_set(const SpDataSet *ds)
{
	struct json_object *o = json_object_new_object(), *cols = json_object_new_array();
	struct json_object *types = json_object_new_array(), *rows = json_object_new_array();

	if (ds->has_num_of_columns)
		put(o, "num_of_columns", u64_value(ds->num_of_columns));
	for (size_t i = 0; i < ds->n_columns; i++)
		json_object_array_add(cols, json_object_new_string(ds->columns[i]));
	for (size_t i = 0; i < ds->n_types; i++)
		json_object_array_add(types, type_name(ds->types[i]));
	for (size_t r = 0; r < ds->n_rows; r++) {
		struct json_object *row = json_object_new_array();

		for (size_t c = 0; c < ds->rows[r]->n_elements; c++) {
			struct scalar sc;

			SCALAR_OF(sc, ds->rows[r]->elements[c],
			    ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__DATA_SET__DATA_SET_VALUE__VALUE_INT_VALUE);
			json_object_array_add(row, scalar_value(c < ds->n_types ? ds->types[c] : 0, &sc));
		}
		json_object_array_add(rows, row);
	}
	put(o, "columns", cols);
	put(o, "types", types);
	put(o, "rows", rows);
	return o;
}

static struct json_object *metric(const SpMetric *m);

static struct json_object *
template_value(const SpTemplate *t)
{
	struct json_object *o = json_object_new_object(), *metrics = json_object_new_array();
	struct json_object *params = json_object_new_array();

	if (t->version)
		put(o, "version", json_object_new_string(t->version));
	if (t->template_ref)
		put(o, "template_ref", json_object_new_string(t->template_ref));
	if (t->has_is_definition)
		put(o, "is_definition", json_object_new_boolean(t->is_definition));
	for (size_t i = 0; i < t->n_metrics; i++)
		json_object_array_add(metrics, metric(t->metrics[i]));
	for (size_t i = 0; i < t->n_parameters; i++) {
		struct json_object *p = json_object_new_object();
		struct scalar sc;

		if (t->parameters[i]->name)
			put(p, "name", json_object_new_string(t->parameters[i]->name));
		if (t->parameters[i]->has_type)
			put(p, "type", type_name(t->parameters[i]->type));
		SCALAR_OF(sc, t->parameters[i], ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__TEMPLATE__PARAMETER__VALUE_INT_VALUE);
		put(p, "value", scalar_value(t->parameters[i]->has_type ? t->parameters[i]->type : 0, &sc));
		json_object_array_add(params, p);
	}
	put(o, "metrics", metrics);
	put(o, "parameters", params);
	return o;
}

static struct json_object *
metadata(const SpMetaData *md)
{
	struct json_object *o = json_object_new_object();

	if (md->has_is_multi_part)
		put(o, "is_multi_part", json_object_new_boolean(md->is_multi_part));
	if (md->content_type)
		put(o, "content_type", json_object_new_string(md->content_type));
	if (md->has_size)
		put(o, "size", u64_value(md->size));
	if (md->has_seq)
		put(o, "seq", u64_value(md->seq));
	if (md->file_name)
		put(o, "file_name", json_object_new_string(md->file_name));
	if (md->file_type)
		put(o, "file_type", json_object_new_string(md->file_type));
	if (md->md5)
		put(o, "md5", json_object_new_string(md->md5));
	if (md->description)
		put(o, "description", json_object_new_string(md->description));
	return o;
}

static struct json_object *
metric_value(const SpMetric *m)
{
	uint32_t type = m->has_datatype ? m->datatype : 0;
	struct scalar sc;

	if (m->has_is_null && m->is_null)
		return NULL;
	switch (m->value_case) {
	case ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__METRIC__VALUE_BYTES_VALUE:
		return decode_bytes_value(m->bytes_value.data, m->bytes_value.len);
	case ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__METRIC__VALUE_DATASET_VALUE:
		return data_set(m->dataset_value);
	case ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__METRIC__VALUE_TEMPLATE_VALUE:
		return template_value(m->template_value);
	default:
		SCALAR_OF(sc, m, ONCEBRIDGE__SPARKPLUG_B__PAYLOAD__METRIC__VALUE_INT_VALUE);
		return scalar_value(type, &sc);
	}
}

static struct json_object *
metric(const SpMetric *m)
{
	struct json_object *o = json_object_new_object();

	if (m->name)
		put(o, "name", json_object_new_string(m->name));
	if (m->has_alias)
		put(o, "alias", u64_value(m->alias));
	if (m->has_timestamp)
		put(o, "timestamp", u64_value(m->timestamp));
	if (m->has_datatype) {
		put(o, "datatype", json_object_new_int64(m->datatype));
		put(o, "datatype_name", type_name(m->datatype));
	}
	if (m->has_is_historical)
		put(o, "is_historical", json_object_new_boolean(m->is_historical));
	if (m->has_is_transient)
		put(o, "is_transient", json_object_new_boolean(m->is_transient));
	if (m->has_is_null)
		put(o, "is_null", json_object_new_boolean(m->is_null));
	put(o, "value", metric_value(m));
	if (m->properties)
		put(o, "properties", property_set(m->properties));
	if (m->metadata)
		put(o, "metadata", metadata(m->metadata));
	return o;
}

static struct json_object *
payload_tree(const SpPayload *p)
{
	struct json_object *o = json_object_new_object(), *metrics = json_object_new_array();

	if (p->has_timestamp)
		put(o, "timestamp", u64_value(p->timestamp));
	if (p->has_seq)
		put(o, "seq", u64_value(p->seq));
	if (p->uuid)
		put(o, "uuid", json_object_new_string(p->uuid));
	if (p->has_body)
		put(o, "body", decode_bytes_value(p->body.data, p->body.len));
	for (size_t i = 0; i < p->n_metrics; i++)
		json_object_array_add(metrics, metric(p->metrics[i]));
	put(o, "metrics", metrics);
	return o;
}

int
decode_sparkplug_b(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize)
{
	struct walk w = { (const uint8_t *)data, len, lim->max_json_depth > 0 ? lim->max_json_depth : 64, err,
		errsize };
	SpPayload *p;

	if (walk_message(&w, &oncebridge__sparkplug_b__payload__descriptor, 0, len, 1) < 0)
		return -1;
	p = oncebridge__sparkplug_b__payload__unpack(NULL, len, (const uint8_t *)data);
	if (p == NULL) {
		snprintf(err, errsize, "invalid Sparkplug B: protobuf-c could not decode the payload");
		return -1;
	}
	*out = payload_tree(p);
	oncebridge__sparkplug_b__payload__free_unpacked(p, NULL);
	return 0;
}
