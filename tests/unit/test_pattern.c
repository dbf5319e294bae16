/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of AMQP topic patterns and MQTT topic filters. */
#include "config.h"

#include "adapters/amqp_pattern.h"
#include "adapters/mqtt_topic.h"
#include "tests/unit/tap.h"

int
main(void)
{
	static const struct { const char *p, *k; bool want; } amqp[] = {
		{ "meters.#", "meters", true },
		{ "meters.#", "meters.a.b", true },
		{ "meters.*", "meters.a", true },
		{ "meters.*", "meters.a.b", false },
		{ "meters.*", "meters", false },
		{ "#", "", true },
		{ "#", "a.b.c", true },
		{ "*.b.#", "a.b", true },
		{ "*.b.#", "a.c", false },
		{ "a.#.z", "a.z", true },
		{ "a.#.z", "a.b.c.z", true },
		{ "a.#.z", "a.b.c", false },
		{ "#.z", "z", true },
		{ "a.b", "a.b", true },
		{ "a.b", "a.bc", false },
		{ "a.#.#", "a", true },
	};
	static const struct { const char *f, *t; bool want; } mqtt[] = {
		{ "meters/+/reading", "meters/7/reading", true },
		{ "meters/+/reading", "meters/7/x", false },
		{ "meters/#", "meters", true },
		{ "meters/#", "meters/a/b", true },
		{ "#", "a/b", true },
		{ "#", "$SYS/x", false },
		{ "+/x", "$SYS/x", false },
		{ "$SYS/#", "$SYS/x", true },
		{ "$share/g1/meters/+", "meters/3", true },
		{ "a/+", "a/", true },
		{ "a/+", "a", false },
		{ "a/b", "a/b/c", false },
	};

	for (size_t i = 0; i < sizeof(amqp) / sizeof(amqp[0]); i++)
		ok(amqpc_pattern_match(amqp[i].p, amqp[i].k) == amqp[i].want, "amqp \"%s\" %s \"%s\"", amqp[i].p,
		    amqp[i].want ? "matches" : "does not match", amqp[i].k);
	for (size_t i = 0; i < sizeof(mqtt) / sizeof(mqtt[0]); i++)
		ok(mqtt_filter_match(mqtt[i].f, mqtt[i].t) == mqtt[i].want, "mqtt \"%s\" %s \"%s\"", mqtt[i].f,
		    mqtt[i].want ? "matches" : "does not match", mqtt[i].t);

	ok(mqtt_filter_error("a/#/b") != NULL, "mqtt filter with # in the middle is invalid");
	ok(mqtt_filter_error("a/b+") != NULL, "mqtt filter with + inside a level is invalid");
	ok(mqtt_filter_error("$share/g/a/+") == NULL, "shared subscription filter is valid");
	ok(mqtt_filter_error("$share/g") != NULL, "shared subscription without filter is invalid");
	ok(mqtt_filter_error("") != NULL, "empty filter is invalid");
	ok(amqpc_pattern_error("a.#x") != NULL, "amqp pattern with # inside a word is invalid");
	ok(amqpc_pattern_error("a.*.#") == NULL, "amqp pattern a.*.# is valid");
	return tap_done();
}
