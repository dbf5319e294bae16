# SPDX-License-Identifier: Apache-2.0
"""Benchmark of memory against message size: a backlog of messages of
1 KB, 100 KB and 1 MB waiting in a queue, drained by one AMQP worker into
PostgreSQL. For each size: the worker's peak resident set (VmHWM), the
peak of the daemon's processes together (VmRSS summed, sampled every
0.1 s), and the drain rate. With BENCH_BASELINE_BIN naming another
oncebridge binary (say, main's build), each size runs under both, side by
side in one run, on the same servers and the same backlog. Every run ends
with the exactly-once ledger. Not a pass/fail test.

BENCH_MSGSIZE_BYTES: total payload bytes per size (default 1 000 000 000:
1 000 messages of 1 MB, 10 000 of 100 KB, and 1 000 000 of 1 KB capped by
BENCH_MSGSIZE_MAX_COUNT, default 50 000). Other keys as a new user writes
them: the defaults of prefetch, batch_size and max_inflight_bytes, unless
BENCH_MSGSIZE_BUDGET sets max_inflight_bytes (not for the baseline).
BENCH_MSGSIZE_ROUNDS (default 1): rounds, the order of the binaries
alternating, reported as medians. BENCH_MSGSIZE_DECODE=0: the event ID
from the message_id property and no payload field bound, so that the
payload is never decoded (shows what the decoded value tree costs)."""
import json
import os
import subprocess
import sys
import threading
import time

import obtest
import oncetest as ot

TOTAL = int(os.environ.get("BENCH_MSGSIZE_BYTES", "1000000000"))
MAX_COUNT = int(os.environ.get("BENCH_MSGSIZE_MAX_COUNT", "50000"))
BUDGET = os.environ.get("BENCH_MSGSIZE_BUDGET")
BASELINE = os.environ.get("BENCH_BASELINE_BIN")
ROUNDS = int(os.environ.get("BENCH_MSGSIZE_ROUNDS", "1"))
DECODE = os.environ.get("BENCH_MSGSIZE_DECODE", "1") != "0"
SIZES = [(1000, "1 KB"), (100000, "100 KB"), (1000000, "1 MB")]


def status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def daemon_pids(b):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(b.daemon.pid)], capture_output=True, text=True)
    return [b.daemon.pid] + [int(x) for x in out.stdout.split()]


class Sampler(threading.Thread):
    """Peak of the daemon's processes' VmRSS summed, and of each worker's
    VmHWM, until stopped."""

    def __init__(self, b):
        threading.Thread.__init__(self, daemon=True)
        self.b, self.stop, self.total_kb, self.worker_kb = b, False, 0, 0

    def run(self):
        while not self.stop:
            pids = daemon_pids(self.b)
            self.total_kb = max(self.total_kb, sum(status_kb(p, "VmRSS") for p in pids))
            self.worker_kb = max([self.worker_kb] + [status_kb(p, "VmHWM") for p in pids[1:]])
            time.sleep(0.1)


def publish_backlog(b, tag, size, count):
    ids = []
    pad = "x" * max(0, size - 60)
    for start in range(0, count, 200):
        msgs = []
        for i in range(start, min(count, start + 200)):
            e = "%s-%07d" % (tag, i)
            ids.append(e)
            msgs.append({"exchange": "amq.topic", "routing_key": "bench.size", "message_id": e,
                         "body": json.dumps({"id": e, "n": i, "pad": pad})})
        b.rabbit.publish_many(msgs, timeout=600)
    return ids


def one_run(b, label, binary, size, count, rnd):
    tag = "%s-%d-%d" % (label, size, rnd)
    ids = publish_backlog(b, tag, size, count)
    broker = b.amqp_broker(name="rabbit")
    for k in ("prefetch", "batch_size", "batch_linger_ms"):
        del broker[k]   # the defaults, as a new user gets them
    if BUDGET and binary is None:
        broker["max_inflight_bytes"] = int(BUDGET)
    route = obtest.applied_route(tag.replace("-", "_"), "q-size", sql_table="bench")
    if not DECODE:
        route.update(event_id="property:message_id", params=["route", "event_id"],
                     sql="INSERT INTO bench (route, event_id) VALUES ($1, $2)")
    b.write_config([("10-rabbit.conf", broker, [route])], log_level="warning")
    saved = obtest.BIN
    obtest.BIN = binary or saved
    try:
        b.start()
    finally:
        obtest.BIN = saved
    s = Sampler(b)
    t0 = time.time()
    s.start()
    ot.wait_until(lambda: obtest.applied_events(b.pg, route["name"], "bench") >= count, 3600, interval=0.2,
                  desc="%s applied" % tag)
    sec = time.time() - t0
    s.stop = True
    s.join()
    b.daemon.terminate(timeout=60)
    obtest.ledger(b.pg, route["name"], ids, table="bench")
    return sec, s.worker_kb, s.total_kb


def main():
    b = obtest.Bridge("bench-msgsize")
    b.start_servers()
    b.pg.execute("CREATE TABLE bench (route text, event_id text, n int)")
    b.rabbit.declare_queue("q-size", keys=["bench.size"])
    runs = ([("main", BASELINE)] if BASELINE else []) + [("this", None)]
    rows = []
    for size, name in SIZES:
        count = min(MAX_COUNT, max(1, TOTAL // size))
        got = {}
        for rnd in range(ROUNDS):
            for label, binary in (runs if rnd % 2 == 0 else runs[::-1]):
                sec, worker_kb, total_kb = one_run(b, label, binary, size, count, rnd)
                got.setdefault(label, []).append((worker_kb, total_kb, sec))
                print("%s x %d (%s, round %d): %.1f s, worker peak %d kB" % (name, count, label, rnd + 1, sec,
                                                                          worker_kb), flush=True)
        for label, _ in runs:
            med = lambda k: sorted(x[k] for x in got[label])[len(got[label]) // 2]  # noqa: E731
            sec = med(2)
            rows.append((name, count, label, med(0), med(1), count / sec, count * size / sec / 1e6))
    print("machine: %d cores; a backlog drained by one AMQP worker with the default prefetch and batch_size; "
          "max_inflight_bytes %s; payload %s; medians of %d rounds"
          % (os.cpu_count(), BUDGET or "default", "decoded" if DECODE else "not decoded", ROUNDS))
    print("%-8s %8s %-6s %16s %18s %10s %8s" % ("message", "count", "code", "worker peak MB", "all processes MB",
                                               "msgs/s", "MB/s"))
    for name, count, label, wkb, tkb, rate, mbs in rows:
        print("%-8s %8d %-6s %16.0f %18.0f %10.0f %8.1f" % (name, count, label, wkb / 1024.0, tkb / 1024.0,
                                                           rate, mbs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
