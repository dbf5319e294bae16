/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the metrics rendering (bridge/daemon/exposition.c): a fleet of
 * consumers, relays and the retention process (with its count of dead
 * letters waiting), some retiring or without a board slot, rendered line
 * by line against the text Prometheus scrapes; then the build info and the
 * process metrics (bridge/daemon/exposition_process.c) of this very
 * process, whose values vary, checked by shape.
 * The expected text is the rendering as it was before the metric loops
 * became tables (but for the HELP of oncebridge_broker_connected, since
 * made protocol-neutral): names, HELP, TYPE and label order must not
 * change unnoticed. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/daemon/exposition.h"
#include "bridge/daemon/fleet.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"
#include "tests/unit/tap.h"

#include "tests/unit/exposition_expected.h"

static struct route routes_a[2] = { { .name = "r1" }, { .name = "r\"2\\" } };

static struct broker brokers[2] = {
	{ .name = "a", .routes = routes_a, .n_routes = 2 },
	{ .name = "out\nbox", .n_routes = 0, .outbox = true },
};

static struct settings settings = {
	.stall_timeout_ms = 0, /* every worker counts as stalled: the gauge shows 1 */
	.brokers = brokers,
	.n_brokers = 2,
};

static struct board_slot slots[6];
static struct core_route_stats route_slots[3][2];
static struct {
	struct dl_waiting_board board;
	struct dl_waiting rows[4]; /* routes r1, r"2\ and unrouted of broker a; unrouted of out\nbox */
} waiting;

static struct child children[] = {
	{ .role = ROLE_CONSUMER, .name = "a", .broker = &brokers[0], .index = 0, .slot = 0, .pid = 101, .restarts = 2 },
	{ .role = ROLE_CONSUMER, .name = "a", .broker = &brokers[0], .index = 1, .slot = 1, .pid = 0, .restarts = 7 },
	{ .role = ROLE_CONSUMER, .name = "a", .broker = &brokers[0], .index = 2, .slot = -1, .pid = 103 },
	{ .role = ROLE_CONSUMER, .name = "a", .index = 3, .slot = 2, .pid = 104, .retiring = true },
	{ .role = ROLE_RELAY, .name = "out\nbox", .broker = &brokers[1], .index = 0, .slot = 3, .pid = 201,
	    .restarts = 1 },
	{ .role = ROLE_RELAY, .name = "out\nbox", .broker = &brokers[1], .index = 1, .slot = 4, .pid = 0 },
	{ .role = ROLE_RETENTION, .name = "", .index = 0, .slot = 5, .pid = 301, .restarts = 5 },
};

static void
fill_routes(struct board_slot *slot, struct core_route_stats *routes, uint64_t base)
{
	slot->routes = routes;
	slot->n_routes = 2;
	for (size_t r = 0; r < 2; r++) {
		routes[r].applied = base + 10 * r + 1;
		routes[r].duplicates = base + 10 * r + 2;
		routes[r].dead_letters = base + 10 * r + 3;
		routes[r].deferred = base + 10 * r + 4;
		routes[r].last_applied_ms = r == 0 ? 1764400000000LL + (int64_t)base : 0;
	}
}

static void
fill_core(struct core_stats *st, uint64_t base)
{
	st->received = base + 1;
	st->applied = base + 2;
	st->duplicates = base + 3;
	st->dead_letters = base + 4;
	st->deferred = base + 5;
	st->batches = base + 6;
	st->transient_failures = base + 7;
	st->settled = base + 8;
	st->db_connected = true;
	st->broker_connected = base < 100;
	st->commit_us_sum = base * 1000 + 250;
	for (size_t k = 0; k <= CORE_LATENCY_BUCKETS; k++)
		st->commit_buckets[k] = base + k;
	for (size_t k = 0; k <= CORE_BATCH_BUCKETS; k++)
		st->batch_buckets[k] = base + 2 * k;
}

static void
fill(struct fleet *f)
{
	memset(f, 0, sizeof(*f));
	f->settings = &settings;
	f->children = children;
	f->n = sizeof(children) / sizeof(children[0]);
	f->board.n = sizeof(slots) / sizeof(slots[0]);
	f->board.slots = slots;
	fill_core(&slots[0].core, 10);
	fill_core(&slots[1].core, 1000);
	fill_core(&slots[2].core, 50000); /* retiring: not summed */
	fill_routes(&slots[0], route_slots[0], 10);
	fill_routes(&slots[1], route_slots[1], 1000);
	fill_routes(&slots[2], route_slots[2], 50000);
	waiting.board.n = 4;
	waiting.board.counted_ms = 1;
	for (int r = 0; r < 4; r++)
		for (int k = 0; k < DL_CLASSES; k++)
			waiting.rows[r].n[k] = 100 * r + k;
	slots[5].waiting = &waiting.board;
	slots[3].relay = (struct relay_stats){ .published = 11, .confirmed = 9, .unconfirmed = 2, .pending = 4,
		.oldest_ms = 1500, .active = true };
	slots[4].relay = (struct relay_stats){ .published = 3, .confirmed = 3, .pending = 6, .oldest_ms = 2250,
		.active = true };
}

/* Compare the rendering with the expected lines, one test point per line. */
static void
compare(const char *text)
{
	size_t n = sizeof(expected_metrics) / sizeof(expected_metrics[0]);
	const char *p = text;
	size_t i = 0;

	for (; i < n && *p; i++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char *line = xstrndup(p, len);

		is_str(line, expected_metrics[i], "line %zu", i + 1);
		free(line);
		p += len + (nl != NULL);
	}
	is_int(i, n, "as many lines as expected");
	ok(*p == '\0', "nothing after the last expected line");
}

/* oncebridge_build_info: one line, typed, with the version and libraries. */
static void
build_info(void)
{
	struct buf out = { 0 };

	exposition_build_info(&out);
	buf_append(&out, "", 1);
	ok(strncmp(out.data, "# HELP oncebridge_build_info ", 29) == 0, "build_info has a HELP line");
	ok(strstr(out.data, "# TYPE oncebridge_build_info gauge\n") != NULL, "build_info is a gauge");
	ok(strstr(out.data, "oncebridge_build_info{version=\"" PACKAGE_VERSION "\",libpq=\"") != NULL,
	    "build_info names the version and libpq's");
	ok(strstr(out.data, ",amqp_library=\"rabbitmq-c ") != NULL, "build_info names rabbitmq-c's version");
	ok(strstr(out.data, ",mqtt_library=\"paho-mqtt-c ") != NULL, "build_info names paho's version");
	ok(strstr(out.data, "} 1\n") != NULL, "build_info is 1");
	buf_free(&out);
}

/* Process metrics of this very process standing for the supervisor and a
 * worker; a child that is not running or retiring has no line. */
static void
processes(void)
{
	struct child kids[] = {
		{ .role = ROLE_CONSUMER, .name = "a", .index = 1, .slot = -1, .pid = getpid() },
		{ .role = ROLE_RETENTION, .name = "", .index = 0, .slot = -1, .pid = getpid() },
		{ .role = ROLE_RELAY, .name = "a", .index = 0, .slot = -1, .pid = 0 },
		{ .role = ROLE_CONSUMER, .name = "a", .index = 0, .slot = -1, .pid = getpid(), .retiring = true },
	};
	struct fleet f = { .settings = &settings, .children = kids, .n = 4 };
	struct buf out = { 0 };
	const char *names[] = { "oncebridge_process_resident_memory_bytes", "oncebridge_process_cpu_seconds_total",
		"oncebridge_process_open_fds", "oncebridge_process_max_fds", "oncebridge_process_start_time_seconds" };
	const char *labels[] = { "{role=\"supervisor\",index=\"0\"} ", "{role=\"worker\",broker=\"a\",index=\"1\"} ",
		"{role=\"retention\",index=\"0\"} " };

	exposition_process(&f, &out);
	buf_append(&out, "", 1);
	for (size_t k = 0; k < 5; k++) {
		char want[160];
		const char *p;
		size_t n = 0;

		snprintf(want, sizeof(want), "# TYPE %s %s\n", names[k], k == 1 ? "counter" : "gauge");
		ok(strstr(out.data, want) != NULL, "%s is typed", names[k]);
		for (size_t l = 0; l < 3; l++) {
			snprintf(want, sizeof(want), "\n%s%s", names[k], labels[l]);
			p = strstr(out.data, want);
			ok(p != NULL && strtod(p + strlen(want), NULL) > 0, "%s of %s is positive", names[k], labels[l]);
		}
		for (p = out.data; (p = strstr(p, "\noncebridge_process_")) != NULL; p++)
			if (strncmp(p + 1, names[k], strlen(names[k])) == 0 && p[1 + strlen(names[k])] == '{')
				n++;
		is_int(n, 3, "%s: one line per running process that is not retiring", names[k]);
	}
	buf_free(&out);
}

int
main(void)
{
	struct fleet f;
	struct buf out = { 0 };

	fill(&f);
	exposition_metrics(&f, &out);
	buf_append(&out, "", 1);
	if (getenv("EXPOSITION_PRINT")) {
		fputs(out.data, stdout);
		return 0;
	}
	compare(out.data);
	buf_free(&out);
	build_info();
	processes();
	return tap_done();
}
