/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the report of oncebridge check: exit status, the aligned
 * text and the JSON keys automation reads. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridge/config/report.h"
#include "tests/unit/tap.h"

/* What report_print (or, with json, report_print_json) writes, as a string (the caller frees it). */
static char *
printed(const struct report *r, bool json, int status)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (json)
		report_print_json(r, f, status);
	else
		report_print(r, f);
	fclose(f);
	return text;
}

int
main(void)
{
	struct report r = { 0 };
	struct json_object *doc, *checks, *first, *v;
	char *text;

	report_add(&r, CHECK_OK, "a", NULL, "fine %d", 1);
	is_int(report_status(&r, false), 0, "all ok: 0");
	is_int(report_status(&r, true), 0, "all ok, strict: 0");
	report_add(&r, CHECK_WARNING, "longer subject", "do this", "weak");
	is_int(report_status(&r, false), 0, "a warning: 0");
	is_int(report_status(&r, true), 1, "a warning, strict: 1");
	report_add(&r, CHECK_ERROR, "b", NULL, "broken");
	is_int(report_status(&r, false), 2, "an error: 2");
	is_int(report_status(&r, true), 2, "an error, strict: 2");

	text = printed(&r, false, 2);
	is_str(text, "ok       a               fine 1\n"
	             "warning  longer subject  weak; fix: do this\n"
	             "error    b               broken\n"
	             "3 checks: 1 ok, 1 warning, 1 error\n", "aligned text, the fix after the reason, a summary");
	free(text);

	text = printed(&r, true, 2);
	doc = json_tokener_parse(text);
	ok(doc != NULL, "--json output parses");
	ok(json_object_object_get_ex(doc, "checks", &checks) && json_object_array_length(checks) == 3,
	    "three checks");
	first = json_object_array_get_idx(checks, 1);
	ok(json_object_object_get_ex(first, "status", &v) && strcmp(json_object_get_string(v), "warning") == 0,
	    "status");
	ok(json_object_object_get_ex(first, "subject", &v) && strcmp(json_object_get_string(v), "longer subject") == 0,
	    "subject");
	ok(json_object_object_get_ex(first, "reason", &v) && strcmp(json_object_get_string(v), "weak") == 0, "reason");
	ok(json_object_object_get_ex(first, "fix", &v) && strcmp(json_object_get_string(v), "do this") == 0, "fix");
	ok(json_object_object_get_ex(json_object_array_get_idx(checks, 0), "fix", &v) && v == NULL,
	    "no fix: null");
	ok(json_object_object_get_ex(doc, "status", &v) && json_object_get_int(v) == 2, "status 2");
	ok(json_object_object_get_ex(doc, "summary", &v) && json_object_object_length(v) == 3, "summary of three counts");
	json_object_put(doc);
	free(text);
	report_free(&r);
	return tap_done();
}
