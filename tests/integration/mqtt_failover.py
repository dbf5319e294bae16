# SPDX-License-Identifier: Apache-2.0
"""Several servers for one MQTT broker (url, then failover_urls), with two
Mosquitto instances that do NOT share sessions (Mosquitto has no
clustering), to show what is and is not guaranteed.

A backlog is published to server A and is being applied when A stops
(SIGTERM: it saves its state, the session and the messages it holds for
oncebridge). The worker and the outbox relay move to server B by
themselves; B has no session for the client ID, so a new one starts there
and oncebridge logs that the old one's messages are not delivered here.
Guaranteed: every event published to B after the move, and every outbox
row, applied exactly once; nothing applied twice. Not guaranteed: what A's
session still held -- it stays on A, undelivered while oncebridge uses B.
When B stops and A is back, oncebridge returns to A, resumes that session
and A's backlog is applied, each event exactly once (had A's state been
lost, those events would have been lost with it)."""
import os
import re
import time

import obtest
import oncetest as ot

T0 = time.monotonic()
t = ot.TAP()
b = obtest.MQTTBridge("mqtt-failover")
second = ot.Mosquitto(os.path.join(b.dir, "second"))
os.makedirs(second.basedir, exist_ok=True)
ot.start_all(b.pg, b.mqtt, second)
b.install_schema()
obtest.applied_table(b.pg)
A, B = "tcp://127.0.0.1:%d" % b.mqtt.port, "tcp://127.0.0.1:%d" % second.port

N1, N2, NOUT = 1000, 500, 200
ids1, items1 = obtest.mqtt_stream(N1, topic="fo/a/reading", prefix="fa", seed=1)
ids2, items2 = obtest.mqtt_stream(N2, topic="fo/b/reading", prefix="fb", seed=2)
out_ids = ["fo-out-%04d" % i for i in range(NOUT)]
broker = b.mqtt_broker(name="mosq", client_id="ob-fo", keepalive=5,
                       failover_urls=["mqtt://127.0.0.1:%d" % second.port])
b.write_config([("10-mosq.conf", broker, [
    obtest.mqtt_slow_route("fo", "fo/+/reading", per_event_ms=2.0),
    obtest.mqtt_route("fo-out", "foout/#", event_id="header:event_id", params=["route", "event_id", "json:n"])])])
with open(os.path.join(b.confdir, "conf.d", "10-mosq.conf"), "a") as f:
    f.write("outbox = { poll_interval_ms = 100; };\n")

d = b.start()
b.wait_subscribed()
t.ok(re.search(r"broker mosq: connected to %s as" % re.escape(A), d.log()), "the worker connected to url (A)")

# a backlog on A, being applied when A stops
b.mqtt.publish_many(items1, protocol=ot.MQTTv5)
obtest.note("servers up and subscribed at %.1f s" % (time.monotonic() - T0))
obtest.wait_progress(b.pg, 200, timeout=60)
t0 = time.monotonic()
b.mqtt.stop()
applied_at_stop = obtest.applied_events(b.pg, "fo")
obtest.note("A stopped with %d of %d events applied" % (applied_at_stop, N1))
d.wait_log(r"broker mosq: connected to %s as" % re.escape(B), timeout=60)
moved = time.monotonic() - t0
b.wait_subscribed(count=2)
obtest.note("the worker was on B %.1f s after A stopped" % moved)
t.ok(re.search(r"%s has no session for \"ob-fo\": messages that the session on %s held unacked are not delivered"
               % (re.escape(B), re.escape(A)), d.log()),
     "moving to a server without the session is logged as such")

# on B: a new stream and outbox rows (the relay moves to B too)
second.publish_many(items2, protocol=ot.MQTTv5)
for e in out_ids:
    b.pg.execute("SELECT oncebridge.emit('mosq', 'foout/x', '{\"n\": 1}'::jsonb, %s)", (e,))
obtest.wait_applied(b.pg, "fo-out", NOUT, timeout=90, settle=0)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM applied WHERE route = 'fo' AND event_id LIKE 'fb-%%'") >= N2,
              90, interval=0.1, desc="B's stream applied")
time.sleep(1)
obtest.exactly_once(t, b.pg, "fo-out", out_ids)
t.ok(re.search(r"relay mosq: connected to %s for publishing" % re.escape(B), d.log()), "the relay moved to B")
fb = b.pg.execute("SELECT event_id, count(*) FROM applied WHERE route = 'fo' AND event_id LIKE 'fb-%%'"
                  " GROUP BY event_id")
t.ok(len(fb) == N2 and all(c == 1 for _, c in fb), "guaranteed: every event published to B applied exactly once "
     "(%d of %d)" % (len(fb), N2))
fa = b.pg.execute("SELECT event_id, count(*) FROM applied WHERE route = 'fo' AND event_id LIKE 'fa-%%'"
                  " GROUP BY event_id")
held = N1 - len(fa)
t.ok(all(c == 1 for _, c in fa), "no event of A's backlog applied twice")
t.ok(held > 0, "not guaranteed: %d events that A's session held were not delivered through B" % held)

# B stops, A is back: oncebridge returns to A and resumes the session
obtest.note("B's part done at %.1f s" % (time.monotonic() - T0))
b.mqtt.start()
second.stop()
t0 = time.monotonic()
d.wait_log(r"broker mosq: connected to %s as \"ob-fo\" \(MQTT 5, session resumed\)" % re.escape(A), timeout=60)
obtest.note("back on A %.1f s after B stopped" % (time.monotonic() - t0))
obtest.wait_applied(b.pg, "fo", N1 + N2, timeout=120)
obtest.exactly_once(t, b.pg, "fo", ids1 + ids2)
obtest.note("A's %d held events applied once after returning to A" % held)
t.is_(d.terminate(timeout=20), 0, "clean stop")
obtest.note("run time %.1f s" % (time.monotonic() - T0))
raise SystemExit(t.done())
