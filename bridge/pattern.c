/* Topic matching for routes: AMQP topic-exchange patterns and MQTT topic
 * filters, with the validity checks config -t uses. */
#include "config.h"

#include <string.h>

#include "bridge/pattern.h"

/* Length of the word at s, up to sep or end. */
static size_t
word_len(const char *s, char sep)
{
	const char *e = strchr(s, sep);

	return e ? (size_t)(e - s) : strlen(s);
}

static bool
amqp_match_words(const char *p, const char *k)
{
	for (;;) {
		size_t pl = word_len(p, '.');

		if (pl == 1 && p[0] == '#') {
			const char *prest = p[1] ? p + 2 : NULL;

			if (prest == NULL)
				return true; /* trailing # matches everything left */
			/* try '#' absorbing 0..n words; NULL means all of them */
			for (const char *kk = k;;) {
				if (amqp_match_words(prest, kk))
					return true;
				if (kk == NULL)
					return false;
				kk = strchr(kk, '.');
				kk = kk ? kk + 1 : NULL;
			}
		}
		if (k == NULL)
			return false;
		size_t kl = word_len(k, '.');
		if (!(pl == 1 && p[0] == '*') && (pl != kl || strncmp(p, k, pl) != 0))
			return false;
		p += pl;
		k += kl;
		if (*p == '\0')
			return *k == '\0';
		p++;
		k = *k ? k + 1 : NULL;
	}
}

bool
amqp_pattern_match(const char *pattern, const char *routing_key)
{
	return amqp_match_words(pattern, routing_key);
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
amqp_pattern_error(const char *pattern)
{
	for (const char *p = pattern; *p; p++) {
		if ((*p == '*' || *p == '#') && ((p > pattern && p[-1] != '.') || (p[1] && p[1] != '.')))
			return "\"*\" and \"#\" must occupy a whole word";
	}
	return NULL;
}
