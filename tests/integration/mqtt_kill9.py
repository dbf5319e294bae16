# SPDX-License-Identifier: Apache-2.0
"""kill -9 of oncebridge while thousands of QoS 1 messages flow over MQTT 5,
then a restart that resumes the persistent session; then kill -9 of the
worker alone, which the supervisor restarts. Every event's effect is present
exactly once: rows are counted against what was published."""
import os
import signal
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-kill9")
b.start_servers()
obtest.applied_table(b.pg)

N = 5000
ids, items = obtest.mqtt_stream(N, topic="k9/dev7/reading", dup_ratio=0.1)
obtest.note("%d events as %d QoS 1 messages" % (N, len(items)))
b.write_config([("10-mosq.conf", b.mqtt_broker(mqtt_version=5),
                 [obtest.mqtt_slow_route("k9", "k9/+/reading", per_event_ms=1.0)])])

d = b.start()
b.wait_subscribed()
pub = obtest.publish_in_background(b.mqtt, items, protocol=ot.MQTTv5)

# 1. the whole daemon killed with SIGKILL mid-stream
at = obtest.wait_progress(b.pg, N // 5)
d.kill(signal.SIGKILL)
t.ok(at < N, "oncebridge was killed mid-stream (%d of %d applied)" % (at, N))

# 2. restarted: it resumes its session; then the worker alone is killed
d = b.start()
b.wait_subscribed()
at2 = obtest.wait_progress(b.pg, at + N // 4)
workers = ot.wait_until(lambda: b.worker_pids(), 10, desc="a worker")
os.kill(workers[0], signal.SIGKILL)
t.ok(at2 < N, "the worker was killed mid-stream (%d of %d applied)" % (at2, N))
ot.wait_until(lambda: [p for p in b.worker_pids() if p not in workers], 15, desc="a new worker")

pub.join(120)
t.ok(not pub.is_alive() and pub.error is None, "every message was published and acknowledged by the broker",
     diag=repr(pub.error))
t0 = time.monotonic()
obtest.wait_applied(b.pg, "k9", N, timeout=120)
obtest.exactly_once(t, b.pg, "k9", ids)
t.is_(b.pg.scalar("SELECT count(*) FROM applied"), N, "one row per event published (%d)" % N)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0, "no dead letters")
log = b.logs()
t.ok("session resumed" in log, "the restarted worker resumed its persistent session")
t.ok("restarting it in" in log, "the supervisor logged the worker's restart")
t.ok(d.alive(), "oncebridge is running after both kills")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
