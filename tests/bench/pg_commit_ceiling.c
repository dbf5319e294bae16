/* Benchmark baselines on PostgreSQL alone, with the schema oncebridge uses:
 *
 *   single N: N transactions of one event each, every transaction
 *     (BEGIN, claim in processed_events, business insert, COMMIT) sent in
 *     one round trip with libpq's pipeline mode: the ceiling of one MQTT
 *     worker, which must commit each message before acking it;
 *   batch N B: N events in transactions of B events each (a multi-row
 *     claim with ON CONFLICT DO NOTHING and a multi-row business insert):
 *     the database ceiling of batched consumers.
 *
 * usage: pg_commit_ceiling CONNINFO single COUNT | batch COUNT BATCH
 * prints: "<events> <seconds> <events per second>" */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
	t0 = now();
	if (strcmp(argv[2], "single") == 0) {
		PQenterPipelineMode(conn);
		for (long i = 0; i < count; i++) {
			const char *v[2] = { id, n };

			snprintf(id, sizeof(id), "s-%ld-%ld", (long)t0, i);
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
		size_t cap = (size_t)batch * 40 + 16;
		char *arr = malloc(cap);

		for (long i = 0; i < count; i += batch) {
			size_t len = 0;
			const char *v[1] = { arr };

			arr[len++] = '{';
			for (long k = i; k < i + batch && k < count; k++)
				len += (size_t)snprintf(arr + len, cap - len, "%s\"b-%ld-%ld\"", k > i ? "," : "", (long)t0, k);
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
