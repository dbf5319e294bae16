# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the AMQP path into PostgreSQL beside its ceilings, measured
in the same run with the same messages (200-byte JSON, 10 % duplicates,
persistent, fsync on):

* broker ceiling: a plain rabbitmq-c consumer with manual acks, no database
  (tests/bench/amqp_consume_ceiling.c);
* naive design: oncebridge with batch_size = 1, one transaction and one ack
  per message;
* oncebridge with its defaults (batches of 500, linger 20 ms).

For each oncebridge row: messages/s while draining a preloaded queue,
publish-to-COMMIT latency p50/p99 at half that rate, and the worker's peak
RSS. Not a pass/fail test."""
import json
import os
import random
import statistics
import subprocess
import sys
import time

import obtest
import oncetest as ot

CEILING = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench", "amqp_consume_ceiling")
PUBLISHER = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench", "amqp_publish_ceiling")
COUNT = int(os.environ.get("BENCH_COUNT", "40000"))
DUP = 0.10


def messages(n, prefix, t_field=False):
    rng = random.Random(5)
    out, ids = [], []
    pad = "x" * 120
    for i in range(n):
        e = "%s-%07d" % (prefix, i)
        ids.append(e)
        body = {"id": e, "n": i, "pad": pad}
        out.append({"exchange": "amq.topic", "routing_key": "bench.%s" % prefix, "body": json.dumps(body)})
        if rng.random() < DUP:
            out.append(dict(out[-1]))
    return ids, out


def drain_rate(b, route, n, started, timeout=600):
    """Events per second from the first applied event (start-up is not
    counted) until all n are applied; from started when the whole run was
    quicker than the first look."""
    c0 = ot.wait_until(lambda: obtest.applied_events(b.pg, route, "bench"), 120, interval=0.01, desc="first event")
    t0 = time.time()
    ot.wait_until(lambda: obtest.applied_events(b.pg, route, "bench") >= n, timeout, interval=0.05,
                  desc="%s drained" % route)
    return (n - c0) / (time.time() - t0) if c0 < n else n / (time.time() - started)


def latency(b, route, name, rate, seconds=float(os.environ.get("BENCH_SECONDS", "8"))):
    """Publish at rate msgs/s, each with its publish time in the payload,
    from the C publisher (a Python one would eat a core at this rate); the
    business SQL records COMMIT-side time minus publish time."""
    n = max(10, int(rate * seconds))
    out = subprocess.run([PUBLISHER, "127.0.0.1", str(b.rabbit.port), str(n), "200", "1000", "amq.topic",
                          "bench.lat." + name, "%.0f" % rate, "lat-" + route], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError("paced publisher failed: " + out.stderr)
    achieved = float(out.stdout.split()[2])
    ot.wait_until(lambda: obtest.applied_events(b.pg, route, "bench_lat") >= n, 120, interval=0.1, desc="latency run")
    lat = [r[0] for r in b.pg.execute("SELECT lat_ms FROM bench_lat WHERE route = %s", (route,))]
    return achieved, lat


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100.0))]


def run_bridge(b, name, batch_size, linger_ms, ids, msgs):
    queue = "q-" + name
    b.rabbit.declare_queue(queue, keys=["bench." + name, "bench.lat." + name])
    route = {"name": name, "queue": queue, "event_id": "json:id",
             "sql": "INSERT INTO bench (route, event_id, n) VALUES ($1, $2, $3)",
             "params": ["route", "event_id", "json:n"], "match": "bench." + name}
    lat_route = {"name": name + "-lat", "queue": queue, "event_id": "json:id", "match": "bench.lat." + name,
                 "sql": "INSERT INTO bench_lat (route, event_id, lat_ms)"
                        " VALUES ($1, $2, extract(epoch FROM clock_timestamp()) * 1000 - $3::float8 * 1000)",
                 "params": ["route", "event_id", "json:t"]}
    b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit", batch_size=batch_size, batch_linger_ms=linger_ms,
                                                      prefetch=max(1000, batch_size * 2)), [route, lat_route])],
                   log_level="warning")
    b.rabbit.publish_many(msgs)
    started = time.time()
    d = b.start()
    # events/s, and messages/s (duplicates included) to compare with the
    # ceiling, which drains the same kind of queue in messages/s
    rate = drain_rate(b, name, len(ids), started) * len(msgs) / len(ids)
    achieved, lat = latency(b, name + "-lat", name, rate / 2)
    rss = b.peak_rss_kb()
    d.terminate(timeout=30)
    obtest.ledger(b.pg, name, ids, table="bench")
    return rate, achieved, lat, rss


def main():
    b = obtest.Bridge("bench-amqp")
    b.start_servers()
    b.pg.execute("CREATE TABLE bench (route text, event_id text, n int)")
    b.pg.execute("CREATE TABLE bench_lat (route text, event_id text, lat_ms float8)")

    # two copies of the ceiling's queue, drained right before and right
    # after the oncebridge row: the broker's and the disk's speed drift
    ids, msgs = messages(COUNT, "ceiling")
    b.rabbit.declare_queue("q-ceiling", keys=["bench.ceiling"])
    b.rabbit.declare_queue("q-ceiling2", keys=["bench.ceiling"])
    b.rabbit.publish_many(msgs)

    def ceiling(queue):
        out = subprocess.run([CEILING, "127.0.0.1", str(b.rabbit.port), queue, str(len(msgs))],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError("ceiling consumer failed: " + out.stderr)
        return float(out.stdout.split()[2])

    naive_n = COUNT // 8
    ids, msgs_n = messages(naive_n, "naive")
    naive = run_bridge(b, "naive", 1, 0, ids, msgs_n)
    ids, msgs_b = messages(COUNT, "batched")
    before = ceiling("q-ceiling")
    batched = run_bridge(b, "batched", 500, 20, ids, msgs_b)
    after = ceiling("q-ceiling2")
    ceiling = (before + after) / 2

    print("machine: %d cores; %d events (naive: %d) of ~200 bytes, +%d%% duplicate messages, persistent, fsync on"
          % (os.cpu_count(), COUNT, naive_n, DUP * 100))
    print("rates are messages/s, duplicates included (events/s = messages/s / %.2f); latency: publish -> COMMIT"
          % (len(msgs_b) / len(ids)))
    print("ceiling: the mean of %.0f (right before the oncebridge row) and %.0f (right after)" % (before, after))
    print("%-42s %11s %13s %7s %10s %9s %9s %9s" % ("path", "ceiling/s", "oncebridge/s", "ratio", "at rate/s",
                                                     "p50 ms", "p99 ms", "peak RSS"))
    print("%-42s %11.0f" % ("AMQP broker ceiling (consume + ack, no DB)", ceiling))
    for label, (rate, achieved, lat, rss) in (("naive: commit + ack per message", naive),
                                              ("oncebridge AMQP -> PostgreSQL", batched)):
        print("%-42s %11.0f %13.0f %6.0f%% %10.0f %9.1f %9.1f %6d kB" % (
            label, ceiling, rate, 100 * rate / ceiling, achieved, statistics.median(lat), pct(lat, 99), rss))
    print("oncebridge / naive: %.1fx" % (batched[0] / naive[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
