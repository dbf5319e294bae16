# SPDX-License-Identifier: Apache-2.0
"""Benchmark: dedupe throughput as processed_events grows. For each kind of
event ID (random, like UUIDv4, and time-ordered, like UUIDv7) it fills
processed_events of the consumer being measured to 1 M and then 20 M rows
and measures events per second through the claim-and-apply transaction of
a batched consumer (500 events per transaction: multi-row INSERT ... ON
CONFLICT DO NOTHING into processed_events plus a multi-row business
insert), with tests/bench/pg_commit_ceiling. PostgreSQL runs with its
defaults (shared_buffers 128MB, fsync on). Sizes: BENCH_DEDUPE_SIZES
(default "1000000,20000000"); events per measurement: BENCH_COUNT
(default 100000), measured BENCH_ROUNDS times (default 3) in turns across
the sizes, each size in its own PostgreSQL. Not a pass/fail test; takes
several minutes and about 6 GB of disk."""
import os
import statistics
import subprocess
import sys
import time

import obtest

BENCH = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench")
SIZES = [int(x) for x in os.environ.get("BENCH_DEDUPE_SIZES", "1000000,20000000").split(",")]
MEASURE = int(os.environ.get("BENCH_COUNT", "100000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

# UUID-shaped keys of the consumer pg_commit_ceiling claims for ("ceiling"):
# random ones from md5, or time-ordered ones whose first 48 bits count
# milliseconds up to an hour ago, as UUIDv7 producers mint them
KEYS = {
    "random": "md5(g::text || 'x')::uuid::text",
    "ordered": "(lpad(to_hex((extract(epoch FROM now())::bigint - 3600) * 1000 - %(total)d + g), 12, '0')"
               " || '7' || substr(md5(g::text), 1, 19))::uuid::text",
}


def fill(pg, kind, upto):
    """Add rows up to upto, without the primary key while loading (then
    built once), as a restore would."""
    have = pg.scalar("SELECT count(*) FROM oncebridge.processed_events")
    if have >= upto:
        return 0.0
    t0 = time.time()
    pg.execute("ALTER TABLE oncebridge.processed_events DROP CONSTRAINT processed_events_pkey")
    step = 2000000
    while have < upto:
        n = min(step, upto - have)
        pg.execute("INSERT INTO oncebridge.processed_events (consumer, event_id, processed_at)"
                   " SELECT 'ceiling', " + KEYS[kind] % {"total": SIZES[-1]} + ", now() - interval '1 hour'"
                   " FROM generate_series(%s, %s) AS g", (have, have + n - 1))
        have += n
    pg.execute("ALTER TABLE oncebridge.processed_events ADD PRIMARY KEY (consumer, event_id)")
    pg.execute("VACUUM ANALYZE oncebridge.processed_events")
    return time.time() - t0


def measure(pg, kind):
    out = subprocess.run([os.path.join(BENCH, "pg_commit_ceiling"), pg.conninfo, "batch", str(MEASURE), "500", kind],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError("pg_commit_ceiling failed: " + out.stderr)
    return float(out.stdout.split()[2])


def main():
    rows = []
    for kind in ("random", "ordered"):
        # one private PostgreSQL per size, measured in turns, so that the
        # disk's drift during the run weighs on every size alike
        pgs = []
        for size in SIZES:
            b = obtest.Bridge("bench-dedupe-%s-%d" % (kind, size), rabbit=False)
            b.start_servers()
            took = fill(b.pg, kind, size)
            obtest.note("%s: filled to %d rows in %.0f s" % (kind, size, took))
            pgs.append((size, b.pg))
        rates = {size: [] for size in SIZES}
        for _ in range(ROUNDS):
            for size, pg in pgs:
                rates[size].append(measure(pg, kind))
        for size, pg in pgs:
            mb = pg.scalar("SELECT pg_relation_size('oncebridge.processed_events_pkey') / 1048576")
            rows.append((kind, size, statistics.median(rates[size]), mb, rates[size]))
            pg.stop()
    print("machine: %d cores; %d events per measurement, 500 per transaction, fsync on, shared_buffers 128MB;"
          " the median of %d turns per size" % (os.cpu_count(), MEASURE, ROUNDS))
    print("%-10s %22s %12s %16s %12s   %s" % ("event IDs", "processed_events rows", "events/s", "primary key MB",
                                              "vs smallest", "turns"))
    for kind, size, rate, mb, turns in rows:
        first = [r for r in rows if r[0] == kind][0]
        print("%-10s %22d %12.0f %16d %+11.1f%%   %s" % (kind, size, rate, mb, 100.0 * (rate / first[2] - 1),
                                                         " ".join("%.0f" % x for x in turns)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
