# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the MQTT path into PostgreSQL beside its ceilings, measured
in the same run (JSON payloads, 10 % duplicates, QoS 1, fsync on):

* broker ceiling: a plain paho MQTTAsync QoS 1 subscriber draining a
  persistent session, no database (tests/bench/mqtt_drain_ceiling.c);
* commit ceiling: one transaction per event (BEGIN, claim, insert, COMMIT)
  in one round trip on one connection (tests/bench/pg_commit_ceiling.c),
  which bounds one MQTT worker, since paho forces a commit per message;
* PostgreSQL batch ceilings: events per second at 1/10/100/1000 events
  per transaction;
* oncebridge with 1 and 2 workers on a shared subscription, draining a
  persistent session, with the worker's peak RSS. Not a pass/fail test."""
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
COUNT = int(os.environ.get("BENCH_COUNT", "10000"))


def items(n, prefix):
    rng = random.Random(3)
    out, ids = [], []
    for i in range(n):
        e = "%s-%07d" % (prefix, i)
        ids.append(e)
        it = ("meters/%d/reading" % (i % 16), json.dumps({"id": e, "n": i, "pad": "x" * 120}))
        out.append(it)
        if rng.random() < 0.10:
            out.append(it)
    return ids, out


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (cmd[0], out.stderr))
    return float(out.stdout.split()[2]) if out.stdout.strip() else 0.0


def commit_concurrent(b, clients, count):
    """Transactions/s of clients concurrent one-transaction-per-event
    clients: how far PostgreSQL's commits scale (group commit) here."""
    t0 = time.time()
    ps = [subprocess.Popen([os.path.join(BENCH, "pg_commit_ceiling"), b.pg.conninfo, "single", str(count)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    for p in ps:
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError("pg_commit_ceiling failed: " + err)
    return clients * count / (time.time() - t0)


def drain_bridge(b, name, workers, ids, msgs, ceiling):
    """Drain a backlog with oncebridge; ceiling() runs right before and
    right after, since the disk's flush latency drifts within a run.
    Returns (messages/s, peak RSS, mean of the two ceilings)."""
    n_events = len(ids)
    topic = "$share/bench-%s/meters/+/reading" % name if workers > 1 else "meters/+/reading"
    route = obtest.mqtt_route(name, topic, sql_table="bench")
    b.write_config([("10.conf", b.mqtt_broker(name="mosq", client_id="bench-" + name, workers=workers,
                                              mqtt_version=5), [route])])
    d = b.start()
    b.wait_subscribed("mosq", count=workers)
    d.terminate(timeout=30)
    b.mqtt.publish_many(msgs, qos=1, protocol=ot.MQTTv5)
    before = ceiling()
    started = time.time()
    d = b.start()
    # time from the first applied event, so that start-up is not counted
    c0 = ot.wait_until(lambda: obtest.applied_events(b.pg, name, "bench"), 120, interval=0.01, desc="first event")
    t0 = time.time()
    ot.wait_until(lambda: obtest.applied_events(b.pg, name, "bench") >= n_events, 900, interval=0.05,
                  desc="%s drained" % name)
    rate = (n_events - c0) / (time.time() - t0) if c0 < n_events else n_events / (time.time() - started)
    # messages/s, duplicates included: each message costs one transaction,
    # like each of the commit ceiling's
    rate *= len(msgs) / n_events
    rss = b.peak_rss_kb()
    d.terminate(timeout=30)
    obtest.ledger(b.pg, name, ids, table="bench")
    return rate, rss, (before + ceiling()) / 2


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

    ids1, msgs1 = items(COUNT, "w1")
    one, rss1, commit = drain_bridge(b, "w1", 1, ids1, msgs1, lambda: commit_concurrent(b, 1, COUNT // 4))
    ids2, msgs2 = items(COUNT, "w2")
    two, rss2, commit2 = drain_bridge(b, "w2", 2, ids2, msgs2, lambda: commit_concurrent(b, 2, COUNT // 8))
    achieved, lat = latency(b, one / 2)

    print("machine: %d cores; %d events (+10%% duplicate messages), QoS 1, fsync on" % (os.cpu_count(), COUNT))
    print("oncebridge rates are messages/s, duplicates included (each is one transaction; events/s = that / %.2f)"
          % (len(msgs1) / len(ids1)))
    print("%-52s %12s %14s %7s %10s" % ("path", "ceiling/s", "oncebridge/s", "ratio", "peak RSS"))
    print("%-52s %12.0f" % ("MQTT broker ceiling (paho QoS 1 drain, no DB)", broker))
    print("%-52s %12.0f" % ("one transaction per event, one round trip", commit))
    print("%-52s %12.0f" % ("the same, 2 clients at once (group commit)", commit2))
    print("(each commit ceiling: the mean of runs right before and after its oncebridge row)")
    for k, v in batches.items():
        print("%-52s %12.0f" % ("PostgreSQL, %d events per transaction" % k, v))
    print("%-52s %12.0f %14.0f %6.0f%% %7d kB" % ("oncebridge MQTT, 1 worker", commit, one, 100 * one / commit, rss1))
    print("%-52s %12.0f %14.0f %6.0f%% %7d kB" % ("oncebridge MQTT, 2 workers ($share)", commit2, two,
                                                   100 * two / commit2, rss2))
    print("2 workers / 1 worker: %.2fx (PostgreSQL alone, 2 clients / 1: %.2fx)" % (two / one, commit2 / commit))
    print("publish -> COMMIT, 1 worker, at %.0f/s (half its rate): p50 %.1f ms, p99 %.1f ms"
          % (achieved, statistics.median(lat), pct(lat, 99)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
