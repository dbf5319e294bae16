# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the outbox relay to RabbitMQ, beside the broker's own
publish-with-confirm ceiling measured in the same run (a plain rabbitmq-c
publisher, tests/bench/amqp_publish_ceiling.c). Prints one table: path,
ceiling/s, oncebridge/s, ratio, commit-to-confirm latency p50/p99 at half
the relay's measured rate, and the relay's peak RSS. Not a pass/fail test."""
import json
import os
import statistics
import subprocess
import sys
import time

import obtest
import oncetest as ot

CEILING = os.environ.get("ONCEBRIDGE_BENCH_CEILING", os.path.join(os.path.dirname(obtest.BIN),
                                                                  "tests", "bench", "amqp_publish_ceiling"))
COUNT = int(os.environ.get("BENCH_COUNT", "20000"))
SIZE = 200
PAYLOAD = json.dumps({"pad": "x" * (SIZE - 12)})


def ceiling(b, window):
    out = subprocess.run([CEILING, "127.0.0.1", str(b.rabbit.port), str(COUNT), str(SIZE), str(window),
                          "amq.topic", "bench.ceiling"], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("ceiling publisher failed: " + out.stderr)
    return float(out.stdout.split()[2])


def ceiling_latency(b, rate, seconds=float(os.environ.get("BENCH_SECONDS", "10"))):
    """The plain publisher paced at rate messages/s: publish-to-confirm
    p50 and p99 in ms, the broker's own latency at that load."""
    n = max(100, int(rate * seconds))
    out = subprocess.run([CEILING, "127.0.0.1", str(b.rabbit.port), str(n), str(SIZE), "1000",
                          "amq.topic", "bench.ceiling", "%.0f" % rate], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("paced publisher failed: " + out.stderr)
    f = out.stdout.split()
    return float(f[2]), float(f[3]), float(f[4])


def purge(b):
    conn = b.rabbit.connection()
    conn.channel().queue_purge("bench-q")
    conn.close()


def unpublished(b):
    return b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL")


def relay_throughput(b):
    conn = b.pg.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT oncebridge.emit('rabbit', 'bench.relay', %s::jsonb) FROM generate_series(1, %s)",
                (PAYLOAD, COUNT))
    conn.commit()
    t0 = time.time()
    ot.wait_until(lambda: unpublished(b) == 0, 300, interval=0.01, desc="relay drained")
    t1 = time.time()
    conn.close()
    return COUNT / (t1 - t0)


def outbox_ledger(b, emitted):
    """Every emitted row marked published, and the queue holds at least one
    message per row (a republish after a lost confirm would add more; the
    consumer dedupes those)."""
    left = unpublished(b)
    ready, _ = b.rabbit.queue_counts("bench-q")
    line = "ledger outbox: %d rows emitted, %d not published, %d messages in the queue" % (emitted, left, ready)
    print(line, flush=True)
    if left or ready < emitted:
        raise RuntimeError(line)


def relay_latency(b, rate, seconds=float(os.environ.get("BENCH_SECONDS", "10"))):
    """Emit at rate events/s for seconds; returns COMMIT-to-confirm
    latencies in ms."""
    per_tx = max(1, int(rate / 400))
    tx_rate = rate / per_tx
    conn = b.pg.connect(autocommit=False)
    cur = conn.cursor()
    commits = {}
    start = time.time()
    n = 0
    while time.time() - start < seconds:
        due = start + n / tx_rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        cur.execute("SELECT oncebridge.emit('rabbit', 'bench.latency', %s::jsonb) FROM generate_series(1, %s)",
                    (PAYLOAD, per_tx))
        ids = [r[0] for r in cur.fetchall()]
        conn.commit()
        t = time.time()
        for e in ids:
            commits[e] = t
        n += 1
    ot.wait_until(lambda: unpublished(b) == 0, 120, interval=0.05, desc="relay drained")
    rows = b.pg.execute("SELECT event_id, extract(epoch FROM published_at)::float8 FROM oncebridge.outbox"
                        " WHERE topic = 'bench.latency'")
    conn.close()
    lat = [(p - commits[e]) * 1000.0 for e, p in rows if e in commits]
    return lat, len(commits) / seconds



def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100.0))]


def configure(b, outbox_extra):
    b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit"), [])], log_level="warning")
    path = b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf")
    with open(path) as f:
        text = f.read().replace("routes = [  ];\n", "")
    with open(path, "w") as f:
        f.write(text + "outbox = { batch_size = 1000; poll_interval_ms = 100; retention_s = 3600;%s };\n"
                % outbox_extra)


def main():
    b = obtest.Bridge("bench-outbox")
    b.start_servers()
    b.rabbit.declare_queue("bench-q", keys=["bench.#"])
    configure(b, "")

    c1 = ceiling(b, 1)
    purge(b)
    d = b.start()
    time.sleep(1.0)
    # the ceiling right before and right after the relay's run: the
    # broker's and the disk's speed drift within a run
    before = ceiling(b, 1000)
    purge(b)
    relay = relay_throughput(b)
    outbox_ledger(b, COUNT)
    purge(b)
    after = ceiling(b, 1000)
    purge(b)
    c1000 = (before + after) / 2
    lat, achieved = relay_latency(b, relay / 2)
    purge(b)
    base_rate, base_p50, base_p99 = ceiling_latency(b, relay / 2)
    purge(b)
    rss = b.peak_rss_kb()  # the relay: the config has no routes
    d.terminate(timeout=20)
    # two relays sharing the work (ordered = false): while one waits for
    # its confirms, the other publishes
    configure(b, " ordered = false; relays = 2;")
    d = b.start()
    time.sleep(1.0)
    relay2 = relay_throughput(b)
    outbox_ledger(b, COUNT)
    purge(b)
    d.terminate(timeout=20)

    print("machine: %d cores, %s" % (os.cpu_count(), " ".join(os.uname()[2:3])))
    print("%d messages of %d bytes, persistent, fsync on, loopback" % (COUNT, SIZE))
    print("ceiling: the mean of %.0f (right before the relay's run) and %.0f (right after)" % (before, after))
    print("%-44s %12s %14s %7s %9s %9s %10s" % ("path", "ceiling/s", "oncebridge/s", "ratio", "p50 ms", "p99 ms",
                                                "peak RSS"))
    print("%-44s %12.0f %14.0f %6.0f%% %9s %9s %10s" % ("outbox relay -> AMQP, confirms, batch 1000", c1000, relay,
                                                          100.0 * relay / c1000, "", "", "%d kB" % rss))
    print("%-44s %12.0f %14.0f %6.0f%% %9s %9s %10s" % ("2 relays, unordered (ordered = false)", c1000, relay2,
                                                          100.0 * relay2 / c1000, "", "", ""))
    print("%-44s %12.0f %14s %7s %9s %9s %10s" % ("plain publisher, confirm window 1", c1, "", "", "", "", ""))
    print("%-44s %12s %14.0f %7s %9.1f %9.1f %10s" % ("COMMIT -> confirm at half the relay's rate", "", achieved, "",
                                                       statistics.median(lat), pct(lat, 99), ""))
    print("%-44s %12.0f %14s %7s %9.1f %9.1f %10s" % ("plain publisher paced at that rate: -> confirm", base_rate, "", "",
                                                       base_p50, base_p99, ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
