# SPDX-License-Identifier: Apache-2.0
"""Two relays for one destination. Ordered mode (the default): one relay is
active, the other stands by; kill -9 of the active relay mid-publish hands
over to the standby, and the order in which events first reach the queue
equals the outbox order across the failover. Parallel mode
(ordered = false): both relays claim rows with FOR UPDATE SKIP LOCKED and
every event arrives."""
import os
import re
import signal

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("outbox-ordered")
b.start_servers()
b.rabbit.declare_queue("seq-q", keys=["seq.#"])
conninfo_file = None


def configure(ordered):
    b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit"), [])])
    path = b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf")
    with open(path) as f:
        text = f.read().replace("routes = [  ];\n", "")
    with open(path, "w") as f:
        f.write(text + "outbox = { relays = 2; ordered = %s; batch_size = 100; poll_interval_ms = 200; };\n"
                % ("true" if ordered else "false"))


def emit_bulk(first, count):
    return [r[0] for r in b.pg.execute(
        "SELECT oncebridge.emit('rabbit', 'seq.' || g, jsonb_build_object('seq', g))"
        " FROM generate_series(%s, %s) AS g", (first, first + count - 1))]


def published():
    return b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NOT NULL")


def read_queue(n, timeout=120):
    """Messages of seq-q in queue order until n distinct events were seen."""
    seqs, seen = [], set()
    conn = b.rabbit.connection()
    ch = conn.channel()

    def take():
        while True:
            method, props, body = ch.basic_get("seq-q", auto_ack=True)
            if method is None:
                break
            s = int(method.routing_key.split(".")[1])
            seqs.append(s)
            seen.add(s)
        return len(seen) >= n

    try:
        ot.wait_until(take, timeout, interval=0.2, desc="%d events on seq-q" % n)
    finally:
        conn.close()
    return seqs


def active_relay_pids(log):
    return [int(m) for m in re.findall(r"\[(\d+)\] INFO:  relay rabbit\[\d\]: active relay", log)]


# 1. ordered, with a failover
configure(ordered=True)
N = 6000
emit_bulk(1, N)
d = b.start()
ot.wait_until(lambda: published() >= 1500, 60, interval=0.005, desc="publishing under way")
actives = active_relay_pids(b.logs())
t.is_(len(actives), 1, "exactly one relay is active in ordered mode")
os.kill(actives[0], signal.SIGKILL)
at = published()
t.ok(at < N, "the active relay was killed mid-publish (%d of %d published)" % (at, N))
ot.wait_until(lambda: len(active_relay_pids(b.logs())) >= 2, 30, desc="the standby takes over")
log = b.logs()
t.ok("standing by" in log, "the second relay stood by")
seqs = read_queue(N)
first_seen = []
seen = set()
for s in seqs:
    if s not in seen:
        seen.add(s)
        first_seen.append(s)
t.is_(len(first_seen), N, "every event arrived")
t.ok(first_seen == sorted(first_seen), "first arrivals are in outbox order across the failover",
     diag="first out-of-order position: %s" % next((i for i in range(1, len(first_seen))
                                                    if first_seen[i] < first_seen[i - 1]), None))
t.ok(len(seqs) >= N, "%d messages for %d events: the failover republished %d" % (len(seqs), N, len(seqs) - N))
t.is_(d.terminate(timeout=20), 0, "clean stop")

# 2. parallel relays
configure(ordered=False)
M = 4000
emit_bulk(N + 1, M)
d = b.start()
seqs = read_queue(M)
t.is_(len(set(seqs)), M, "parallel relays publish every event")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL"), 0, "nothing is left")
log = b.logs()
t.ok("relay started (amqp, parallel)" in log, "the relays run in parallel mode")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
