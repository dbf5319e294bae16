/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the extraction a worker and oncebridge try share: limits,
 * event ID and parameters of one route, and what stays of a poison
 * message (its event ID, so that the dead letter claims it). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bridge/config/settings.h"
#include "bridge/core/extract.h"
#include "tests/unit/tap.h"

static const struct limits lim = { .max_payload = 64, .max_event_id_length = 16, .max_json_depth = 8,
	.max_topic_length = 64, .max_headers = 4 };

static void
route_init(struct route *r, const char *id, const char **params, size_t n)
{
	char *err = NULL;

	memset(r, 0, sizeof(*r));
	r->name = "r1";
	if (source_parse(id, true, &r->id_source, &err) < 0)
		abort();
	r->param_sources = calloc(n + 1, sizeof(struct source));
	r->n_params = n;
	for (size_t i = 0; i < n; i++)
		if (source_parse(params[i], false, &r->param_sources[i], &err) < 0)
			abort();
}

static void
route_free(struct route *r)
{
	source_free(&r->id_source);
	for (size_t i = 0; i < r->n_params; i++)
		source_free(&r->param_sources[i]);
	free(r->param_sources);
}

/* Extract payload for r: 0 or -1, with ex filled. */
static int
run(const struct route *r, const char *payload, struct extraction *ex)
{
	struct message m = { 0 };
	struct msg_view v;
	int rc;

	m.payload = payload;
	m.payload_len = strlen(payload);
	m.topic = "meters.7";
	m.topic_separator = '.';
	msg_view_init(&v, &m, "b1");
	rc = extract_route(r, &v, &lim, ex);
	msg_view_clear(&v);
	return rc;
}

int
main(void)
{
	const char *params[] = { "event_id", "json:n", "topic_level:2", "json:missing", "route" };
	struct route r;
	struct extraction ex;

	route_init(&r, "json:id", params, 5);
	is_int(run(&r, "{\"id\": \"e-1\", \"n\": 5}", &ex), 0, "a good payload extracts");
	is_str(ex.event_id, "e-1", "event ID");
	is_str(ex.values[0].data, "e-1", "$1 event_id");
	is_str(ex.values[1].data, "5", "$2 json:n");
	is_str(ex.values[2].data, "7", "$3 topic_level:2");
	ok(ex.values[3].data == NULL, "$4 a missing field is SQL NULL");
	is_str(ex.values[4].data, "r1", "$5 route");
	ok(ex.reason == NULL, "no reason");
	extraction_clear(&r, &ex);

	is_int(run(&r, "{\"id\": \"e-1\", ", &ex), -1, "invalid JSON is poison");
	ok(ex.reason && strncmp(ex.reason, "invalid JSON", 12) == 0 && ex.event_id == NULL, "reason, no event ID");
	extraction_clear(&r, &ex);
	is_int(run(&r, "{\"n\": 1}", &ex), -1, "no event ID is poison");
	is_str(ex.reason, "missing event ID", "reason");
	extraction_clear(&r, &ex);
	is_int(run(&r, "{\"id\": \"e-1\", \"n\": 1, \"pad\": \"................................................\"}", &ex),
	    -1, "a payload over limits.max_payload is poison");
	ok(ex.reason && strstr(ex.reason, "limits.max_payload") != NULL, "reason names the limit");
	extraction_clear(&r, &ex);
	is_int(run(&r, "{\"id\": \"e-2\", \"n\": \"a\\u0000b\"}", &ex), -1, "a NUL byte in a text parameter is poison");
	is_str(ex.event_id, "e-2", "the event ID stays, for the dead letter's claim");
	ok(ex.values == NULL && strstr(ex.reason, "$2 (json:n) contains a NUL byte") != NULL, "reason names the parameter");
	extraction_clear(&r, &ex);
	route_free(&r);
	return tap_done();
}
