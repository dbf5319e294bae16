/* Unit tests of the metrics rendering (bridge/daemon/exposition.c): a fleet of
 * consumers, relays and the retention process, some retiring or without a
 * board slot, rendered line by line against the text Prometheus scrapes.
 * The expected text is the rendering as it was before the metric loops
 * became tables (but for the HELP of oncebridge_broker_connected, since
 * made protocol-neutral): names, HELP, TYPE and label order must not
 * change unnoticed. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

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

static struct child children[] = {
	{ .role = ROLE_CONSUMER, .name = "a", .broker = &brokers[0], .index = 0, .slot = 0, .pid = 101, .restarts = 2 },
	{ .role = ROLE_CONSUMER, .name = "a", .broker = &brokers[0], .index = 1, .slot = 1, .pid = 0, .restarts = 7 },
	{ .role = ROLE_CONSUMER, .name = "a", .broker = &brokers[0], .index = 2, .slot = -1, .pid = 103 },
	{ .role = ROLE_CONSUMER, .name = "a", .index = 3, .slot = 2, .pid = 104, .retiring = true },
	{ .role = ROLE_RELAY, .name = "out\nbox", .broker = &brokers[1], .index = 0, .slot = 3, .pid = 201,
	    .restarts = 1 },
	{ .role = ROLE_RELAY, .name = "out\nbox", .broker = &brokers[1], .index = 1, .slot = 4, .pid = 0 },
	{ .role = ROLE_RETENTION, .name = "", .index = 0, .slot = -1, .pid = 301, .restarts = 5 },
};

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
	for (size_t r = 0; r < CORE_STATS_ROUTES; r++) {
		st->routes[r].applied = base + 10 * r + 1;
		st->routes[r].duplicates = base + 10 * r + 2;
		st->routes[r].dead_letters = base + 10 * r + 3;
		st->routes[r].deferred = base + 10 * r + 4;
	}
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
	return tap_done();
}
