# SPDX-License-Identifier: Apache-2.0
"""MQTT 3.1.1 and MQTT 5 into PostgreSQL, real Mosquitto: every event is
applied once per route when its event ID is published 1-5 times interleaved
with other events. Two brokers connections (one per protocol version), two
routes each: on 3.1.1 both take the event ID from a JSON field (one binds a
topic level as a parameter); on 5 one takes it from a JSON field and one
from a user property."""
import json
import random
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-dedupe")
b.start_servers()
obtest.applied_table(b.pg)
# no unique key: a second application would show as a second row
b.pg.execute("CREATE TABLE levels (event_id text NOT NULL, device text NOT NULL)")

N = 300
rng = random.Random(11)


def stream(prefix, topic_fmt, user_property=None):
    ids = ["%s-%04d-%08x" % (prefix, i, rng.getrandbits(32)) for i in range(N)]
    items = []
    for e in ids:
        copies = rng.randint(1, 5)
        topic = topic_fmt % rng.randint(1, 9)
        body = json.dumps({"id": e, "n": copies})
        for _ in range(copies):
            items.append((topic, body, {"UserProperty": [(user_property, e)]}) if user_property else (topic, body))
    rng.shuffle(items)
    return ids, items


ids4, items4 = stream("v4", "v4/dev%d/reading")
ids5, items5 = stream("v5", "v5/dev%d/reading", user_property="event-id")
obtest.note("MQTT 3.1.1: %d events as %d messages; MQTT 5: %d events as %d messages"
            % (N, len(items4), N, len(items5)))

routes4 = [
    obtest.mqtt_route("m4a", "v4/+/reading"),
    obtest.mqtt_route("m4b", "v4/#", sql="INSERT INTO levels (event_id, device) VALUES ($1, $2)",
                      params=["event_id", "topic_level:2"]),
]
routes5 = [
    obtest.mqtt_route("m5json", "v5/+/reading"),
    obtest.mqtt_route("m5prop", "v5/#", event_id="header:event-id"),
]
b.write_config([("10-mosq4.conf", b.mqtt_broker("mosq4", mqtt_version=4), routes4),
                ("20-mosq5.conf", b.mqtt_broker("mosq5", mqtt_version=5), routes5)])
d = b.start()
b.wait_subscribed("mosq4", 2)
b.wait_subscribed("mosq5", 2)
b.mqtt.publish_many(items4, protocol=ot.MQTTv311)
b.mqtt.publish_many(items5, protocol=ot.MQTTv5)

obtest.wait_applied(b.pg, "m4a", N)
obtest.wait_applied(b.pg, "m5json", N)
obtest.wait_applied(b.pg, "m5prop", N)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM levels") >= N, 30, desc="m4b applied")
obtest.exactly_once(t, b.pg, "m4a", ids4)
obtest.exactly_once(t, b.pg, "m5json", ids5)
obtest.exactly_once(t, b.pg, "m5prop", ids5)
t.is_(b.pg.execute("SELECT count(*), count(DISTINCT event_id) FROM levels")[0], (N, N),
      "route m4b applied every 3.1.1 event once")
t.is_(b.pg.scalar("SELECT count(*) FROM levels WHERE device ~ '^dev[1-9]$'"), N,
      "topic_level:2 was bound as a parameter")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events"), 4 * N,
      "processed_events holds one row per (route, event)")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0, "no dead letters")

# the same events again, after they were applied: all duplicates. A new
# event published last on the same connection arrives after them (MQTT
# keeps one publisher's order on a subscription): once it is applied, the
# copies before it were consumed.
end4 = ("v4/dev1/reading", json.dumps({"id": "v4-end", "n": 1}))
end5 = ("v5/dev1/reading", json.dumps({"id": "v5-end", "n": 1}), {"UserProperty": [("event-id", "v5-end")]})
b.mqtt.publish_many(items4[: len(items4) // 2] + [end4], protocol=ot.MQTTv311)
b.mqtt.publish_many(items5[: len(items5) // 2] + [end5], protocol=ot.MQTTv5)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM applied WHERE event_id IN ('v4-end', 'v5-end')") == 3
              and b.pg.scalar("SELECT count(*) FROM levels WHERE event_id = 'v4-end'") == 1, 60,
              desc="the events published after the copies applied")
t.is_(b.pg.scalar("SELECT count(*) FROM applied"), 3 * N + 3, "republished events change nothing")
t.is_(b.pg.execute("SELECT count(*), count(DISTINCT event_id) FROM levels")[0], (N + 1, N + 1),
      "republished events change nothing on route m4b either")
t.ok(d.alive(), "oncebridge is still running")

rc = d.terminate(timeout=20)
t.is_(rc, 0, "SIGTERM stops oncebridge with status 0")
log = b.logs()
t.ok("disconnected from the broker" in log, "the workers disconnect on SIGTERM", diag=log[-2000:])
t.ok("MQTT 3.1.1" in log and "MQTT 5" in log, "both protocol versions were used")
raise SystemExit(t.done())
