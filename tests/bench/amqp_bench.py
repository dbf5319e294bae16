# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the AMQP path into PostgreSQL beside its ceilings, measured
in the same run with the same messages (200-byte JSON, 10 % duplicates,
persistent, fsync on):

* broker ceiling: a plain rabbitmq-c consumer with manual acks, no database
  (tests/bench/amqp_consume_ceiling.c);
* naive design: oncebridge with batch_size = 1, one transaction and one ack
  per message;
* oncebridge with its defaults (batches of 500, linger 20 ms).

The ceiling and oncebridge are measured in turns, BENCH_ROUNDS times
(default 3): each round publishes the same messages twice, once into the
ceiling's queue and once into oncebridge's (two publishes, not one routed
to both: RabbitMQ shares the body of a message routed to two queues, and
the second consumer to read it then finds it in memory, 62 000 against
21 000 msgs/s for the ceiling itself), waits until RabbitMQ is idle, then
drains both, the ceiling first in even rounds and oncebridge first in odd
ones (after a warm-up drain that is not counted); each round's ratio is oncebridge over its own ceiling, and the
medians are printed. Then publish-to-COMMIT latency p50/p99 at
half the median rate, the worker's peak RSS, and where the cores went: CPU
microseconds per message of each process group (tests/bench/cpuacct.py),
for the ceiling and for oncebridge. Not a pass/fail test."""
import json
import os
import random
import statistics
import subprocess
import sys
import time

import cpuacct
import obtest
import oncetest as ot

CEILING = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench", "amqp_consume_ceiling")
PUBLISHER = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench", "amqp_publish_ceiling")
COUNT = int(os.environ.get("BENCH_COUNT", "40000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
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


def drain_rate(b, route, n, started, timeout=600, cpu=None):
    """Events per second from the first applied event (start-up is not
    counted) until all n are applied; from started when the whole run was
    quicker than the first look. With cpu (a dict), the CPU per event of
    each process group over the same span goes into it."""
    c0 = ot.wait_until(lambda: obtest.applied_events(b.pg, route, "bench"), 120, interval=0.01, desc="first event")
    t0 = time.time()
    backends = [r[0] for r in b.pg.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'oncebridge/%'")]
    s0 = cpuacct.sample(b.dir, backends)
    ot.wait_until(lambda: obtest.applied_events(b.pg, route, "bench") >= n, timeout, interval=0.05,
                  desc="%s drained" % route)
    if cpu is not None and c0 < n:
        cpu.update(cpuacct.per_message(s0, cpuacct.sample(b.dir, backends), n - c0))
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


def settle(b, timeout=60, idle=float(os.environ.get("BENCH_IDLE_S", "4"))):
    """Let a backlog sit idle for idle seconds, as one does while its
    consumer is away, so that the ceiling's and oncebridge's start alike,
    then wait until RabbitMQ used under 5 % of a core for half a second."""
    time.sleep(idle)
    deadline = time.time() + timeout
    last = cpuacct.sample(b.dir).get("RabbitMQ", 0.0)
    while time.time() < deadline:
        time.sleep(0.5)
        now = cpuacct.sample(b.dir).get("RabbitMQ", 0.0)
        if now - last < 0.025:
            return
        last = now


def run_bridge(b, name, batch_size, linger_ms, ids, msgs, lat_rate=None, preloaded=False):
    """Drain msgs through oncebridge (published here unless preloaded);
    with lat_rate, then measure latency at that rate. Returns messages/s,
    (achieved rate, latencies) or None, peak RSS, and CPU microseconds per
    message by process group."""
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
    if not preloaded:
        b.rabbit.publish_many(msgs)
    settle(b)
    started = time.time()
    d = b.start()
    # messages/s, duplicates included, to compare with the ceiling, which
    # drains the same kind of queue; CPU per message likewise
    cpu = {}
    per_event = len(msgs) / len(ids)
    rate = drain_rate(b, name, len(ids), started, cpu=cpu) * per_event
    cpu = {k: v / per_event for k, v in cpu.items()}
    lat = latency(b, name + "-lat", name, lat_rate) if lat_rate else None
    rss = b.peak_rss_kb()
    d.terminate(timeout=30)
    obtest.ledger(b.pg, name, ids, table="bench")
    return rate, lat, rss, cpu


def main():
    b = obtest.Bridge("bench-amqp")
    b.start_servers()
    b.pg.execute("CREATE TABLE bench (route text, event_id text, n int)")
    b.pg.execute("CREATE TABLE bench_lat (route text, event_id text, lat_ms float8)")

    ceiling_cpu = {}

    def ceiling(queue, n):
        settle(b)
        s0 = cpuacct.sample(b.dir)
        out = subprocess.run([CEILING, "127.0.0.1", str(b.rabbit.port), queue, str(n)],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError("ceiling consumer failed: " + out.stderr)
        for k, v in cpuacct.per_message(s0, cpuacct.sample(b.dir), n).items():
            ceiling_cpu.setdefault(k, []).append(v)
        return float(out.stdout.split()[2])

    naive_n = COUNT // 8
    ids, msgs_n = messages(naive_n, "naive")
    naive = run_bridge(b, "naive", 1, 0, ids, msgs_n, lat_rate=None)
    # a warm-up, not counted: the first backlog a fresh RabbitMQ drains goes
    # up to three times faster than any later one (its message store has
    # nothing to collect yet), which would favour whoever comes first
    ids, msgs_w = messages(COUNT, "warmup")
    b.rabbit.declare_queue("q-warmup", keys=["bench.warmup"])
    b.rabbit.publish_many(msgs_w)
    warmup = ceiling("q-warmup", len(msgs_w))
    ceiling_cpu.clear()
    ceilings, rates, cpus, rss = [], [], [], 0
    for r in range(ROUNDS):
        name = "batched%d" % r
        ids, msgs_b = messages(COUNT, name)
        # the same messages, published once for each queue
        b.rabbit.declare_queue("q-" + name, keys=["bench." + name, "bench.lat." + name])
        b.rabbit.declare_queue("q-ceiling%d" % r, keys=["bench.ceiling%d" % r])
        b.rabbit.publish_many([dict(m, routing_key="bench.ceiling%d" % r) for m in msgs_b])
        b.rabbit.publish_many(msgs_b)
        if r % 2 == 0:
            ceilings.append(ceiling("q-ceiling%d" % r, len(msgs_b)))
        rate, _, peak, cpu = run_bridge(b, name, 500, 20, ids, msgs_b, preloaded=True)
        if r % 2 == 1:
            ceilings.append(ceiling("q-ceiling%d" % r, len(msgs_b)))
        rates.append(rate)
        cpus.append(cpu)
        rss = max(rss, peak)
    ratios = [rates[r] / ceilings[r] for r in range(ROUNDS)]
    rate, ceil = statistics.median(rates), statistics.median(ceilings)
    ids, msgs_l = messages(max(10, COUNT // 10), "latency")
    _, (achieved, lat), _, _ = run_bridge(b, "latency", 500, 20, ids, msgs_l, lat_rate=rate / 2)
    ids, msgs_nl = messages(10, "naivelat")
    _, (n_achieved, n_lat), _, _ = run_bridge(b, "naivelat", 1, 0, ids, msgs_nl, lat_rate=naive[0] / 2)

    print("machine: %d cores; %d events (naive: %d) of ~200 bytes, +%d%% duplicate messages, persistent, fsync on"
          % (os.cpu_count(), COUNT, naive_n, DUP * 100))
    print("rates are messages/s, duplicates included (events/s = messages/s / %.2f); latency: publish -> COMMIT"
          % (len(msgs_b) / COUNT))
    print("%d rounds in turns after a warm-up drain (%.0f/s, not counted); ceilings %s; oncebridge %s; ratios %s" % (
        ROUNDS, warmup, " ".join("%.0f" % c for c in ceilings), " ".join("%.0f" % x for x in rates),
        " ".join("%.0f%%" % (100 * x) for x in ratios)))
    print("%-42s %11s %13s %7s %10s %9s %9s %9s" % ("path", "ceiling/s", "oncebridge/s", "ratio", "at rate/s",
                                                     "p50 ms", "p99 ms", "peak RSS"))
    print("%-42s %11.0f" % ("AMQP broker ceiling (consume + ack, no DB)", ceil))
    print("%-42s %11.0f %13.0f %6.0f%% %10.0f %9.1f %9.1f %6d kB" % (
        "naive: commit + ack per message", ceil, naive[0], 100 * naive[0] / ceil, n_achieved,
        statistics.median(n_lat), pct(n_lat, 99), naive[2]))
    print("%-42s %11.0f %13.0f %6.0f%% %10.0f %9.1f %9.1f %6d kB" % (
        "oncebridge AMQP -> PostgreSQL (median)", ceil, rate, 100 * statistics.median(ratios), achieved,
        statistics.median(lat), pct(lat, 99), rss))
    print("oncebridge / naive: %.1fx" % (rate / naive[0]))
    med = {k: statistics.median(v) for k, v in ceiling_cpu.items()}
    print("CPU us per message, ceiling:    %s" % cpuacct.fmt(med))
    keys = set().union(*cpus)
    med = {k: statistics.median([c.get(k, 0.0) for c in cpus]) for k in keys}
    print("CPU us per message, oncebridge: %s" % cpuacct.fmt(med))
    return 0


if __name__ == "__main__":
    sys.exit(main())
