/* SPDX-License-Identifier: Apache-2.0 */
/* The MessagePack payload format through msgpack-c. msgpack-c allocates
 * each array and map for the count its header declares before reading a
 * single element, so a short hostile payload could ask for gigabytes: a
 * first pass (msgpack_bounds) walks the headers without allocating and
 * refuses a count larger than the bytes left, nesting deeper than
 * limits.max_json_depth, a truncated item or the unused type byte 0xc1,
 * each with its offset. Then msgpack_unpack_next decodes, and the object
 * becomes the value tree: bin as "\x..." text, ext as an object
 * {"type": N, "data": "\x..."}, str that is not UTF-8 (or holds NUL) is
 * poison. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <msgpack.h>

#include "bridge/common/util.h"
#include "bridge/core/decode.h"
#include "bridge/core/source.h"

/* Big-endian unsigned of n bytes at p. */
static uint64_t
be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Size of the item head at p (type byte and length fields), the bytes of
 * payload after the head (strings, bin, ext, numbers) and how many items
 * it contains (arrays; maps count keys and values). -1 for 0xc1. */
static int
item_head(uint8_t t, int *head, int *lenbytes, uint64_t *fixed, uint64_t *items)
{
	static const struct {
		uint8_t lo, hi;
		int head, lenbytes;
		uint64_t fixed;
	} table[] = {
		{ 0xc0, 0xc0, 1, 0, 0 }, { 0xc2, 0xc3, 1, 0, 0 },               /* nil, bool */
		{ 0xc4, 0xc4, 2, 1, 0 }, { 0xc5, 0xc5, 3, 2, 0 }, { 0xc6, 0xc6, 5, 4, 0 }, /* bin */
		{ 0xc7, 0xc7, 3, 1, 0 }, { 0xc8, 0xc8, 4, 2, 0 }, { 0xc9, 0xc9, 6, 4, 0 }, /* ext */
		{ 0xca, 0xca, 1, 0, 4 }, { 0xcb, 0xcb, 1, 0, 8 },               /* float */
		{ 0xcc, 0xcc, 1, 0, 1 }, { 0xcd, 0xcd, 1, 0, 2 }, { 0xce, 0xce, 1, 0, 4 }, { 0xcf, 0xcf, 1, 0, 8 },
		{ 0xd0, 0xd0, 1, 0, 1 }, { 0xd1, 0xd1, 1, 0, 2 }, { 0xd2, 0xd2, 1, 0, 4 }, { 0xd3, 0xd3, 1, 0, 8 },
		{ 0xd4, 0xd4, 2, 0, 1 }, { 0xd5, 0xd5, 2, 0, 2 }, { 0xd6, 0xd6, 2, 0, 4 }, { 0xd7, 0xd7, 2, 0, 8 },
		{ 0xd8, 0xd8, 2, 0, 16 },                                       /* fixext */
		{ 0xd9, 0xd9, 2, 1, 0 }, { 0xda, 0xda, 3, 2, 0 }, { 0xdb, 0xdb, 5, 4, 0 }, /* str */
	};

	*items = 0;
	*fixed = 0;
	*lenbytes = 0;
	*head = 1;
	if (t <= 0x7f || t >= 0xe0)
		return 0;
	if (t >= 0x80 && t <= 0x8f) {
		*items = 2 * (uint64_t)(t & 0x0f);
		return 0;
	}
	if (t >= 0x90 && t <= 0x9f) {
		*items = t & 0x0f;
		return 0;
	}
	if (t >= 0xa0 && t <= 0xbf) {
		*fixed = t & 0x1f;
		return 0;
	}
	if (t == 0xdc || t == 0xdd || t == 0xde || t == 0xdf) {
		*lenbytes = t == 0xdc || t == 0xde ? 2 : 4;
		*head = 1 + *lenbytes;
		return 1; /* array or map of a declared count */
	}
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (t >= table[i].lo && t <= table[i].hi) {
			*head = table[i].head;
			*lenbytes = table[i].lenbytes;
			*fixed = table[i].fixed;
			return 0;
		}
	return -1; /* 0xc1, never used */
}

/* The first pass: structure only, nothing allocated. */
static int
msgpack_bounds(const uint8_t *p, size_t len, int max_depth, char *err, size_t errsize)
{
	uint64_t *left = xcalloc((size_t)max_depth + 1, sizeof(uint64_t));
	int depth = 0, rc = -1;
	size_t off = 0;

	left[0] = 1; /* one value at the top */
	while (depth >= 0) {
		int head, lenbytes, kind;
		uint64_t fixed, items, body;

		if (left[depth] == 0) {
			depth--;
			continue;
		}
		if (off >= len) {
			snprintf(err, errsize, "invalid MessagePack: unexpected end of input at offset %zu", off);
			goto out;
		}
		kind = item_head(p[off], &head, &lenbytes, &fixed, &items);
		if (kind < 0) {
			snprintf(err, errsize, "invalid MessagePack: type byte 0xc1 at offset %zu", off);
			goto out;
		}
		if (len - off < (size_t)head) {
			snprintf(err, errsize, "invalid MessagePack: unexpected end of input at offset %zu", off);
			goto out;
		}
		body = fixed;
		if (kind == 1) {
			items = be(p + off + 1, lenbytes) * (p[off] >= 0xde ? 2 : 1);
		} else if (lenbytes) {
			body = be(p + off + 1, lenbytes);
		}
		left[depth]--;
		if (body > len - off - (size_t)head) {
			snprintf(err, errsize, "invalid MessagePack: item at offset %zu is longer than the payload", off);
			goto out;
		}
		if (items > len - off - (size_t)head) {
			snprintf(err, errsize, "invalid MessagePack: %s of %" PRIu64 " items at offset %zu is longer than "
			    "the payload", (p[off] & 0xf0) == 0x80 || p[off] >= 0xde ? "map" : "array", items, off);
			goto out;
		}
		off += (size_t)head + body;
		if (items > 0) {
			if (depth + 1 > max_depth) {
				snprintf(err, errsize, "invalid MessagePack: nesting deeper than limits.max_json_depth (%d) "
				    "at offset %zu", max_depth, off - (size_t)head);
				goto out;
			}
			left[++depth] = items;
		}
	}
	if (off != len) {
		snprintf(err, errsize, "invalid MessagePack: trailing data at offset %zu", off);
		goto out;
	}
	rc = 0;
out:
	free(left);
	return rc;
}

static struct json_object *to_value(const msgpack_object *o, const char *base, char *err, size_t errsize);

static struct json_object *
to_map(const msgpack_object_map *m, const char *base, char *err, size_t errsize)
{
	struct json_object *obj = json_object_new_object();

	for (uint32_t i = 0; i < m->size; i++) {
		struct json_object *k = to_value(&m->ptr[i].key, base, err, errsize), *v;
		char *key;

		if (err[0]) {
			json_object_put(obj);
			return NULL;
		}
		v = to_value(&m->ptr[i].val, base, err, errsize);
		if (err[0]) {
			json_object_put(k);
			json_object_put(obj);
			return NULL;
		}
		key = decode_key_text(k);
		if (key == NULL) {
			snprintf(err, errsize, "invalid MessagePack: a map key is a map or an array");
			json_object_put(k);
			json_object_put(v);
			json_object_put(obj);
			return NULL;
		}
		json_object_object_add(obj, key, v);
		free(key);
		json_object_put(k);
	}
	return obj;
}

/* err[0] is set on failure (a NULL result alone is JSON null). */
static struct json_object *
to_value(const msgpack_object *o, const char *base, char *err, size_t errsize)
{
	struct json_object *v, *arr;

	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return NULL;
	case MSGPACK_OBJECT_BOOLEAN:
		return json_object_new_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return o->via.u64 <= INT64_MAX ? json_object_new_int64((int64_t)o->via.u64)
		    : json_object_new_uint64(o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_object_new_int64(o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
		return decode_float_value((float)o->via.f64);
	case MSGPACK_OBJECT_FLOAT64:
		return decode_double_value(o->via.f64);
	case MSGPACK_OBJECT_STR:
		v = decode_text_value(o->via.str.ptr, o->via.str.size);
		if (v == NULL)
			snprintf(err, errsize, "invalid MessagePack: string at offset %td is not valid UTF-8 or holds a "
			    "NUL byte", o->via.str.ptr - base);
		return v;
	case MSGPACK_OBJECT_BIN:
		return decode_bytes_value((const uint8_t *)o->via.bin.ptr, o->via.bin.size);
	case MSGPACK_OBJECT_EXT:
		v = json_object_new_object();
		json_object_object_add(v, "type", json_object_new_int(o->via.ext.type));
		json_object_object_add(v, "data", decode_bytes_value((const uint8_t *)o->via.ext.ptr, o->via.ext.size));
		return v;
	case MSGPACK_OBJECT_ARRAY:
		arr = json_object_new_array();
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			v = to_value(&o->via.array.ptr[i], base, err, errsize);
			if (err[0]) {
				json_object_put(arr);
				return NULL;
			}
			json_object_array_add(arr, v);
		}
		return arr;
	case MSGPACK_OBJECT_MAP:
		return to_map(&o->via.map, base, err, errsize);
	}
	snprintf(err, errsize, "invalid MessagePack: unknown object type %d", (int)o->type);
	return NULL;
}

int
decode_msgpack(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize)
{
	msgpack_unpacked result;
	msgpack_unpack_return ret;
	size_t off = 0;
	int max_depth = lim->max_json_depth > 0 ? lim->max_json_depth : 64;

	err[0] = '\0';
	if (len == 0) {
		snprintf(err, errsize, "invalid MessagePack: empty payload");
		return -1;
	}
	if (msgpack_bounds((const uint8_t *)data, len, max_depth, err, errsize) < 0)
		return -1;
	msgpack_unpacked_init(&result);
	ret = msgpack_unpack_next(&result, data, len, &off);
	if (ret != MSGPACK_UNPACK_SUCCESS || off != len)
		snprintf(err, errsize, "invalid MessagePack: could not decode (msgpack-c status %d) at offset %zu",
		    (int)ret, off);
	else
		*out = to_value(&result.data, data, err, errsize);
	msgpack_unpacked_destroy(&result);
	if (err[0]) {
		json_object_put(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}
