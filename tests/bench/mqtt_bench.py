# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the MQTT path into PostgreSQL beside its ceilings, measured
in the same run (JSON payloads, 10 % duplicates, QoS 1, fsync on):

* broker ceiling: a plain paho MQTTAsync QoS 1 subscriber draining a
  persistent session, no database (tests/bench/mqtt_drain_ceiling.c);
* PostgreSQL batch ceilings: events per second at 1/10/100/1000 events
  per transaction;
* group commit: oncebridge with N = 1, 2, 4, 8 workers on one $share
  group draining a backlog, each beside PostgreSQL's own ceiling for N
  clients at once, each committing one transaction per event in one round
  trip (tests/bench/pg_commit_ceiling single, N processes), which bounds N
  workers since paho forces a commit per message; interleaved (ceiling,
  oncebridge, ceiling, ...) for BENCH_ROUNDS rounds, medians reported,
  without and with commit_delay/commit_siblings set on the server;
* out of the box: BENCH_OOB_COUNT (20 000) QoS 1 messages into one table
  with the default broker file (no "workers": 4 on $share/);
* publish -> COMMIT latency of one worker at half its rate.
Every oncebridge run ends with its exactly-once ledger. Not a pass/fail
test.

Environment: BENCH_COUNT (events per group-commit run, 4000),
BENCH_WORKERS ("1,2,4,8"), BENCH_ROUNDS (3), BENCH_COMMIT_DELAY (microseconds,
"off,1000"; "off" is the server default, commit_delay 0), BENCH_COMMIT_SIBLINGS
(1), BENCH_OOB_COUNT (20000), BENCH_SECONDS (8, the latency run)."""
import json
import os
import random
import statistics
import subprocess
import sys
import time

import obtest
import oncetest as ot

BENCH = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench")
COUNT = int(os.environ.get("BENCH_COUNT", "4000"))
WORKERS = [int(x) for x in os.environ.get("BENCH_WORKERS", "1,2,4,8").split(",")]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DELAYS = os.environ.get("BENCH_COMMIT_DELAY", "off,1000").split(",")
SIBLINGS = int(os.environ.get("BENCH_COMMIT_SIBLINGS", "1"))
OOB_COUNT = int(os.environ.get("BENCH_OOB_COUNT", "20000"))


def items(n, prefix, topic="meters/%d/reading"):
    rng = random.Random(3)
    out, ids = [], []
    for i in range(n):
        e = "%s-%07d" % (prefix, i)
        ids.append(e)
        it = (topic % (i % 16), json.dumps({"id": e, "n": i, "pad": "x" * 120}))
        out.append(it)
        if rng.random() < 0.10:
            out.append(it)
    return ids, out


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (cmd[0], out.stderr))
    return float(out.stdout.split()[2]) if out.stdout.strip() else 0.0


def commit_concurrent(b, clients, total):
    """Transactions/s of clients concurrent one-transaction-per-event
    clients, total transactions in all: how far PostgreSQL's commits scale
    (group commit) here."""
    count = max(1, total // clients)
    t0 = time.time()
    ps = [subprocess.Popen([os.path.join(BENCH, "pg_commit_ceiling"), b.pg.conninfo, "single", str(count)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    for p in ps:
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError("pg_commit_ceiling failed: " + err)
    return clients * count / (time.time() - t0)


class Setup:
    """One broker file: its sessions exist once created, so a backlog
    published while oncebridge is stopped waits in them. workers=None: the
    default broker file (no "workers" key). Each setup has its own topic,
    so no other setup's sessions collect copies of its messages."""

    def __init__(self, b, name, workers):
        self.b, self.name, self.workers = b, name, workers
        self.topic = name + "/%d/reading"
        # the group-commit setups share explicitly, even for one worker;
        # the out-of-the-box one writes the plain filter
        flt = name + "/+/reading" if workers is None else "$share/g-%s/%s/+/reading" % (name, name)
        self.route = obtest.mqtt_route(name, flt, sql_table="bench")
        self.broker = b.mqtt_broker(name="mosq", client_id="bench-" + name, workers=workers, mqtt_version=5)
        self.ids, self.runs = [], 0
        self.config()
        d = b.start()
        b.wait_subscribed("mosq", count=workers or 4)
        d.terminate(timeout=30)

    def config(self):
        self.b.write_config([("10.conf", self.broker, [self.route])])

    def drain(self, n):
        """Publish n events (+10 % duplicates) while stopped, then drain
        them; returns (messages/s from the first applied event, peak RSS)."""
        b = self.b
        self.runs += 1
        ids, msgs = items(n, "%s-r%d" % (self.name, self.runs), self.topic)
        self.ids += ids
        self.config()
        b.mqtt.publish_many(msgs, qos=1, protocol=ot.MQTTv5)
        base = obtest.applied_events(b.pg, self.name, "bench")
        target = base + n
        started = time.time()
        d = b.start()
        # time from the first applied event, so that start-up is not counted
        c0 = ot.wait_until(lambda: obtest.applied_events(b.pg, self.name, "bench") > base and
                           obtest.applied_events(b.pg, self.name, "bench"), 120, interval=0.01,
                           desc="first event") - base
        t0 = time.time()
        ot.wait_until(lambda: obtest.applied_events(b.pg, self.name, "bench") >= target, 900, interval=0.05,
                      desc="%s drained" % self.name)
        rate = (n - c0) / (time.time() - t0) if c0 < n else n / (time.time() - started)
        # messages/s, duplicates included: each message costs one
        # transaction, like each of the commit ceiling's
        rate *= len(msgs) / n
        rss = b.peak_rss_kb()
        d.terminate(timeout=30)
        return rate, rss

    def ledger(self):
        obtest.ledger(self.b.pg, self.name, self.ids, table="bench")


def set_commit_delay(b, delay):
    """commit_delay (microseconds) and commit_siblings on the server, or
    their defaults for "off"."""
    if delay == "off":
        b.pg.execute("ALTER SYSTEM RESET commit_delay")
        b.pg.execute("ALTER SYSTEM RESET commit_siblings")
    else:
        b.pg.execute("ALTER SYSTEM SET commit_delay = %d" % int(delay))
        b.pg.execute("ALTER SYSTEM SET commit_siblings = %d" % SIBLINGS)
    b.pg.execute("SELECT pg_reload_conf()")
    time.sleep(0.2)


def group_commit(b):
    """For each commit_delay setting and N workers: ceiling and oncebridge
    rates of each round, interleaved. Returns {(delay, n): (ceilings,
    rates, peak RSS)}."""
    setups = {n: Setup(b, "w%d" % n, n) for n in WORKERS}
    res = {(dl, n): ([], [], 0) for dl in DELAYS for n in WORKERS}
    for _ in range(ROUNDS):
        for dl in DELAYS:
            set_commit_delay(b, dl)
            for n in WORKERS:
                ceil, rates, rss = res[(dl, n)]
                ceil.append(commit_concurrent(b, n, int(COUNT * 1.1)))
                rate, r = setups[n].drain(COUNT)
                rates.append(rate)
                res[(dl, n)] = (ceil, rates, max(rss, r))
    set_commit_delay(b, "off")
    for n in WORKERS:
        setups[n].ledger()
    return res


def latency(b, rate, seconds=float(os.environ.get("BENCH_SECONDS", "8"))):
    """One worker; publish QoS 1 at rate msgs/s with the publish time in
    the payload; the business SQL records COMMIT-side time minus publish
    time. Returns (achieved rate, latencies in ms)."""
    route = obtest.mqtt_route("w1-lat", "lat/+", sql="INSERT INTO bench_lat (route, event_id, lat_ms)"
                              " VALUES ($1, $2, extract(epoch FROM clock_timestamp()) * 1000 - $3::float8 * 1000)",
                              params=["route", "event_id", "json:t"])
    b.write_config([("10.conf", b.mqtt_broker(name="mosq", client_id="bench-lat", mqtt_version=5), [route])])
    d = b.start()
    b.wait_subscribed("mosq")
    c = b.mqtt.client(protocol=ot.MQTTv5)
    start, i = time.time(), 0
    while time.time() - start < seconds:
        wait = start + i / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        c.publish("lat/1", json.dumps({"id": "lat-%d" % i, "t": time.time()}), qos=1)
        i += 1
    achieved = i / (time.time() - start)
    ot.wait_until(lambda: obtest.applied_events(b.pg, "w1-lat", "bench_lat") >= i, 120, interval=0.1,
                  desc="latency run")
    c.loop_stop()
    c.disconnect()
    d.terminate(timeout=30)
    return achieved, [r[0] for r in b.pg.execute("SELECT lat_ms FROM bench_lat")]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100.0))]


def main():
    b = obtest.MQTTBridge("bench-mqtt")
    b.start_servers()
    b.pg.execute("CREATE TABLE bench (route text, event_id text, n int)")
    b.pg.execute("CREATE TABLE bench_lat (route text, event_id text, lat_ms float8)")
    uri = "tcp://127.0.0.1:%d" % b.mqtt.port

    ids, msgs = items(COUNT, "ceiling")
    run([os.path.join(BENCH, "mqtt_drain_ceiling"), uri, "ceiling-sub", "meters/+/reading", "0"])
    b.mqtt.publish_many(msgs, qos=1, protocol=ot.MQTTv5)
    broker = run([os.path.join(BENCH, "mqtt_drain_ceiling"), uri, "ceiling-sub", "meters/+/reading", str(len(msgs))])

    batches = {k: run([os.path.join(BENCH, "pg_commit_ceiling"), b.pg.conninfo, "batch", str(COUNT * 2), str(k)])
               for k in (1, 10, 100, 1000)}

    gc = group_commit(b)

    # out of the box: the broker file a new user writes, no "workers" key
    oob = Setup(b, "oob", None)
    oob_ceiling = commit_concurrent(b, 4, int(OOB_COUNT * 1.1))
    oob_rate, oob_rss = oob.drain(OOB_COUNT)
    oob.ledger()

    one = statistics.median(gc[(DELAYS[0], WORKERS[0])][1])
    achieved, lat = latency(b, one / 2)

    print("machine: %d cores; %d events (+10%% duplicate messages) per run, QoS 1, fsync on; medians of %d "
          "interleaved runs" % (os.cpu_count(), COUNT, ROUNDS))
    print("oncebridge rates are messages/s, duplicates included (each is one transaction; events/s = that / 1.10);")
    print("N workers share one $share/ group; the ceiling beside each is N clients committing one event per "
          "transaction at once; commit_delay in microseconds")
    print("%-62s %12s %14s %7s %10s" % ("path", "ceiling/s", "oncebridge/s", "ratio", "peak RSS"))
    print("%-62s %12.0f" % ("MQTT broker ceiling (paho QoS 1 drain, no DB)", broker))
    for k, v in batches.items():
        print("%-62s %12.0f" % ("PostgreSQL, %d events per transaction" % k, v))
    for dl in DELAYS:
        setting = "defaults" if dl == "off" else "commit_delay %s, siblings %d" % (dl, SIBLINGS)
        for n in WORKERS:
            ceil, rates, rss = gc[(dl, n)]
            c, r = statistics.median(ceil), statistics.median(rates)
            print("%-62s %12.0f %14.0f %6.0f%% %7d kB" % (
                "oncebridge MQTT, %d worker%s, %s" % (n, "s" if n > 1 else "", setting), c, r,
                100 * r / c, rss))
        base = statistics.median(gc[(dl, WORKERS[0])][1])
        cbase = statistics.median(gc[(dl, WORKERS[0])][0])
        print("  speed-up over %d worker (%s): %s; PostgreSQL alone: %s" % (
            WORKERS[0], setting,
            ", ".join("%d: %.2fx" % (n, statistics.median(gc[(dl, n)][1]) / base) for n in WORKERS),
            ", ".join("%d: %.2fx" % (n, statistics.median(gc[(dl, n)][0]) / cbase) for n in WORKERS)))
    print("%-62s %12.0f %14.0f %6.0f%% %7d kB" % (
        "out of the box: %d QoS 1 messages, default file" % OOB_COUNT, oob_ceiling, oob_rate,
        100 * oob_rate / oob_ceiling, oob_rss))
    print("(out of the box: the default is 4 workers on $share/; its ceiling is 4 clients at once, one run)")
    print("publish -> COMMIT, 1 worker, at %.0f/s (half its rate): p50 %.1f ms, p99 %.1f ms"
          % (achieved, statistics.median(lat), pct(lat, 99)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
