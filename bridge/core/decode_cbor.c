/* SPDX-License-Identifier: Apache-2.0 */
/* The CBOR payload format (RFC 8949) through libcbor's streaming decoder:
 * each item's callback adds one json-c value to the tree being built, so
 * nothing is allocated for a length or count the payload only declares.
 * A container declaring more items than bytes are left, nesting deeper
 * than limits.max_json_depth, a text string that is not UTF-8 (or holds
 * NUL), a truncated or malformed item, a stray break or trailing data
 * make the payload poison, with the offset of the item. Tags are dropped
 * (the tagged value stays), undefined is null. */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <json-c/json.h>

#include "bridge/common/util.h"
#include "bridge/core/decode.h"
#include "bridge/core/source.h"

#define INDEFINITE UINT64_MAX

enum frame_kind { F_ARRAY, F_MAP, F_BYTES, F_TEXT };

struct frame {
	enum frame_kind kind;
	struct json_object *obj; /* F_ARRAY, F_MAP */
	uint64_t left;           /* items (map: pairs) still to come, or INDEFINITE */
	char *key;               /* F_MAP: the key whose value comes next */
	bool has_key;
	struct buf chunks;       /* F_BYTES, F_TEXT: an indefinite string so far */
};

struct cbor_build {
	struct frame *stack;
	int depth, max_depth;
	struct json_object *root;
	bool have_root, failed;
	size_t offset, len;      /* of the item being decoded; of the payload */
	char *err;
	size_t errsize;
};

static void __attribute__((format(printf, 2, 3)))
fail(struct cbor_build *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	b->failed = true;
	n = snprintf(b->err, b->errsize, "invalid CBOR: ");
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < b->errsize)
		vsnprintf(b->err + n, b->errsize - (size_t)n, fmt, ap);
	va_end(ap);
}

/* A complete value: into its container, or the root. */
static void
emit(struct cbor_build *b, struct json_object *v)
{
	while (!b->failed) {
		struct frame *f;

		if (b->depth == 0) {
			if (b->have_root)
				break; /* reported by the caller as trailing data */
			b->root = v;
			b->have_root = true;
			return;
		}
		f = &b->stack[b->depth - 1];
		if (f->kind == F_BYTES || f->kind == F_TEXT) {
			fail(b, "a chunk of an indefinite-length string is not a string of its type at offset %zu",
			    b->offset);
			break;
		}
		if (f->kind == F_MAP && !f->has_key) {
			f->key = decode_key_text(v);
			json_object_put(v);
			if (f->key == NULL) {
				fail(b, "map key ending at offset %zu is a map or an array", b->offset);
				return;
			}
			f->has_key = true;
			return;
		}
		if (f->kind == F_MAP) {
			json_object_object_add(f->obj, f->key, v);
			free(f->key);
			f->key = NULL;
			f->has_key = false;
		} else {
			json_object_array_add(f->obj, v);
		}
		if (f->left == INDEFINITE || --f->left > 0)
			return;
		v = f->obj;
		b->depth--;
	}
	if (!b->failed)
		fail(b, "trailing data at offset %zu", b->offset);
	json_object_put(v);
}

static void
push(struct cbor_build *b, enum frame_kind kind, uint64_t items)
{
	struct frame *f;

	if (b->failed)
		return;
	if (b->depth >= b->max_depth) {
		fail(b, "nesting deeper than limits.max_json_depth (%d) at offset %zu", b->max_depth, b->offset);
		return;
	}
	/* every item takes at least one byte: a count beyond the bytes left is a lie */
	if (items != INDEFINITE && items > (b->len - b->offset) / (kind == F_MAP ? 2 : 1)) {
		fail(b, "%s of %" PRIu64 " items at offset %zu is longer than the payload", kind == F_MAP ? "map" : "array",
		    items, b->offset);
		return;
	}
	if ((kind == F_ARRAY || kind == F_MAP) && items == 0) {
		emit(b, kind == F_MAP ? json_object_new_object() : json_object_new_array());
		return;
	}
	f = &b->stack[b->depth++];
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	f->left = items;
	if (kind == F_ARRAY)
		f->obj = json_object_new_array();
	else if (kind == F_MAP)
		f->obj = json_object_new_object();
}

static struct cbor_build *
ctx(void *p)
{
	return p;
}

static void
on_uint(struct cbor_build *b, uint64_t v)
{
	emit(b, v <= INT64_MAX ? json_object_new_int64((int64_t)v) : json_object_new_uint64(v));
}

/* the negative integer -1 - n */
static void
on_negint(struct cbor_build *b, uint64_t n)
{
	char text[32];

	if (n <= INT64_MAX) {
		emit(b, json_object_new_int64(-1 - (int64_t)n));
		return;
	}
	/* below INT64_MIN: exact as text, approximate as a double */
	if (n == UINT64_MAX)
		snprintf(text, sizeof(text), "-18446744073709551616");
	else
		snprintf(text, sizeof(text), "-%" PRIu64, n + 1);
	emit(b, json_object_new_double_s(-1.0 - (double)n, text));
}

static void cb_u8(void *p, uint8_t v) { on_uint(ctx(p), v); }
static void cb_u16(void *p, uint16_t v) { on_uint(ctx(p), v); }
static void cb_u32(void *p, uint32_t v) { on_uint(ctx(p), v); }
static void cb_u64(void *p, uint64_t v) { on_uint(ctx(p), v); }
static void cb_n8(void *p, uint8_t v) { on_negint(ctx(p), v); }
static void cb_n16(void *p, uint16_t v) { on_negint(ctx(p), v); }
static void cb_n32(void *p, uint32_t v) { on_negint(ctx(p), v); }
static void cb_n64(void *p, uint64_t v) { on_negint(ctx(p), v); }
static void cb_float(void *p, float v) { emit(ctx(p), decode_float_value(v)); }
static void cb_double(void *p, double v) { emit(ctx(p), decode_double_value(v)); }
static void cb_null(void *p) { emit(ctx(p), NULL); }
static void cb_bool(void *p, bool v) { emit(ctx(p), json_object_new_boolean(v)); }
static void cb_tag(void *p, uint64_t v) { (void)p, (void)v; }
static void cb_array(void *p, size_t n) { push(ctx(p), F_ARRAY, n); }
static void cb_map(void *p, size_t n) { push(ctx(p), F_MAP, n); }
static void cb_indef_array(void *p) { push(ctx(p), F_ARRAY, INDEFINITE); }
static void cb_indef_map(void *p) { push(ctx(p), F_MAP, INDEFINITE); }
static void cb_indef_bytes(void *p) { push(ctx(p), F_BYTES, INDEFINITE); }
static void cb_indef_text(void *p) { push(ctx(p), F_TEXT, INDEFINITE); }

static void
on_string(struct cbor_build *b, enum frame_kind kind, const unsigned char *data, size_t len)
{
	struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
	struct json_object *v;

	if (b->failed)
		return;
	if (f && f->kind == kind) { /* a chunk of an indefinite string */
		buf_append(&f->chunks, data, len);
		return;
	}
	if (kind == F_BYTES) {
		emit(b, decode_bytes_value(data, len));
		return;
	}
	v = decode_text_value((const char *)data, len);
	if (v == NULL)
		fail(b, "text string at offset %zu is not valid UTF-8 or holds a NUL byte", b->offset);
	else
		emit(b, v);
}

static void cb_bytes(void *p, cbor_data d, size_t n) { on_string(ctx(p), F_BYTES, d, n); }
static void cb_text(void *p, cbor_data d, size_t n) { on_string(ctx(p), F_TEXT, d, n); }

static void
cb_break(void *p)
{
	struct cbor_build *b = ctx(p);
	struct frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
	struct json_object *v;

	if (b->failed)
		return;
	if (f == NULL || f->left != INDEFINITE || (f->kind == F_MAP && f->has_key)) {
		fail(b, "unexpected break at offset %zu", b->offset);
		return;
	}
	b->depth--;
	if (f->kind == F_BYTES) {
		v = decode_bytes_value((const uint8_t *)(f->chunks.data ? f->chunks.data : ""), f->chunks.len);
	} else if (f->kind == F_TEXT) {
		v = decode_text_value(f->chunks.data ? f->chunks.data : "", f->chunks.len);
		if (v == NULL)
			fail(b, "indefinite-length text string ending at offset %zu is not valid UTF-8 or holds a NUL byte",
			    b->offset);
	} else {
		v = f->obj;
	}
	buf_free(&f->chunks);
	if (!b->failed)
		emit(b, v);
}

static const struct cbor_callbacks callbacks = {
	.uint8 = cb_u8, .uint16 = cb_u16, .uint32 = cb_u32, .uint64 = cb_u64,
	.negint8 = cb_n8, .negint16 = cb_n16, .negint32 = cb_n32, .negint64 = cb_n64,
	.byte_string_start = cb_indef_bytes, .byte_string = cb_bytes,
	.string_start = cb_indef_text, .string = cb_text,
	.indef_array_start = cb_indef_array, .array_start = cb_array,
	.indef_map_start = cb_indef_map, .map_start = cb_map,
	.tag = cb_tag, .float2 = cb_float, .float4 = cb_float, .float8 = cb_double,
	.undefined = cb_null, .null = cb_null, .boolean = cb_bool, .indef_break = cb_break,
};

static void
build_free(struct cbor_build *b)
{
	for (int i = 0; i < b->depth; i++) {
		json_object_put(b->stack[i].obj);
		free(b->stack[i].key);
		buf_free(&b->stack[i].chunks);
	}
	free(b->stack);
}

int
decode_cbor(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize)
{
	struct cbor_build b = { .len = len, .err = err, .errsize = errsize };
	size_t off = 0;

	b.max_depth = lim->max_json_depth > 0 ? lim->max_json_depth : 64;
	b.stack = xcalloc((size_t)b.max_depth, sizeof(struct frame));
	while (off < len && !b.failed) {
		struct cbor_decoder_result r;

		b.offset = off;
		r = cbor_stream_decode((cbor_data)data + off, len - off, &callbacks, &b);
		if (r.status == CBOR_DECODER_NEDATA)
			fail(&b, "unexpected end of input at offset %zu", off);
		else if (r.status == CBOR_DECODER_ERROR)
			fail(&b, "malformed item at offset %zu", off);
		else
			off += r.read;
	}
	if (!b.failed && b.depth > 0)
		fail(&b, "unexpected end of input at offset %zu", len);
	else if (!b.failed && !b.have_root)
		fail(&b, "empty payload");
	build_free(&b);
	if (b.failed) {
		json_object_put(b.root);
		return -1;
	}
	*out = b.root;
	return 0;
}
