# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL stopped with -m immediate (a crash) in the middle of an MQTT
stream, for longer than 1.5 x the keepalive, then started again. The worker
retries inside messageArrived (see adapters/mqtt.c): the broker drops the
silent connection, the message in the callback commits once the database
is back, and the reconnected session redelivers everything unacked. Nothing
lost, nothing applied twice, the same worker process recovers by itself.
Then SIGTERM while the database is down: the worker exits without acking,
and the next run applies what was left exactly once."""
import re
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-pg-restart")
b.start_servers()
obtest.applied_table(b.pg)

KEEPALIVE = 2
N = 3000
ids, items = obtest.mqtt_stream(N, topic="pg/dev3/reading", dup_ratio=0.1)
b.write_config([("10-mosq.conf", b.mqtt_broker(mqtt_version=4, keepalive=KEEPALIVE),
                 [obtest.mqtt_slow_route("pgr", "pg/+/reading", per_event_ms=1.0)])])
d = b.start()
b.wait_subscribed()
b.mqtt.publish_many(items, protocol=ot.MQTTv311)

at = obtest.wait_progress(b.pg, N // 4)
workers = b.worker_pids()
mlog = len(b.mqtt.log())
b.pg.stop(mode="immediate")
t.ok(at < N, "PostgreSQL crashed mid-stream (%d of %d applied)" % (at, N))
time.sleep(3 * KEEPALIVE)
t.ok(d.alive(), "oncebridge survives the database outage")
dropped = "has exceeded timeout" in b.mqtt.log()[mlog:]
obtest.note("with a backlog queued to it, the broker %s the blocked connection after %d s (keepalive %d s)"
            % ("dropped" if dropped else "did not drop", 3 * KEEPALIVE, KEEPALIVE))
b.pg.start_again()

obtest.wait_applied(b.pg, "pgr", N, timeout=120)
obtest.exactly_once(t, b.pg, "pgr", ids)
t.is_(b.pg.scalar("SELECT count(*) FROM applied"), N, "one row per event published")
t.is_(b.worker_pids(), workers, "the same worker process recovered by itself")
log = b.logs()
t.ok(re.search(r"the message on \S+ settled after \d+ attempts", log), "the message in the callback was retried there",
     diag=log[-3000:])

# 2. an idle stream: the database goes down, one message arrives and its
# callback blocks past the keepalive; the broker drops the connection
olog, mlog = len(b.logs()), len(b.mqtt.log())
b.pg.stop(mode="immediate")
b.mqtt.publish_many([("pg/dev5/reading", '{"id": "lonely", "n": 1}')], protocol=ot.MQTTv311)
t.eventually(lambda: "has exceeded timeout" in b.mqtt.log()[mlog:], 20,
             "the broker dropped the connection whose callback blocked past 1.5 x keepalive")
b.pg.start_again()
obtest.wait_applied(b.pg, "pgr", N + 1, timeout=60)
ot.wait_until(lambda: "session resumed" in b.logs()[olog:], 30, desc="the session to be resumed")
time.sleep(1)
log = b.logs()[olog:]
t.ok("lost the broker connection" in log, "paho reported the lost connection after the callback returned",
     diag=log[-3000:])
t.ok("session resumed" in log, "the worker reconnected and resumed its session", diag=log[-3000:])
t.is_(b.pg.scalar("SELECT count(*) FROM applied WHERE event_id = 'lonely'"), 1,
      "the message committed in the blocked callback and redelivered after the reconnect was applied once")
t.is_(b.worker_pids(), workers, "still the same worker process")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0,
      "no event was dead-lettered for a transient failure")

# SIGTERM while the database is down: exit without acking
ids2, items2 = obtest.mqtt_stream(500, topic="pg/dev4/reading", dup_ratio=0.0, prefix="late")
b.mqtt.publish_many(items2, protocol=ot.MQTTv311)
obtest.wait_progress(b.pg, N + 51)
b.pg.stop(mode="immediate")
time.sleep(1)
rc = d.terminate(timeout=20)
t.is_(rc, 0, "SIGTERM with the database down stops oncebridge with status 0")
t.ok("not applied; the broker will redeliver it" in b.logs(), "the worker left its message unacked",
     diag=b.logs()[-2000:])
b.pg.start_again()
d = b.start()
b.wait_subscribed()
obtest.wait_applied(b.pg, "pgr", N + 501, timeout=60)
obtest.exactly_once(t, b.pg, "pgr", ids + ["lonely"] + ids2)
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
