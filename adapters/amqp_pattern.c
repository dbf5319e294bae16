/* SPDX-License-Identifier: Apache-2.0 */
/* AMQP topic-exchange patterns for routes, with the validity check
 * config -t uses, and the AMQP adapter's route matching hook. */
#include "config.h"

#include <string.h>

#include "adapters/amqp_cfg.h"
#include "adapters/amqp_pattern.h"

/* Length of the word at s, up to sep or end. */
static size_t
word_len(const char *s, char sep)
{
	const char *e = strchr(s, sep);

	return e ? (size_t)(e - s) : strlen(s);
}

static bool
amqpc_match_words(const char *p, const char *k)
{
	for (;;) {
		size_t pl = word_len(p, '.');

		if (pl == 1 && p[0] == '#') {
			const char *prest = p[1] ? p + 2 : NULL;

			if (prest == NULL)
				return true; /* trailing # matches everything left */
			/* try '#' absorbing 0..n words; NULL means all of them */
			for (const char *kk = k;;) {
				if (amqpc_match_words(prest, kk))
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
amqpc_pattern_match(const char *pattern, const char *routing_key)
{
	return amqpc_match_words(pattern, routing_key);
}

const char *
amqpc_pattern_error(const char *pattern)
{
	for (const char *p = pattern; *p; p++) {
		if ((*p == '*' || *p == '#') && ((p > pattern && p[-1] != '.') || (p[1] && p[1] != '.')))
			return "\"*\" and \"#\" must occupy a whole word";
	}
	return NULL;
}

const char *
amqpc_route_source(const struct route *r)
{
	return amqpc_route_cfg(r)->queue;
}

bool
amqpc_route_matches(const struct route *r, const struct message *m)
{
	const struct amqpc_route_cfg *rc = amqpc_route_cfg(r);
	const char *topic = m->topic ? m->topic : "";

	if (rc->queue && (m->source == NULL || strcmp(rc->queue, m->source) != 0))
		return false;
	if (rc->match && !amqpc_pattern_match(rc->match, topic))
		return false;
	return true;
}
