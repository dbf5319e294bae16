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
the sizes, each size in its own PostgreSQL (kinds: BENCH_DEDUPE_KINDS,
default "random,ordered"). Then the server settings that
move the random case, each measured on the largest size in turns with the
smallest at its defaults: wal_compression = lz4 (smaller full-page
images after each checkpoint), and shared_buffers large enough for the
primary key (BENCH_DEDUPE_BUFFERS, default 2GB). Not a pass/fail test;
takes several minutes and about 6 GB of disk."""
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
KINDS = os.environ.get("BENCH_DEDUPE_KINDS", "random,ordered").split(",")
BUFFERS = os.environ.get("BENCH_DEDUPE_BUFFERS", "2GB")
LEVERS = [("wal_compression = lz4", ["wal_compression = lz4"]),
          ("shared_buffers = %s" % BUFFERS, ["wal_compression = off", "shared_buffers = '%s'" % BUFFERS])]

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


def wal_fpi(pg):
    return pg.scalar("SELECT wal_fpi FROM pg_stat_wal")


def turns(pgs, kind, rates, fpis):
    """One measurement per size, in order; full-page images per event."""
    for size, pg in pgs:
        f0 = wal_fpi(pg)
        rates[size].append(measure(pg, kind))
        fpis[size].append((wal_fpi(pg) - f0) / MEASURE)


def levers(pgs, rows):
    """The random case's largest size under each lever, in turns with the
    smallest at its defaults."""
    (small, pg_small), (big, pg_big) = pgs[0], pgs[-1]
    for label, settings in LEVERS:
        for setting in settings:
            pg_big.execute("ALTER SYSTEM SET " + setting)
        pg_big.stop()
        pg_big.start_again()
        rates, fpis = {small: [], big: []}, {small: [], big: []}
        for _ in range(ROUNDS):
            turns([(small, pg_small), (big, pg_big)], "random", rates, fpis)
        rows.append(("random", big, statistics.median(rates[big]),
                     pg_big.scalar("SELECT pg_relation_size('oncebridge.processed_events_pkey') / 1048576"),
                     rates[big], statistics.median(fpis[big]), label, statistics.median(rates[small])))


def main():
    rows = []
    for kind in KINDS:
        # one private PostgreSQL per size, measured in turns, so that the
        # disk's drift during the run weighs on every size alike
        pgs = []
        for size in SIZES:
            b = obtest.Bridge("bench-dedupe-%s-%d" % (kind, size), rabbit=False)
            b.start_servers()
            took = fill(b.pg, kind, size)
            obtest.note("%s: filled to %d rows in %.0f s" % (kind, size, took))
            pgs.append((size, b.pg))
        rates, fpis = {size: [] for size in SIZES}, {size: [] for size in SIZES}
        for _ in range(ROUNDS):
            turns(pgs, kind, rates, fpis)
        for size, pg in pgs:
            mb = pg.scalar("SELECT pg_relation_size('oncebridge.processed_events_pkey') / 1048576")
            rows.append((kind, size, statistics.median(rates[size]), mb, rates[size], statistics.median(fpis[size]),
                         "defaults", None))
        if kind == "random" and len(pgs) > 1:
            levers(pgs, rows)
        for size, pg in pgs:
            pg.stop()
    print("machine: %d cores; %d events per measurement, 500 per transaction, fsync on, shared_buffers 128MB"
          " unless said; the median of %d turns per size" % (os.cpu_count(), MEASURE, ROUNDS))
    print("%-10s %12s %-24s %10s %10s %10s %12s   %s" % ("event IDs", "rows", "settings", "events/s", "PK MB",
                                                      "FPI/event", "vs smallest", "turns"))
    for kind, size, rate, mb, turn, fpi, label, ref in rows:
        # a lever's row is compared with the smallest size at its defaults
        # measured in the same turns
        if ref is None:
            ref = [r for r in rows if r[0] == kind][0][2]
        print("%-10s %12d %-24s %10.0f %10d %10.2f %+11.1f%%   %s" % (kind, size, label, rate, mb, fpi,
                                                                   100.0 * (rate / ref - 1),
                                                                   " ".join("%.0f" % x for x in turn)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
