# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the outbox relay in ordered mode to RabbitMQ and to
Mosquitto, each beside the broker's own publish ceiling measured in the
same run: a plain publisher with a window of messages in flight and the
same message properties, no database (tests/bench/amqp_publish_ceiling.c,
publisher confirms; tests/bench/mqtt_publish_ceiling.c, QoS 1 PUBACKs).

Per protocol, BENCH_ROUNDS (3) interleaved runs, ceiling, relay, ceiling,
relay, ..., ceiling: each relay run is compared with the mean of the
ceilings right before and right after it, and the table shows the medians.
Then the latency: the relay's COMMIT -> confirm at half its median rate
(to the row's published_at, set when the relay marks the row), beside the
plain publisher paced at the same rate (publish -> confirm, the broker's
own floor), again interleaved and as medians. Every relay run ends with
the ledger: every emitted row marked published, and at least one message
per row at the broker (a queue for RabbitMQ, a persistent session for
Mosquitto). Not a pass/fail test."""
import json
import os
import statistics
import subprocess
import sys
import time

import obtest
import oncetest as ot

BENCH = os.path.join(os.path.dirname(obtest.BIN), "tests", "bench")
AMQP_CEILING = os.environ.get("ONCEBRIDGE_BENCH_CEILING", os.path.join(BENCH, "amqp_publish_ceiling"))
MQTT_CEILING = os.path.join(BENCH, "mqtt_publish_ceiling")
MQTT_DRAIN = os.path.join(BENCH, "mqtt_drain_ceiling")
COUNT = int(os.environ.get("BENCH_COUNT", "20000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
PROTOCOLS = os.environ.get("BENCH_OUTBOX_PROTOCOLS", "amqp,mqtt").split(",")
BATCH = int(os.environ.get("BENCH_OUTBOX_BATCH", "1000"))
WINDOW = 1000  # the plain publishers' messages in flight
SIZE = 200
PAYLOAD = json.dumps({"pad": "x" * (SIZE - 12)})
LEDGER_SESSION = "bench-ledger"
# Mosquitto's default (set_tcp_nodelay false) holds each PUBACK after the
# first of a burst until the relay's kernel ACKs that one, up to its
# delayed-ACK timer (40 ms), whenever the relay waits for confirms with
# nothing more to send; RabbitMQ sets TCP_NODELAY by default. The README
# recommends the setting; BENCH_MOSQUITTO_CONF="" measures without it.
MOSQUITTO_CONF = os.environ.get("BENCH_MOSQUITTO_CONF", "set_tcp_nodelay true")


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("%s failed: %s" % (os.path.basename(cmd[0]), out.stderr))
    return [float(x) for x in out.stdout.split()]


class Amqp:
    """RabbitMQ: rows to amq.topic, a queue bound to bench.# holds them."""
    name, dest, sep = "AMQP", "rabbit", "."

    def __init__(self, b):
        self.b = b
        b.rabbit.declare_queue("bench-q", keys=["bench.#"])

    def ceiling(self, n, rate=None):
        cmd = [AMQP_CEILING, "127.0.0.1", str(self.b.rabbit.port), str(n), str(SIZE), str(WINDOW),
               "amq.topic", "bench.ceiling"] + (["%.0f" % rate] if rate else [])
        return run(cmd)

    def received(self, n):
        """Messages at the broker since the last call, then none."""
        ready, _ = self.b.rabbit.queue_counts("bench-q")
        conn = self.b.rabbit.connection()
        conn.channel().queue_purge("bench-q")
        conn.close()
        return ready


class Mqtt:
    """Mosquitto: a persistent session subscribed to bench/# holds the
    messages; draining it counts them."""
    name, dest, sep = "MQTT", "mosq", "/"

    def __init__(self, b):
        self.b = b
        self.uri = "tcp://127.0.0.1:%d" % b.mqtt.port
        run([MQTT_DRAIN, self.uri, LEDGER_SESSION, "bench/#", "0"])  # the session, from now on

    def ceiling(self, n, rate=None):
        return run([MQTT_CEILING, self.uri, str(n), str(SIZE), str(WINDOW), "bench/ceiling"]
                   + (["%.0f" % rate] if rate else []))

    def received(self, n):
        """Drain n messages from the session (fails after a timeout when
        fewer arrived)."""
        return int(run([MQTT_DRAIN, self.uri, LEDGER_SESSION, "bench/#", str(n)])[0])


def unpublished(b, dest):
    return b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE destination = %s AND published_at IS NULL",
                       (dest,))


def relay_throughput(b, p):
    conn = b.pg.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT oncebridge.emit(%s, %s, %s::jsonb) FROM generate_series(1, %s)",
                (p.dest, "bench" + p.sep + "relay", PAYLOAD, COUNT))
    conn.commit()
    t0 = time.time()
    ot.wait_until(lambda: unpublished(b, p.dest) == 0, 300, interval=0.01, desc="relay drained")
    t1 = time.time()
    conn.close()
    return COUNT / (t1 - t0)


def ledger(b, p, emitted):
    """Every emitted row marked published, and at least one message per row
    at the broker (a republish after a lost confirm would add more; the
    consumer dedupes those)."""
    left = unpublished(b, p.dest)
    got = p.received(emitted)
    line = "ledger outbox %s: %d rows emitted, %d not published, %d messages at the broker" % (
        p.name, emitted, left, got)
    print(line, flush=True)
    if left or got < emitted:
        raise RuntimeError(line)


def relay_latency(b, p, rate):
    """Emit at rate events/s for SECONDS; returns COMMIT-to-confirm
    latencies in ms (to published_at) and the rate achieved."""
    per_tx = max(1, int(rate / 400))
    tx_rate = rate / per_tx
    conn = b.pg.connect(autocommit=False)
    cur = conn.cursor()
    commits = {}
    start = time.time()
    n = 0
    while time.time() - start < SECONDS:
        delay = start + n / tx_rate - time.time()
        if delay > 0:
            time.sleep(delay)
        cur.execute("SELECT oncebridge.emit(%s, %s, %s::jsonb) FROM generate_series(1, %s)",
                    (p.dest, "bench" + p.sep + "latency", PAYLOAD, per_tx))
        ids = [r[0] for r in cur.fetchall()]
        conn.commit()
        t = time.time()
        for e in ids:
            commits[e] = t
        n += 1
    ot.wait_until(lambda: unpublished(b, p.dest) == 0, 120, interval=0.05, desc="relay drained")
    rows = b.pg.execute("SELECT event_id, extract(epoch FROM published_at)::float8 FROM oncebridge.outbox"
                        " WHERE destination = %s AND topic = %s", (p.dest, "bench" + p.sep + "latency"))
    conn.close()
    p.received(len(commits))
    lat = [(t - commits[e]) * 1000.0 for e, t in rows if e in commits]
    return lat, len(commits) / SECONDS


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q / 100.0))]


def measure(b, p):
    """Interleaved throughput rounds, then interleaved latency rounds."""
    ceilings = [p.ceiling(COUNT)[2]]
    p.received(COUNT)
    relays, ratios = [], []
    for _ in range(ROUNDS):
        relays.append(relay_throughput(b, p))
        ledger(b, p, COUNT)
        ceilings.append(p.ceiling(COUNT)[2])
        p.received(COUNT)
        ratios.append(relays[-1] / ((ceilings[-2] + ceilings[-1]) / 2))
    rate = statistics.median(relays) / 2
    relay_p50, relay_p99, plain_p50, plain_p99, achieved = [], [], [], [], []
    for _ in range(ROUNDS):
        lat, got = relay_latency(b, p, rate)
        relay_p50.append(statistics.median(lat))
        relay_p99.append(pct(lat, 99))
        achieved.append(got)
        # the plain publisher at the rate the relay saw (the emitter may
        # fall short of the target on a busy machine)
        n = max(100, int(got * SECONDS))
        f = p.ceiling(n, got)
        p.received(n)
        plain_p50.append(f[3])
        plain_p99.append(f[4])
    med = statistics.median
    return {"ceiling": med(ceilings), "relay": med(relays), "ratio": med(ratios), "ceilings": ceilings,
            "relays": relays, "rate": med(achieved), "p50": med(relay_p50), "p99": med(relay_p99),
            "plain_p50": med(plain_p50), "plain_p99": med(plain_p99), "p99s": relay_p99, "plain_p99s": plain_p99}


def outbox_group(extra=""):
    return ("outbox = { batch_size = %d; poll_interval_ms = 100; retention_s = 3600;%s };\n" % (BATCH, extra))


def configure(b, protocols, extra=""):
    brokers = []
    if "amqp" in protocols:
        brokers.append(("10-rabbit.conf", b.amqp_broker(name="rabbit"), []))
    if "mqtt" in protocols:
        brokers.append(("20-mosq.conf", obtest.MQTTBridge.mqtt_broker(b, name="mosq", client_id="bench"), []))
    b.write_config(brokers, log_level="warning")
    for filename, _, _ in brokers:
        path = os.path.join(b.confdir, "conf.d", filename)
        with open(path) as f:
            text = f.read().replace("routes = [  ];\n", "")
        with open(path, "w") as f:
            f.write(text + outbox_group(extra))


def main():
    b = obtest.Bridge("bench-outbox")
    b.start_servers()
    protos = []
    if "mqtt" in PROTOCOLS:
        b.mqtt = ot.Mosquitto(b.dir, extra_conf=MOSQUITTO_CONF)
        b.mqtt.start()
    if "amqp" in PROTOCOLS:
        protos.append(Amqp(b))
    if "mqtt" in PROTOCOLS:
        protos.append(Mqtt(b))
    configure(b, PROTOCOLS)
    d = b.start()
    time.sleep(1.0)
    results = [(p, measure(b, p)) for p in protos]
    rss = b.peak_rss_kb()  # the relays: the config has no routes
    d.terminate(timeout=20)
    relay2 = None
    if "amqp" in PROTOCOLS:
        # two relays sharing the work (ordered = false): while one waits
        # for its confirms, the other publishes
        configure(b, ["amqp"], " ordered = false; relays = 2;")
        d = b.start()
        time.sleep(1.0)
        relay2 = relay_throughput(b, protos[0])
        ledger(b, protos[0], COUNT)
        d.terminate(timeout=20)

    print("machine: %d cores, %s" % (os.cpu_count(), " ".join(os.uname()[2:3])))
    print("%d messages of %d bytes, persistent, fsync on, loopback; outbox batch_size %d; medians of %d"
          " interleaved runs; Mosquitto: %s" % (COUNT, SIZE, BATCH, ROUNDS, MOSQUITTO_CONF or "defaults"))
    print("%-46s %12s %14s %7s %9s %9s %10s" % ("path", "ceiling/s", "oncebridge/s", "ratio", "p50 ms", "p99 ms",
                                                "peak RSS"))
    for p, r in results:
        print("%-46s %12.0f %14.0f %6.0f%% %9s %9s %10s" % (
            "outbox relay -> %s, ordered" % p.name, r["ceiling"], r["relay"], 100.0 * r["ratio"], "", "",
            "%d kB" % rss))
        print("%-46s %12s %14.0f %7s %9.1f %9.1f %10s" % (
            "  COMMIT -> confirm at half the relay's rate", "", r["rate"], "", r["p50"], r["p99"], ""))
        print("%-46s %12s %14s %7s %9.1f %9.1f %10s" % (
            "  plain publisher paced alike: -> confirm", "", "", "", r["plain_p50"], r["plain_p99"], ""))
        print("%-46s %s" % ("  p99 ratio (goal <= 1.5)", "%.2f" % (r["p99"] / max(r["plain_p99"], 0.1))))
        print("  runs: ceilings %s; relay %s; p99 relay %s, plain %s" % (
            " ".join("%.0f" % x for x in r["ceilings"]), " ".join("%.0f" % x for x in r["relays"]),
            " ".join("%.1f" % x for x in r["p99s"]), " ".join("%.1f" % x for x in r["plain_p99s"])))
    if relay2 is not None:
        c = results[0][1]["ceiling"]
        print("%-46s %12.0f %14.0f %6.0f%% %9s %9s %10s" % ("2 AMQP relays, unordered (ordered = false)", c, relay2,
                                                              100.0 * relay2 / c, "", "", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
