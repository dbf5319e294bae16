/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark baselines on PostgreSQL alone, with the schema oncebridge uses:
 *
 *   single N: N transactions of one event each, every transaction
 *     (BEGIN, claim in processed_events, business insert, COMMIT) sent in
 *     one round trip with libpq's pipeline mode: the ceiling of one MQTT
 *     worker, which must commit each message before acking it;
 *   batch N B: N events in transactions of B events each (a multi-row
 *     claim with ON CONFLICT DO NOTHING and a multi-row business insert):
 *     the database ceiling of batched consumers. The event IDs are UUIDs,
 *     time-ordered like UUIDv7 by default, or random like UUIDv4 with a
 *     fifth argument "random" (they land all over the primary key).
 *
 * usage: pg_commit_ceiling CONNINFO single COUNT | batch COUNT BATCH [random|ordered]
 * prints: "<events> <seconds> <events per second>" */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
must(PGresult *res, const char *what)
{
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_SYNC) {
		fprintf(stderr, "%s: %s", what, PQresultErrorMessage(res));
		exit(1);
	}
	PQclear(res);
	return 0;
}

static void
drain(PGconn *conn, int queries)
{
	for (int q = 0; q < queries; q++) {
		PGresult *res;

		must(PQgetResult(conn), "query");
		while ((res = PQgetResult(conn)) != NULL)
			PQclear(res);
	}
	must(PQgetResult(conn), "sync");
}

/* A UUID in text form: 48 bits of milliseconds then random bits (the
 * layout of UUIDv7), or random bits only (UUIDv4). */
static void
uuid_text(char *out, size_t cap, bool ordered)
{
	struct timespec ts;
	uint64_t hi = ((uint64_t)random() << 32) ^ (uint64_t)random(), lo = ((uint64_t)random() << 32) ^ (uint64_t)random();

	if (ordered) {
		clock_gettime(CLOCK_REALTIME, &ts);
		hi = ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) << 16 | (0x7000 | (hi & 0x0fff));
	} else {
		hi = (hi & ~(uint64_t)0xf000) | 0x4000;
	}
	lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
	snprintf(out, cap, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(hi >> 32), (unsigned)(hi >> 16) & 0xffff,
	    (unsigned)hi & 0xffff, (unsigned)(lo >> 48), (unsigned long long)(lo & 0xffffffffffffULL));
}

int
main(int argc, char **argv)
{
	PGconn *conn;
	long count;
	double t0, t1;
	static char id[64], n[32];

	if (argc < 4) {
		fprintf(stderr, "usage: %s CONNINFO single COUNT | batch COUNT BATCH\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}
	count = atol(argv[3]);
	must(PQexec(conn, "CREATE TEMP TABLE ceiling_applied (event_id text, n int)"), "create");
	must(PQprepare(conn, "claim", "INSERT INTO oncebridge.processed_events (consumer, event_id) VALUES ('ceiling', $1)", 1, NULL), "prepare");
	must(PQprepare(conn, "apply", "INSERT INTO ceiling_applied (event_id, n) VALUES ($1, $2)", 2, NULL), "prepare");
	must(PQprepare(conn, "claim_many",
	    "INSERT INTO oncebridge.processed_events (consumer, event_id) SELECT 'ceiling', e FROM unnest($1::text[]) AS e"
	    " ON CONFLICT DO NOTHING", 1, NULL), "prepare");
	must(PQprepare(conn, "apply_many",
	    "INSERT INTO ceiling_applied (event_id, n) SELECT e, 1 FROM unnest($1::text[]) AS e", 1, NULL), "prepare");
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	t0 = now();
	if (strcmp(argv[2], "single") == 0) {
		PQenterPipelineMode(conn);
		for (long i = 0; i < count; i++) {
			const char *v[2] = { id, n };

			snprintf(id, sizeof(id), "s-%ld-%ld-%ld", (long)getpid(), (long)t0, i);
			snprintf(n, sizeof(n), "%ld", i);
			PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
			PQsendQueryPrepared(conn, "claim", 1, v, NULL, NULL, 0);
			PQsendQueryPrepared(conn, "apply", 2, v, NULL, NULL, 0);
			PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
			PQpipelineSync(conn);
			drain(conn, 4);
		}
	} else {
		long batch = argc > 4 ? atol(argv[4]) : 100;
		bool ordered = !(argc > 5 && strcmp(argv[5], "random") == 0);
		size_t cap = (size_t)batch * 40 + 16;
		char *arr = malloc(cap);

		for (long i = 0; i < count; i += batch) {
			size_t len = 0;
			const char *v[1] = { arr };

			arr[len++] = '{';
			for (long k = i; k < i + batch && k < count; k++) {
				char uuid[40];

				uuid_text(uuid, sizeof(uuid), ordered);
				len += (size_t)snprintf(arr + len, cap - len, "%s\"%s\"", k > i ? "," : "", uuid);
			}
			arr[len++] = '}';
			arr[len] = '\0';
			must(PQexec(conn, "BEGIN"), "begin");
			must(PQexecPrepared(conn, "claim_many", 1, v, NULL, NULL, 0), "claim");
			must(PQexecPrepared(conn, "apply_many", 1, v, NULL, NULL, 0), "apply");
			must(PQexec(conn, "COMMIT"), "commit");
		}
		free(arr);
	}
	t1 = now();
	printf("%ld %.3f %.0f\n", count, t1 - t0, (double)count / (t1 - t0));
	PQfinish(conn);
	return 0;
}
