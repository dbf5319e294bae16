/* SPDX-License-Identifier: Apache-2.0 */
/* The body of the payload-decoder fuzz targets (fuzz_cbor.c,
 * fuzz_msgpack.c, fuzz_sparkplug.c): each defines FUZZ_FORMAT and includes
 * this. Any input either decodes into a value tree whose JSON text stays
 * within a bound of the input's size, or is refused with a reason that
 * names the format; never a crash, a leak or an allocation the input only
 * declares. */
#ifndef ONCEBRIDGE_FUZZ_DECODE_H
#define ONCEBRIDGE_FUZZ_DECODE_H

#include <string.h>

#include <json-c/json.h>

#include "bridge/core/decode.h"
#include "bridge/core/source.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct limits lim = { .max_payload = 1 << 20, .max_json_depth = 32 };
	struct json_object *o = NULL;
	char err[160];

	if (payload_decode(FUZZ_FORMAT, (const char *)data, size, &lim, &o, err, sizeof(err)) == 0) {
		size_t len = 0;

		json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
		/* every item takes one byte or more, and its JSON text a bounded
		 * few times that (\u00XX escapes, 17-digit floats, field names) */
		fuzz_assert(len <= 64 + 40 * size);
		json_object_put(o);
	} else {
		fuzz_assert(o == NULL);
		fuzz_assert(strstr(err, "invalid ") == err);
	}
	return 0;
}

#endif
