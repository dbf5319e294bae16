# SPDX-License-Identifier: Apache-2.0
"""Mosquitto (persistence on) restarted while oncebridge consumes a backlog
over MQTT 3.1.1: the worker reconnects with backoff, resumes its persistent
session, and every event is applied exactly once, including events published
after the restart."""

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-mosquitto-restart")
b.start_servers()
obtest.applied_table(b.pg)

N = 3000
ids, items = obtest.mqtt_stream(N, topic="mr/dev1/reading", dup_ratio=0.1)
ids2, items2 = obtest.mqtt_stream(1000, topic="mr/dev2/reading", dup_ratio=0.1, prefix="after")
b.write_config([("10-mosq.conf", b.mqtt_broker(mqtt_version=4),
                 [obtest.mqtt_slow_route("mr", "mr/+/reading", per_event_ms=1.0)])])
d = b.start()
b.wait_subscribed()
b.mqtt.publish_many(items, protocol=ot.MQTTv311)

at = obtest.wait_progress(b.pg, N // 4)
workers = b.worker_pids()
b.mqtt.restart()
t.ok(at < N, "Mosquitto restarted mid-stream (%d of %d applied)" % (at, N))
b.mqtt.publish_many(items2, protocol=ot.MQTTv311)

obtest.wait_applied(b.pg, "mr", N + 1000, timeout=120)
obtest.exactly_once(t, b.pg, "mr", ids + ids2)
t.is_(b.pg.scalar("SELECT count(*) FROM applied"), N + 1000, "one row per event published")
t.is_(b.worker_pids(), workers, "the same worker process reconnected by itself")
log = b.logs()
t.ok("lost the broker connection" in log or "could not connect" in log, "the broker restart was noticed",
     diag=log[-2000:])
t.ok("session resumed" in log, "the worker resumed its persistent session", diag=log[-2000:])
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0, "no dead letters")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
