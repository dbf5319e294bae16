# SPDX-License-Identifier: Apache-2.0
"""Log rate during a database outage: PostgreSQL stopped for 30 s while
four MQTT workers (on one shared subscription) and the retention process
wait for it, each with a message in hand. Each process logs the outage
when it starts, a summary every log_repeat_interval_s (10 s here) and
once when it ends, not a line per backoff step: the lines of the outage
are counted by kind, every one must be of a listed kind, and the total is
bounded. The events published during the outage are applied exactly once
afterwards."""
import re
import time

import obtest
import oncetest as ot

OUTAGE_S = 30
INTERVAL_S = 10
WORKERS = 4
PROCESSES = WORKERS + 1   # and the retention process

# every line the outage may produce, by kind; per process, at most
KINDS = [
    ("started", r"could not connect to the database: .*\(retrying; until this ends, a summary every %d s\)$"
     % INTERVAL_S, 1),
    ("summary", r"still failing after \d+ s and \d+ attempts: could not connect to the database",
     OUTAGE_S // INTERVAL_S + 2),
    ("ended", r"connected to the database again after [\d.]+ s and \d+ failed attempts$", 1),
    # state changes around it: the server's goodbye on each session, the
    # statement each session was in, reconnecting afterwards
    ("server notice", r"database: WARNING:  terminating connection", 2),
    ("failed statement", r"could not (apply a batch|record the redelivery horizon|prune processed_events"
     r"|read the redelivery horizons)", 3),
    ("reconnected", r"connected to the database$", 2),
    ("settled", r"the message on \".*\" settled after \d+ attempts$", 1),
    # paho answers no keepalive while its callback waits for the database:
    # Mosquitto drops the connection, the worker connects again (4 lines;
    # room for a second time on a slow machine)
    ("broker reconnect", r"lost the broker connection|discarding the MQTT client state|connected to tcp://"
     r"|subscribed to ", 8),
    ("pruning held back", r"pruning (of route .* is held back|is no longer held back)", WORKERS + 1),
]
LINE = re.compile(r"^\S+ \S+ \[(\d+)\] (\w+):  (?:[^:]+: )?(.*)$")

t = ot.TAP()
b = obtest.MQTTBridge("log-repeat")
b.start_servers()
obtest.applied_table(b.pg)
b.write_config([("10-mosq.conf", b.mqtt_broker(workers=WORKERS), [obtest.mqtt_route("lr", "$share/g/dev/+/reading")])],
               retention={"dedupe_window_s": 86400, "interval_s": 5}, log_repeat_interval_s=INTERVAL_S)
d = b.start()
b.wait_subscribed(count=WORKERS)
ids, items = obtest.mqtt_stream(40, dup_ratio=0)
b.mqtt.publish_many(items[:20])
obtest.wait_applied(b.pg, "lr", 20, settle=0.2)

start = len(d.log())
b.pg.stop(mode="immediate")
t0 = time.monotonic()
b.mqtt.publish_many(items[20:])       # each worker gets some and waits for the database with them
time.sleep(max(0, OUTAGE_S - (time.monotonic() - t0)))   # the outage itself
b.pg.start_again()
obtest.wait_applied(b.pg, "lr", 40, timeout=90, settle=0.5)
obtest.exactly_once(t, b.pg, "lr", ids)
t.eventually(lambda: len(re.findall(KINDS[2][1], d.log()[start:], re.M)) >= PROCESSES, 30,
             "each of the %d processes logged the end of the outage" % PROCESSES)
time.sleep(1)   # lines of the reconnect that follow the end

lines = d.log()[start:].splitlines()
per = {}          # (kind, pid) -> count
unknown = []
for line in lines:
    m = LINE.match(line)
    if not m:
        unknown.append(line)
        continue
    pid, text = m.group(1), m.group(3)
    kind = next((k for k, rx, _ in KINDS if re.search(rx, text)), None)
    if kind is None:
        unknown.append(line)
    else:
        per[(kind, pid)] = per.get((kind, pid), 0) + 1
obtest.note("%d lines during and after a %d s outage, by kind: %s" % (len(lines), OUTAGE_S, ", ".join(
    "%s %d" % (k, sum(c for (kk, _), c in per.items() if kk == k)) for k, _, _ in KINDS)))
t.ok(not unknown, "every line of the outage is a state change, a summary or the recovery", diag="\n".join(unknown[:20]))
over = ["%s: %d lines from pid %s (at most %d)" % (k, c, pid, dict((x, n) for x, _, n in KINDS)[k])
        for (k, pid), c in per.items() if c > dict((x, n) for x, _, n in KINDS)[k]]
t.ok(not over, "no kind of line repeats beyond its bound in any process", diag="\n".join(over))
started = {pid for (k, pid) in per if k == "started"}
t.is_(len(started), PROCESSES, "each process logged the start of the outage once")
summaries = sum(c for (k, _), c in per.items() if k == "summary")
t.ok(PROCESSES * (OUTAGE_S // INTERVAL_S - 1) <= summaries <= PROCESSES * (OUTAGE_S // INTERVAL_S + 2),
     "each process summarized the outage every %d s (%d summaries)" % (INTERVAL_S, summaries))
bound = PROCESSES * 20
t.ok(len(lines) <= bound, "%d lines for a %d s outage of %d processes (at most %d)" % (len(lines), OUTAGE_S,
     PROCESSES, bound))
t.ok(d.alive(), "oncebridge is still running")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
