/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the endpoints of an AMQP broker (adapters/amqp_endpoints.c):
 * the "hosts" entries, what every node shares with the url, and the
 * rotation to the next node, against closed loopback ports. */
#include "config.h"

#include <string.h>

#include "adapters/amqp_cfg.h"
#include "adapters/amqp_endpoints.h"
#include "bridge/common/log.h"
#include "tests/unit/tap.h"

static void
test_host_syntax(void)
{
	static const struct { const char *spec; bool valid; } cases[] = {
		{ "rabbit2", true },
		{ "rabbit2.example:5673", true },
		{ "10.0.0.2:5672", true },
		{ "[::1]:5674", true },
		{ "[fe80::1]", true },
		{ "", false },
		{ ":5672", false },
		{ "rabbit2:", false },
		{ "rabbit2:0", false },
		{ "rabbit2:65536", false },
		{ "rabbit2:56x", false },
		{ "::1", false },
		{ "[::1", false },
		{ "[::1]5672", false },
		{ "amqp://rabbit2", false },
		{ "guest@rabbit2", false },
		{ "rabbit2/vhost", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ok((amqpc_host_error(cases[i].spec) == NULL) == cases[i].valid, "host \"%s\" is %s", cases[i].spec,
		    cases[i].valid ? "valid" : "refused");
}

static void
test_shared(void)
{
	char *hosts[] = { "rabbit2", "rabbit3:5673", "[::1]:5674", NULL };
	struct amqpc_broker_cfg c = { .heartbeat = 7, .hosts = hosts, .n_hosts = 3 };
	struct broker b = { .url = "amqps://ob@rabbit1.example/orders", .password = "pw", .connect_timeout_ms = 1234,
		.proto = &c };
	struct amqpc_endpoints e;

	is_str(amqpc_endpoints_init(&e, &b), NULL, "a url and three hosts are four endpoints");
	is_int(e.n, 4, "four endpoints");
	is_str(e.targets[0].host, "rabbit1.example", "the url's node comes first");
	is_int(e.targets[0].port, 5671, "amqps:// defaults to port 5671");
	is_str(e.targets[1].host, "rabbit2", "then the hosts in order");
	is_int(e.targets[1].port, 5671, "a host without a port has the url's");
	is_int(e.targets[2].port, 5673, "a host's own port");
	is_str(e.targets[3].host, "::1", "an IPv6 address without its brackets");
	is_int(e.targets[3].port, 5674, "and its port");
	for (size_t i = 1; i < e.n; i++) {
		ok(e.targets[i].tls == &b && strcmp(e.targets[i].vhost, "orders") == 0 &&
		    strcmp(e.targets[i].user, "ob") == 0 && strcmp(e.targets[i].password, "pw") == 0 &&
		    e.targets[i].heartbeat == 7 && e.targets[i].timeout_ms == 1234,
		    "node %zu shares TLS, vhost, user, password, heartbeat and timeout with the url", i + 1);
	}
	amqpc_endpoints_free(&e);

	hosts[1] = "amqp://rabbit3";
	ok(amqpc_endpoints_init(&e, &b) != NULL && e.n == 0 && e.targets == NULL, "an invalid host fails the whole list");
}

/* Ports 1, 2 and 3 of the loopback refuse connections. */
static void
test_rotation(void)
{
	char *hosts[] = { "127.0.0.1:2", "127.0.0.1:3", NULL };
	struct amqpc_broker_cfg c = { .hosts = hosts, .n_hosts = 2 };
	struct broker b = { .url = "amqp://127.0.0.1:1/", .connect_timeout_ms = 2000, .proto = &c };
	struct amqpc_endpoints e;

	amqpc_endpoints_init(&e, &b);
	is_int(amqpc_endpoints_current(&e)->port, 1, "the url's node is tried first");
	amqpc_endpoints_next(&e);
	is_int(amqpc_endpoints_current(&e)->port, 2, "after a loss, the next node");
	amqpc_endpoints_next(&e);
	amqpc_endpoints_next(&e);
	is_int(amqpc_endpoints_current(&e)->port, 1, "and around the list");
	e.cur = 2;
	ok(amqpc_endpoints_open(&e) == NULL, "no node answers");
	is_int(e.cur, 2, "a failed open went once around the list and starts there again");
	amqpc_endpoints_free(&e);
}

int
main(void)
{
	log_init("test_amqp_endpoints");
	test_host_syntax();
	test_shared();
	test_rotation();
	return tap_done();
}
