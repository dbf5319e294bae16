# SPDX-License-Identifier: Apache-2.0
"""systemd integration without systemd: NOTIFY_SOCKET points at a datagram
socket this test listens on. READY=1 comes only once PostgreSQL answers
(the daemon starts while the database is down); STATUS= lines say what it
waits for; WATCHDOG=1 pings flow while workers make progress and stop when
a worker is wedged on a locked table (health.stall_timeout_ms), while
/health answers 503 naming it; both recover when the lock goes, and every
event is applied once. SIGHUP sends RELOADING=1 then READY=1, SIGTERM
STOPPING=1. Real Mosquitto and PostgreSQL."""
import json
import os
import signal
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("systemd-notify")
b.start_servers()
obtest.applied_table(b.pg)
listener = obtest.NotifyListener(b.dir)
port = ot.free_port()
STALL_MS = 2000
b.write_config([("10-mosq.conf", b.mqtt_broker("mosq"), [obtest.mqtt_route("r1", "dev/#")])],
               database={"conninfo": b.pg.conninfo, "statement_timeout_ms": 0},
               health={"stall_timeout_ms": STALL_MS},
               metrics={"listen": "127.0.0.1:%d" % port})

# start while PostgreSQL is down: no READY until it answers
b.pg.stop()
d = b.start(env=listener.env(watchdog_usec=1000000))
time.sleep(3)
t.ok(not listener.has("READY=1"), "no READY=1 while the database is down")
t.ok("waiting for the database" in listener.statuses(), "STATUS= says it waits for the database",
     diag=str(listener.statuses()))
status, body = obtest.http_get("http://127.0.0.1:%d/health" % port)
t.ok(status == 503 and "not connected to the database" in body,
     "/health is 503 while the worker has had no database for stall_timeout_ms", diag="%s %s" % (status, body))
b.pg.start_again()
t0 = time.monotonic()
t.eventually(lambda: listener.has("READY=1"), 30, "READY=1 once PostgreSQL answers")
obtest.note("READY=1 %.1f s after PostgreSQL came back" % (time.monotonic() - t0))
b.wait_subscribed("mosq")

# steady state: pings every half WATCHDOG_USEC
since = time.monotonic()
time.sleep(2.2)
pings = listener.count("WATCHDOG=1", since)
t.ok(pings >= 3, "watchdog pinged %d times in 2.2 s (WATCHDOG_USEC 1 s)" % pings)
status, body = obtest.http_get("http://127.0.0.1:%d/health" % port)
t.is_(status, 200, "/health is 200 while the worker makes progress")
samples = obtest.parse_prometheus(obtest.http_get("http://127.0.0.1:%d/metrics" % port)[1])
t.is_(obtest.metric(samples, "oncebridge_broker_connected", broker="mosq", index="0"), 1.0,
      "oncebridge_broker_connected is 1 once subscribed")

ids, items = obtest.mqtt_stream(300, topic="dev/1/reading", dup_ratio=0.1)
b.mqtt.publish_many(items[:100], protocol=ot.MQTTv5)
first = set(json.loads(x[1])["id"] for x in items[:100])
obtest.wait_applied(b.pg, "r1", len(first), settle=0.2)

# wedge the worker: its business table is locked, a message waits
lock = b.pg.connect(autocommit=False)
lock.cursor().execute("LOCK TABLE applied IN ACCESS EXCLUSIVE MODE")
locked_at = time.monotonic()
b.mqtt.publish_many(items[100:], protocol=ot.MQTTv5)


def unhealthy():
    st, text = obtest.http_get("http://127.0.0.1:%d/health" % port)
    return text if st == 503 else None


text = ot.wait_until(unhealthy, 15, interval=0.1, desc="/health 503")
took = time.monotonic() - locked_at
obtest.note("/health answered 503 %.1f s after the lock (stall_timeout_ms %d): %s" % (took, STALL_MS, text.strip()))
t.ok(took < STALL_MS / 1000.0 + 2.0, "/health reports the stall within stall_timeout_ms + 2 s (%.1f s)" % took)
t.ok('broker "mosq"' in text, "/health names the stalled broker", diag=text)
time.sleep(0.6)   # a ping may have left just before the stall was seen
since = time.monotonic()
time.sleep(2.5)
t.is_(listener.count("WATCHDOG=1", since), 0, "no watchdog ping while the worker is stalled")
t.ok(any("stalled" in s for s in listener.statuses(since - 3)), "STATUS= reports the stall",
     diag=str(listener.statuses(since - 3)[-3:]))
samples = obtest.parse_prometheus(obtest.http_get("http://127.0.0.1:%d/metrics" % port)[1])
t.is_(obtest.metric(samples, "oncebridge_worker_stalled", broker="mosq", index="0"), 1.0,
      "oncebridge_worker_stalled is 1")

lock.rollback()
lock.close()
t.eventually(lambda: obtest.http_get("http://127.0.0.1:%d/health" % port)[0] == 200, 15,
             "/health is 200 again once the lock is gone")
since = time.monotonic()
time.sleep(1.5)
t.ok(listener.count("WATCHDOG=1", since) >= 2, "watchdog pings resume")
obtest.wait_applied(b.pg, "r1", len(ids))
obtest.exactly_once(t, b.pg, "r1", ids)

since = time.monotonic()
os.kill(d.pid, signal.SIGHUP)
ot.wait_until(lambda: listener.has("READY=1", since), 10, desc="READY=1 after reload")
t.ok(listener.has("RELOADING=1", since), "SIGHUP: RELOADING=1, then READY=1")
since = time.monotonic()
t.is_(d.terminate(timeout=20), 0, "SIGTERM stops it with status 0")
t.ok(listener.has("STOPPING=1", since), "SIGTERM: STOPPING=1")
raise SystemExit(t.done())
