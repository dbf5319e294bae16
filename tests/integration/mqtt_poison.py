# SPDX-License-Identifier: Apache-2.0
"""Poison MQTT messages (not JSON, no event ID, a business SQL error) go to
dead_letters with their topic and reason, are acked, and the stream keeps
moving: the good events around them are applied exactly once."""
import json

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-poison")
b.start_servers()
b.pg.execute("CREATE TABLE applied (id bigserial PRIMARY KEY, route text NOT NULL, event_id text NOT NULL,"
             " n integer CHECK (n >= 0), at timestamptz NOT NULL DEFAULT clock_timestamp())")
b.write_config([("10-mosq.conf", b.mqtt_broker(mqtt_version=4), [obtest.mqtt_route("po", "po/+/reading")])])
d = b.start()
b.wait_subscribed()

good = ["good-%03d" % i for i in range(200)]
items = [("po/dev1/reading", json.dumps({"id": e, "n": i})) for i, e in enumerate(good)]
poison = [("po/dev2/reading", "this is not json"),
          ("po/dev3/reading", json.dumps({"n": 1})),                 # no event ID
          ("po/dev4/reading", json.dumps({"id": "neg", "n": -1}))]   # 23514 from the CHECK
for i, p in enumerate(poison):
    items.insert(50 * (i + 1), p)
b.mqtt.publish_many(items, protocol=ot.MQTTv311)

obtest.wait_applied(b.pg, "po", len(good), timeout=60)
obtest.exactly_once(t, b.pg, "po", good)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters") >= 3, 30, desc="3 dead letters")
rows = b.pg.execute("SELECT topic, reason, coalesce(sqlstate, '') FROM oncebridge.dead_letters ORDER BY topic")
obtest.note("dead letters: %r" % (rows,))
t.is_(len(rows), 3, "each poison message has one dead letter")
t.ok(any("JSON" in r[1] or "json" in r[1] for r in rows if r[0] == "po/dev2/reading"), "invalid JSON is named")
t.ok(any(r[2] == "23514" for r in rows if r[0] == "po/dev4/reading"), "the business SQL error keeps its SQLSTATE")
t.ok(d.alive(), "oncebridge is still running")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
