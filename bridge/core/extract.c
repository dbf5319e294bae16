/* SPDX-License-Identifier: Apache-2.0 */
/* Extraction of one message for one route (bridge/core/extract.h): limits,
 * event ID, parameters, each from its source (bridge/core/source.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bridge/core/extract.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

void
extraction_clear(const struct route *r, struct extraction *ex)
{
	if (ex->values)
		for (size_t p = 0; p < r->n_params; p++)
			value_clear(&ex->values[p]);
	free(ex->values);
	free(ex->event_id);
	free(ex->reason);
	memset(ex, 0, sizeof(*ex));
}

/* Poison: the values go, the event ID (when extracted) stays, so that
 * the dead letter claims it. */
static int
poison(const struct route *r, struct extraction *ex, char *why)
{
	char *id = ex->event_id;

	ex->event_id = NULL;
	extraction_clear(r, ex);
	ex->event_id = id;
	ex->reason = why;
	return -1;
}

int
extract_route(const struct route *r, struct msg_view *v, const struct limits *lim, struct extraction *ex)
{
	const char *reason = NULL;
	char idbuf[1100];
	char *why = limits_check(lim, v->msg);

	memset(ex, 0, sizeof(*ex));
	if (why)
		return poison(r, ex, why);
	msg_view_format(v, r->format); /* the payload in the route's format (json, cbor, ...) */
	if (source_event_id(&r->id_source, v, lim, idbuf, sizeof(idbuf), &reason) < 0)
		return poison(r, ex, xstrdup(reason));
	ex->event_id = xstrdup(idbuf);
	ex->values = xcalloc(r->n_params + 1, sizeof(struct value));
	for (size_t p = 0; p < r->n_params; p++) {
		struct value *val = &ex->values[p];

		if (source_value(&r->param_sources[p], v, lim, r->name, ex->event_id, val, &reason) < 0)
			return poison(r, ex, xstrdup(reason));
		if (val->data && !val->binary && memchr(val->data, '\0', val->len))
			return poison(r, ex, xasprintf("parameter $%zu (%s) contains a NUL byte", p + 1,
			    r->param_sources[p].spec));
	}
	return 0;
}
