# SPDX-License-Identifier: Apache-2.0
"""Scale-out with an MQTT 5 shared subscription ($share/GROUP/filter):
first the commit-bound throughput of one worker and of two workers sharing
the subscription (each with its own stable client ID), then one of the two
workers killed mid-stream and restarted by the supervisor: every event
applied exactly once."""
import os
import signal
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-shared")
b.start_servers()
obtest.applied_table(b.pg)
# which worker applied a row: each has its own database session
b.pg.execute("ALTER TABLE applied ADD COLUMN backend integer DEFAULT pg_backend_pid()")


def measure(workers, n, prefix):
    # a new client ID and share group per setup: a session left behind by
    # another worker count stays a member of its group and keeps its share
    group = "g%d" % workers
    ids, items = obtest.mqtt_stream(n, topic="sh/dev1/reading", dup_ratio=0.0, prefix=prefix)
    b.write_config([("10-mosq.conf", b.mqtt_broker(mqtt_version=5, client_id="ob-" + group, workers=workers),
                    [obtest.mqtt_route("sh", "$share/%s/sh/+/reading" % group)])])
    d = b.start()
    b.wait_subscribed(count=workers)
    before = obtest.progress(b.pg)
    b.mqtt.publish_many(items, protocol=ot.MQTTv5)     # queued while being consumed
    t0 = time.monotonic()
    ot.wait_until(lambda: obtest.progress(b.pg) >= before + n, 60, interval=0.02, desc="%d applied" % n)
    rate = n / (time.monotonic() - t0)
    d.terminate(timeout=20)
    return ids, rate


ids1, rate1 = measure(1, 3000, "one")
ids2, rate2 = measure(2, 3000, "two")
obtest.note("commit-bound throughput: 1 worker %.0f messages/s, 2 workers on $share/ %.0f messages/s" % (rate1, rate2))
sessions = b.pg.scalar("SELECT count(DISTINCT backend) FROM applied WHERE event_id = ANY(%s)", (ids2,))
t.is_(sessions, 2, "with two workers on the shared subscription, both applied part of the stream")
log = b.logs()
t.ok('as "ob-g2-0"' in log and 'as "ob-g2-1"' in log, "each worker has its own stable client ID")

# two workers, one killed mid-stream
N = 4000
ids3, items3 = obtest.mqtt_stream(N, topic="sh/dev2/reading", dup_ratio=0.1, prefix="k")
b.write_config([("10-mosq.conf", b.mqtt_broker(mqtt_version=5, client_id="ob-g2", workers=2),
                 [obtest.mqtt_slow_route("sh", "$share/g2/sh/+/reading", per_event_ms=1.0)])])
d = b.start()
b.wait_subscribed(count=2)
start = obtest.progress(b.pg)
pub = obtest.publish_in_background(b.mqtt, items3, protocol=ot.MQTTv5)
obtest.wait_progress(b.pg, start + N // 4)
workers = b.worker_pids()
t.is_(len(workers), 2, "two worker processes")
os.kill(workers[0], signal.SIGKILL)
at = obtest.progress(b.pg) - start
t.ok(at < N, "one worker killed mid-stream (%d of %d applied)" % (at, N))
ot.wait_until(lambda: [p for p in b.worker_pids() if p not in workers], 15, desc="a new worker")
pub.join(120)
t.ok(pub.error is None, "every message was published", diag=repr(pub.error))
obtest.wait_applied(b.pg, "sh", 6000 + N, timeout=120)
obtest.exactly_once(t, b.pg, "sh", ids1 + ids2 + ids3)
t.is_(b.pg.scalar("SELECT count(*) FROM applied"), 6000 + N, "one row per event published")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
