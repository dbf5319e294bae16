# SPDX-License-Identifier: Apache-2.0
"""Benchmark of memory over a long stream: 1 M events (10 % duplicates,
~200-byte JSON, persistent) through one AMQP worker into PostgreSQL while
they are published. Samples the worker's resident set (VmRSS) and peak
(VmHWM) every tenth of the stream, so a leak or a growing cache shows as a
slope, and ends with the exactly-once ledger. Events: BENCH_RSS_COUNT
(default 1000000). Not a pass/fail test."""
import json
import os
import random
import sys
import threading
import time

import obtest
import oncetest as ot

COUNT = int(os.environ.get("BENCH_RSS_COUNT", "1000000"))
CHUNK = 20000


def chunk(start, n, rng):
    ids, out = [], []
    for i in range(start, start + n):
        e = "rss-%08d" % i
        ids.append(e)
        m = {"exchange": "amq.topic", "routing_key": "bench.rss",
             "body": json.dumps({"id": e, "n": i, "pad": "x" * 150})}
        out.append(m)
        if rng.random() < 0.10:
            out.append(dict(m))
    return ids, out


def publisher(b, state):
    rng = random.Random(11)
    try:
        for start in range(0, COUNT, CHUNK):
            ids, msgs = chunk(start, min(CHUNK, COUNT - start), rng)
            b.rabbit.publish_many(msgs, timeout=600)
            state["ids"].extend(ids)
    except Exception as e:  # reported by main
        state["error"] = e


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    b = obtest.Bridge("bench-rss")
    b.start_servers()
    b.pg.execute("CREATE TABLE bench (route text, event_id text, n int)")
    b.rabbit.declare_queue("q-rss", keys=["bench.rss"])
    route = obtest.applied_route("rss", "q-rss", sql_table="bench")
    b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit", batch_size=500, batch_linger_ms=20,
                                                      prefetch=1000), [route])], log_level="warning")
    d = b.start()
    ot.wait_until(lambda: b.worker_pids(), 30, desc="worker started")
    pid = b.worker_pids()[0]
    state = {"ids": [], "error": None}
    th = threading.Thread(target=publisher, args=(b, state), daemon=True)
    t0 = time.time()
    th.start()
    samples = []
    for k in range(1, 11):
        target = COUNT * k // 10
        ot.wait_until(lambda: obtest.applied_events(b.pg, "rss", "bench") >= target or state["error"], 3600,
                      interval=0.5, desc="%d applied" % target)
        if state["error"]:
            raise state["error"]
        samples.append((target, time.time() - t0, status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")))
    th.join()
    d.terminate(timeout=60)
    print("machine: %d cores; %d events (+10%% duplicate messages), one AMQP worker, batches of 500"
          % (os.cpu_count(), COUNT))
    print("%-16s %10s %12s %12s" % ("events applied", "seconds", "VmRSS kB", "VmHWM kB"))
    for n, sec, rss, hwm in samples:
        print("%-16d %10.0f %12d %12d" % (n, sec, rss, hwm))
    first, last = samples[0][2], samples[-1][2]
    print("RSS change from %d to %d events: %+d kB (%+.1f%%)" % (samples[0][0], samples[-1][0], last - first,
                                                                100.0 * (last - first) / first))
    obtest.ledger(b.pg, "rss", state["ids"], table="bench")
    return 0


if __name__ == "__main__":
    sys.exit(main())
