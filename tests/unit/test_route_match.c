/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of route matching as the core sees it: through each adapter's
 * route_matches hook on routes loaded from real configuration files (an
 * AMQP queue with a routing-key pattern, an MQTT topic filter, the null
 * adapter's source), and of the null adapter's own configuration: unknown
 * to the loader until a test registers it, its keys, check and hooks.
 * Writes its files into a temporary directory; needs no server. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/adapter.h"
#include "adapters/null.h"
#include "bridge/config/diag.h"
#include "bridge/config/settings.h"
#include "tests/unit/tap.h"

#define SQL "sql = \"SELECT $1\"; params = [\"event_id\"]; event_id = \"json:id\";"

static char dir[64];

static void
write_file(const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

static void
remove_file(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

static struct settings *
load(struct diag *d)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/main.conf", dir);
	memset(d, 0, sizeof(*d));
	return settings_load(path, d);
}

static bool
diag_has(const struct diag *d, const char *text)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->lines[i], text))
			return true;
	return false;
}

static const struct route *
route_named(const struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->n_routes; i++)
		if (strcmp(b->routes[i].name, name) == 0)
			return &b->routes[i];
	return NULL;
}

/* Whether route name of broker takes a message on topic from source. */
static bool
takes(const struct settings *s, const char *broker, const char *name, const char *source, const char *topic)
{
	const struct broker *b = settings_find_broker(s, broker);
	const struct route *r = b ? route_named(b, name) : NULL;
	struct message m;

	if (r == NULL) {
		printf("# no route \"%s\" in broker \"%s\"\n", name, broker);
		return false;
	}
	memset(&m, 0, sizeof(m));
	m.source = source;
	m.topic = topic;
	m.topic_separator = b->adapter->topic_separator;
	return b->adapter->route_matches(r, &m);
}

static void
write_brokers(void)
{
	write_file("main.conf", "database = { conninfo = \"dbname=none\"; };\ninclude_dir = \"conf.d\";\n");
	write_file("conf.d/10-amqp.conf",
	    "broker = { name = \"rabbit\"; type = \"amqp\"; url = \"amqp://127.0.0.1:1/\"; };\n"
	    "routes = ( { name = \"a_all\"; queue = \"q1\"; " SQL " },\n"
	    "  { name = \"a_meters\"; queue = \"q1\"; match = \"meters.*\"; " SQL " },\n"
	    "  { name = \"a_deep\"; queue = \"q2\"; match = \"meters.#\"; " SQL " } );\n");
	write_file("conf.d/20-mqtt.conf",
	    "broker = { name = \"mosq\"; type = \"mqtt\"; url = \"mqtt://127.0.0.1:1\"; client_id = \"t1\"; };\n"
	    "routes = ( { name = \"m_reading\"; topic = \"meters/+/reading\"; " SQL " },\n"
	    "  { name = \"m_shared\"; topic = \"$share/g/alarms/#\"; " SQL " } );\n");
	write_file("conf.d/30-null.conf",
	    "broker = { name = \"mem\"; type = \"null\"; url = \"null:\"; batch_size = 7; };\n"
	    "routes = ( { name = \"n_q1\"; source = \"q1\"; " SQL " },\n"
	    "  { name = \"n_any\"; " SQL " } );\n");
}

static void
test_unregistered(void)
{
	struct diag d;
	struct settings *s = load(&d);

	ok(s == NULL, "a broker of type \"null\" is an error while the null adapter is not registered");
	ok(diag_has(&d, "unknown broker type \"null\" (known: \"amqp\", \"mqtt\")"),
	    "the error names only the daemon's adapters");
	settings_free(s);
	diag_free(&d);
}

static void
test_amqp_mqtt(const struct settings *s)
{
	ok(takes(s, "rabbit", "a_all", "q1", "anything.at.all"), "amqp: a route without match takes all of its queue");
	ok(!takes(s, "rabbit", "a_all", "q2", "meters.x"), "amqp: a route does not take another queue's delivery");
	ok(!takes(s, "rabbit", "a_all", NULL, "meters.x"), "amqp: a route does not take a delivery without a queue");
	ok(takes(s, "rabbit", "a_meters", "q1", "meters.7"), "amqp: match \"meters.*\" takes meters.7");
	ok(!takes(s, "rabbit", "a_meters", "q1", "meters.7.x"), "amqp: match \"meters.*\" leaves meters.7.x");
	ok(takes(s, "rabbit", "a_deep", "q2", "meters.7.x"), "amqp: match \"meters.#\" takes meters.7.x");
	ok(!takes(s, "rabbit", "a_deep", "q1", "meters.7.x"), "amqp: match \"meters.#\" still needs its queue");
	ok(takes(s, "mosq", "m_reading", "meters/+/reading", "meters/3/reading"),
	    "mqtt: filter meters/+/reading takes meters/3/reading");
	ok(!takes(s, "mosq", "m_reading", "meters/+/reading", "meters/3/state"),
	    "mqtt: filter meters/+/reading leaves meters/3/state");
	ok(takes(s, "mosq", "m_shared", NULL, "alarms/a/b"), "mqtt: a shared subscription matches on its filter");
	ok(!takes(s, "mosq", "m_shared", NULL, "meters/3/reading"), "mqtt: a shared subscription leaves other topics");
}

static void
test_null(const struct settings *s)
{
	const struct broker *b = settings_find_broker(s, "mem");
	struct redelivery rd = { 0 };

	ok(b && b->adapter == &null_adapter, "a registered null adapter loads its broker");
	if (b == NULL)
		return;
	ok(takes(s, "mem", "n_q1", "q1", "x"), "null: a route with source takes messages from that source");
	ok(!takes(s, "mem", "n_q1", "q2", "x"), "null: a route with source leaves other sources");
	ok(!takes(s, "mem", "n_q1", NULL, "x"), "null: a route with source leaves messages without one");
	ok(takes(s, "mem", "n_any", NULL, "x"), "null: a route without source takes every message");
	is_int(b->adapter->topic_separator, '.', "null: topic levels are split at '.'");
	is_int(b->adapter->workers(b), 1, "null: one worker per broker");
	is_int(b->adapter->in_flight(b), 14, "null: in flight, a batch (batch_size 7) on each of two routes");
	b->adapter->redelivery(b, 0, &rd);
	is_str(rd.worker, "null:mem[0]", "null: the worker's identity names the broker");
	free(rd.worker);
}

/* Load with the null broker file text; whether it was refused with a
 * diagnostic holding want. */
static bool
refused_with(const char *text, const char *want)
{
	struct diag d;
	struct settings *s;
	bool found;

	write_file("conf.d/30-null.conf", text);
	s = load(&d);
	found = s == NULL && diag_has(&d, want);
	if (!found)
		diag_print(&d, stdout);
	settings_free(s);
	diag_free(&d);
	return found;
}

static void
test_null_check(void)
{
	ok(refused_with("broker = { name = \"mem\"; type = \"null\"; url = \"null:\"; batch_size = 0; };\n"
	    "routes = ( { name = \"n_q1\"; " SQL " } );\n", "key \"batch_size\""),
	    "null: batch_size below its minimum is an error");
	ok(refused_with("broker = { name = \"mem\"; type = \"null\"; url = \"null:\"; };\n"
	    "routes = ( { name = \"n_q1\"; queue = \"q1\"; " SQL " } );\n", "\"queue\""),
	    "null: the AMQP key \"queue\" is unknown in a null route");
	ok(refused_with("broker = { name = \"mem\"; type = \"null\"; url = \"amqp://x/\"; };\n"
	    "routes = ( { name = \"n_q1\"; " SQL " } );\n", "the null adapter takes \"null:\""),
	    "null: its check refuses another URL scheme");
}

int
main(void)
{
	struct diag d;
	struct settings *s;
	char sub[96];

	snprintf(dir, sizeof(dir), "/tmp/ob-route-match-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(sub, sizeof(sub), "%s/conf.d", dir);
	mkdir(sub, 0700);
	write_brokers();
	test_unregistered();
	null_register();
	s = load(&d);
	ok(s != NULL, "the three broker files load once the null adapter is registered");
	if (s == NULL)
		diag_print(&d, stdout);
	if (s) {
		test_amqp_mqtt(s);
		test_null(s);
	}
	settings_free(s);
	diag_free(&d);
	test_null_check();
	remove_file("conf.d/10-amqp.conf");
	remove_file("conf.d/20-mqtt.conf");
	remove_file("conf.d/30-null.conf");
	remove_file("main.conf");
	rmdir(sub);
	rmdir(dir);
	return tap_done();
}
