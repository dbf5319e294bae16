# SPDX-License-Identifier: Apache-2.0
"""Benchmark of processed_events at size: the core's claim statement
(INSERT ... ON CONFLICT of a batch of fresh random event IDs, one
transaction per batch, as bridge/core/db.c runs it) at 1M and at 20M rows, alone
and while retention prunes expired rows in batches of 5000 (the statement
of bridge/retention/retention.c). Prints claims/s and pruned rows/s per size. The
private PostgreSQL runs with its defaults (shared_buffers 128MB, fsync on).
Sizes: BENCH_SIZES (default "1000000,20000000"); seconds per phase:
BENCH_SECONDS (default 15). Not a pass/fail test."""
import os
import threading
import time
import uuid

import obtest

SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "1000000,20000000").split(",")]
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
BATCH = 500

# bridge/core/db.c SQL_DEDUPE and bridge/retention/retention.c SQL_PRUNE
DEDUPE = ("WITH input AS (SELECT c, e, o FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(c, e, o)),"
          " ins AS (INSERT INTO oncebridge.processed_events (consumer, event_id) SELECT c, e FROM input"
          " ON CONFLICT DO NOTHING RETURNING consumer, event_id)"
          " SELECT min(input.o) FROM input JOIN ins ON ins.consumer = input.c AND ins.event_id = input.e"
          " GROUP BY input.c, input.e")
PRUNE = ("DELETE FROM oncebridge.processed_events p USING (SELECT consumer, event_id FROM oncebridge.processed_events"
         " WHERE processed_at < now() - make_interval(secs => 604800) ORDER BY processed_at LIMIT 5000"
         " FOR UPDATE SKIP LOCKED) old WHERE p.consumer = old.consumer AND p.event_id = old.event_id")


generated = 0


def fill(pg, total):
    """total rows: random UUID-like keys over 14 days, half of them older
    than the 7-day window. Loaded without indexes, then indexed."""
    global generated
    have = pg.scalar("SELECT count(*) FROM oncebridge.processed_events")
    if have >= total:
        return 0.0
    t0 = time.monotonic()
    pg.execute("ALTER TABLE oncebridge.processed_events DROP CONSTRAINT processed_events_pkey")
    pg.execute("DROP INDEX oncebridge.processed_events_processed_at_idx")
    step = 2000000
    for start in range(have, total, step):
        n = min(step, total - start)
        pg.execute("INSERT INTO oncebridge.processed_events (consumer, event_id, processed_at)"
                   " SELECT 'route-' || (g %% 4), md5(g::text || 'x'), now() - (g %% 1209600) * interval '1 s'"
                   " FROM generate_series(%d, %d) g" % (generated + 1, generated + n))
        generated += n
    pg.execute("ALTER TABLE oncebridge.processed_events ADD PRIMARY KEY (consumer, event_id)")
    pg.execute("CREATE INDEX processed_events_processed_at_idx ON oncebridge.processed_events (processed_at)")
    pg.execute("VACUUM ANALYZE oncebridge.processed_events")
    return time.monotonic() - t0


def claims(pg, seconds, stop=None):
    conn = pg.connect(autocommit=False)
    cur = conn.cursor()
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds and not (stop and stop.is_set()):
        ids = [str(uuid.uuid4()) for _ in range(BATCH)]
        cur.execute(DEDUPE, (["route-0"] * BATCH, ids))
        cur.fetchall()
        conn.commit()
        n += BATCH
    conn.close()
    return n / (time.monotonic() - t0)


def pruner(pg, stop, out):
    conn = pg.connect(autocommit=True)
    cur = conn.cursor()
    n, t0 = 0, time.monotonic()
    while not stop.is_set():
        cur.execute(PRUNE)
        n += cur.rowcount
        if cur.rowcount < 5000:
            break
    out.append((n, time.monotonic() - t0))
    conn.close()


b = obtest.Bridge("retention-bench", rabbit=False)
b.start_servers()
rows = []
for size in SIZES:
    took = fill(b.pg, size)
    obtest.note("filled processed_events to %d rows in %.0f s" % (size, took))
    alone = claims(b.pg, SECONDS)
    stop, out = threading.Event(), []
    th = threading.Thread(target=pruner, args=(b.pg, stop, out))
    th.start()
    with_prune = claims(b.pg, SECONDS)
    stop.set()
    th.join()
    pruned, secs = out[0]
    rows.append((size, alone, with_prune, pruned / secs if secs else 0.0, pruned))
    obtest.note("%d rows: %.0f claims/s alone, %.0f while pruning %d rows at %.0f rows/s"
                % (size, alone, with_prune, pruned, pruned / secs if secs else 0.0))
print("%-12s %14s %22s %16s" % ("rows", "claims/s", "claims/s while pruning", "pruned rows/s"))
for size, alone, with_prune, prate, pruned in rows:
    print("%-12d %14.0f %22.0f %16.0f" % (size, alone, with_prune, prate))
