/* SPDX-License-Identifier: Apache-2.0 */
/* The JSON payload format: json-c's strict parser, UTF-8 checked, nesting
 * bounded by limits.max_json_depth, the whole payload one value. */
#include "config.h"

#include <stdio.h>

#include <json-c/json.h>

#include "bridge/core/decode.h"
#include "bridge/core/source.h"

int
decode_json(const char *data, size_t len, const struct limits *lim, struct json_object **out, char *err,
    size_t errsize)
{
	struct json_tokener *tok = json_tokener_new_ex(lim->max_json_depth > 0 ? lim->max_json_depth : 64);
	enum json_tokener_error jerr;
	struct json_object *obj;

	if (tok == NULL) {
		snprintf(err, errsize, "invalid JSON: out of memory");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, data, (int)len);
	jerr = json_tokener_get_error(tok);
	if (obj != NULL && jerr == json_tokener_success && json_tokener_get_parse_end(tok) != len) {
		snprintf(err, errsize, "invalid JSON: trailing data at offset %zu", json_tokener_get_parse_end(tok));
	} else if (obj == NULL || jerr != json_tokener_success) {
		if (jerr == json_tokener_continue)
			snprintf(err, errsize, "invalid JSON: unexpected end of input");
		else if (jerr == json_tokener_success)
			snprintf(err, errsize, "invalid JSON: empty payload");
		else
			snprintf(err, errsize, "invalid JSON: %s at offset %zu", json_tokener_error_desc(jerr),
			    json_tokener_get_parse_end(tok));
	} else {
		*out = obj;
		obj = NULL;
	}
	if (obj)
		json_object_put(obj);
	json_tokener_free(tok);
	return *out ? 0 : -1;
}
