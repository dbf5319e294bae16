# SPDX-License-Identifier: Apache-2.0
"""A slow database for one MQTT broker connection does not stall another:
two brokers connections (two worker processes, two client IDs) on one
Mosquitto; the first one's table is locked so its callback blocks inside a
transaction, while the second keeps applying. Counts what the second
applied while the first was blocked, then releases the lock: both exactly
once."""
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-isolation")
b.start_servers()
obtest.applied_table(b.pg, "slow_applied")
obtest.applied_table(b.pg, "fast_applied")

N = 2000
ids_a, items_a = obtest.mqtt_stream(200, topic="a/dev1/reading", dup_ratio=0.0, prefix="a")
ids_b, items_b = obtest.mqtt_stream(N, topic="b/dev1/reading", dup_ratio=0.0, prefix="b")
b.write_config([("10-a.conf", b.mqtt_broker("brk-a", mqtt_version=5),
                 [obtest.mqtt_route("ra", "a/#", sql_table="slow_applied")]),
                ("20-b.conf", b.mqtt_broker("brk-b", mqtt_version=5),
                 [obtest.mqtt_route("rb", "b/#", sql_table="fast_applied")])],
               database={"conninfo": b.pg.conninfo, "statement_timeout_ms": 0})
d = b.start()
b.wait_subscribed("brk-a")
b.wait_subscribed("brk-b")

# block broker a: its business table is locked by another session
lock = b.pg.connect(autocommit=False)
cur = lock.cursor()
cur.execute("LOCK TABLE slow_applied IN ACCESS EXCLUSIVE MODE")
b.mqtt.publish_many(items_a, protocol=ot.MQTTv5)
time.sleep(1)
t0 = time.monotonic()
b.mqtt.publish_many(items_b, protocol=ot.MQTTv5)
ot.wait_until(lambda: obtest.progress(b.pg, "fast_applied") >= N, 60, interval=0.05, desc="broker b applied")
elapsed = time.monotonic() - t0
waiting = b.pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
obtest.note("while broker a was blocked on a lock, broker b applied %d messages in %.1f s (%.0f/s)"
            % (N, elapsed, N / elapsed))
t.ok(waiting >= 1, "broker a's transaction is blocked on the lock (%d waiting)" % waiting)
t.is_(obtest.progress(b.pg, "fast_applied"), N, "broker b applied all %d messages while a was blocked" % N)
lock.rollback()
lock.close()

obtest.wait_applied(b.pg, "ra", 200, table="slow_applied", timeout=60)
obtest.exactly_once(t, b.pg, "ra", ids_a, table="slow_applied")
obtest.exactly_once(t, b.pg, "rb", ids_b, table="fast_applied")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
