/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT topic filters for routes, with the validity check config -t
 * uses, and the MQTT adapter's route matching hook. */
#include "config.h"

#include <string.h>

#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_topic.h"

/* Length of the word at s, up to sep or end. */
static size_t
word_len(const char *s, char sep)
{
	const char *e = strchr(s, sep);

	return e ? (size_t)(e - s) : strlen(s);
}

static const char *
strip_share(const char *filter)
{
	if (strncmp(filter, "$share/", 7) == 0) {
		const char *rest = strchr(filter + 7, '/');

		return rest ? rest + 1 : filter;
	}
	return filter;
}

bool
mqtt_filter_match(const char *filter, const char *topic)
{
	const char *f = strip_share(filter), *t = topic;

	if (topic[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		size_t fl = word_len(f, '/');

		if (fl == 1 && f[0] == '#')
			return true;
		if (t == NULL)
			return false;
		size_t tl = word_len(t, '/');
		if (!(fl == 1 && f[0] == '+') && (fl != tl || strncmp(f, t, fl) != 0))
			return false;
		f += fl;
		t += tl;
		if (*f == '\0')
			return *t == '\0';
		f++;
		if (*t == '\0') {
			/* "a/#" matches "a": the rest of the filter must be exactly "#" */
			return strcmp(f, "#") == 0;
		}
		t++;
	}
}

const char *
mqtt_filter_error(const char *filter)
{
	const char *f = strip_share(filter);

	if (strncmp(filter, "$share/", 7) == 0 && (f == filter || f[-1] != '/' || f == filter + 8))
		return "a shared subscription must look like \"$share/GROUP/FILTER\"";
	if (*f == '\0')
		return "topic filter is empty";
	for (const char *p = f; *p; p++) {
		if (*p == '+' && ((p > f && p[-1] != '/') || (p[1] && p[1] != '/')))
			return "\"+\" must occupy a whole topic level";
		if (*p == '#' && ((p > f && p[-1] != '/') || p[1]))
			return "\"#\" must be the last topic level and occupy it whole";
	}
	return NULL;
}

const char *
mqtt_route_source(const struct route *r)
{
	return mqtt_route_cfg(r)->topic;
}

bool
mqtt_route_matches(const struct route *r, const struct message *m)
{
	const char *filter = mqtt_route_cfg(r)->topic;

	return filter == NULL || mqtt_filter_match(filter, m->topic ? m->topic : "");
}
