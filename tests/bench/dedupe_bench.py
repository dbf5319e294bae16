"""Benchmark: dedupe insert throughput as processed_events grows. Fills
processed_events to 1 M and then 20 M rows (UUID-like event IDs, as
producers mint them) and measures, at each size, events per second through
the claim-and-apply transaction of a batched consumer (500 events per
transaction: multi-row INSERT ... ON CONFLICT DO NOTHING into
processed_events plus a multi-row business insert), with
tests/bench/pg_commit_ceiling. Not a pass/fail test; takes a few minutes
and about 3 GB of disk."""
import os
import subprocess
import sys
import time

import obtest

BENCH = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench")
SIZES = [int(x) for x in os.environ.get("BENCH_DEDUPE_SIZES", "1000000,20000000").split(",")]
MEASURE = int(os.environ.get("BENCH_COUNT", "100000"))


def fill(pg, upto):
    have = pg.scalar("SELECT count(*) FROM oncebridge.processed_events")
    step = 1000000
    t0 = time.time()
    while have < upto:
        n = min(step, upto - have)
        pg.execute("INSERT INTO oncebridge.processed_events (consumer, event_id, processed_at)"
                   " SELECT 'fill', md5(g::text || 'x')::uuid::text, now() - interval '1 day'"
                   " FROM generate_series(%s, %s) AS g", (have, have + n - 1))
        have += n
    pg.execute("VACUUM ANALYZE oncebridge.processed_events")
    return time.time() - t0


def main():
    b = obtest.Bridge("bench-dedupe", rabbit=False)
    b.start_servers()
    rows = []
    for size in SIZES:
        took = fill(b.pg, size)
        out = subprocess.run([os.path.join(BENCH, "pg_commit_ceiling"), b.pg.conninfo, "batch", str(MEASURE), "500"],
                             capture_output=True, text=True, timeout=900)
        rate = float(out.stdout.split()[2])
        mb = b.pg.scalar("SELECT pg_total_relation_size('oncebridge.processed_events') / 1048576")
        rows.append((size, rate, mb, took))
    print("machine: %d cores; %d events per measurement, 500 per transaction, fsync on" % (os.cpu_count(), MEASURE))
    print("%-28s %14s %14s" % ("processed_events rows", "events/s", "table+index MB"))
    for size, rate, mb, took in rows:
        print("%-28d %14.0f %14d" % (size, rate, mb))
    if len(rows) >= 2:
        print("change from %d to %d rows: %+.1f%%" % (rows[0][0], rows[-1][0], 100.0 * (rows[-1][1] / rows[0][1] - 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
