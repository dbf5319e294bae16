# SPDX-License-Identifier: Apache-2.0
"""The outbox relay to Mosquitto, MQTT 5 and MQTT 3.1.1. Thousands of
events emitted in committed transactions (some in rolled-back ones) arrive
at a real subscriber, none of the rolled-back ones; each carries its event
ID (MQTT 5: user property "event_id"; 3.1.1: the payload envelope). kill -9
of oncebridge and a Mosquitto restart mid-publish: every committed event
arrives at least once, and oncebridge routes consuming the topics apply
each exactly once. The second half bridges AMQP to MQTT: an AMQP route
emitting to the MQTT outbox with the original event ID."""
import json
import signal

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("outbox-mqtt")
b.rabbit = ot.RabbitMQ(b.dir)
b.start_servers()
obtest.applied_table(b.pg)

# relay destinations: mosq5 (MQTT 5) and mosq3 (MQTT 3.1.1); routes on the
# same broker consume what the relays publish
in5 = obtest.mqtt_route("in5", "orders5/#", event_id="header:event_id", params=["route", "event_id", "json:order"])
in3 = obtest.mqtt_route("in3", "orders3/#", event_id="json:event_id",
                        params=["route", "event_id", "json:payload.order"])
bridge_in = {
    "name": "amqp-to-mqtt",
    "queue": "to-mqtt-q",
    "declare_queue": True,
    "bind_exchange": "amq.topic",
    "bind_keys": ["fwd.#"],
    "event_id": "property:message_id",
    "sql": "SELECT oncebridge.emit('mosq5', 'orders5/bridged', $1::jsonb, $2)",
    "params": ["payload", "event_id"],
}
b.write_config([
    ("10-mosq5.conf", b.mqtt_broker(name="mosq5", client_id="ob-mosq5", mqtt_version=5), [in5]),
    ("20-mosq3.conf", b.mqtt_broker(name="mosq3", client_id="ob-mosq3", mqtt_version=4), [in3]),
    ("30-rabbit.conf", b.amqp_broker(name="rabbit"), [bridge_in]),
])
for fn in ("10-mosq5.conf", "20-mosq3.conf"):
    with open(b.config.replace("oncebridge.conf", "conf.d/" + fn), "a") as f:
        f.write("outbox = { batch_size = 200; poll_interval_ms = 200; };\n")
b.rabbit.declare_queue("to-mqtt-q", keys=["fwd.#"])
watch5 = b.mqtt.subscribe("orders5/#", protocol=ot.MQTTv5)
watch3 = b.mqtt.subscribe("orders3/#", protocol=ot.MQTTv311)

conn = b.pg.connect(autocommit=False)


def emit(dest, prefix, first, count, per_tx=100, rollback_every=0):
    committed, rolled = [], []
    cur = conn.cursor()
    for start in range(first, first + count, per_tx):
        n = min(per_tx, first + count - start)
        cur.execute("SELECT oncebridge.emit(%s, %s || '/' || (g %% 5), jsonb_build_object('order', g))"
                    " FROM generate_series(%s, %s) AS g", (dest, prefix, start, start + n - 1))
        ids = [r[0] for r in cur.fetchall()]
        if rollback_every and (start // per_tx) % rollback_every == rollback_every - 1:
            conn.rollback()
            rolled += ids
        else:
            conn.commit()
            committed += ids
    return committed, rolled


def ids5():
    out = []
    for m in list(watch5.messages):
        props = dict(getattr(m.properties, "UserProperty", []) or [])
        out.append((props.get("event_id"), json.loads(m.payload)))
    return out


def ids3():
    return [(e["event_id"], e) for e in (json.loads(m.payload) for m in list(watch3.messages))]


d = b.start()
b.wait_subscribed("mosq5")
b.wait_subscribed("mosq3")
c5, r5 = emit("mosq5", "orders5", 0, 3000, rollback_every=6)
c3, r3 = emit("mosq3", "orders3", 0, 3000, rollback_every=6)
obtest.note("%d + %d committed, %d + %d rolled back" % (len(c5), len(c3), len(r5), len(r3)))
ot.wait_until(lambda: set(c5) <= {e for e, _ in ids5()} and set(c3) <= {e for e, _ in ids3()}, 120,
              interval=0.2, desc="all committed events at the subscribers")
got5, got3 = ids5(), ids3()
t.ok(set(c5) <= {e for e, _ in got5}, "MQTT 5: every committed event arrived (%d)" % len(c5))
t.ok(set(c3) <= {e for e, _ in got3}, "MQTT 3.1.1: every committed event arrived (%d)" % len(c3))
t.ok(not (set(r5) & {e for e, _ in got5}) and not (set(r3) & {e for e, _ in got3}), "no rolled-back event arrived")
t.ok(all(e and "order" in p for e, p in got5), "MQTT 5: the event ID travels as the user property event_id")
t.ok(all(e and "order" in p["payload"] for e, p in got3), "MQTT 3.1.1: the event ID and payload travel in the envelope")
obtest.wait_applied(b.pg, "in5", len(c5), timeout=90)
obtest.wait_applied(b.pg, "in3", len(c3), timeout=90)
obtest.exactly_once(t, b.pg, "in5", c5)
obtest.exactly_once(t, b.pg, "in3", c3)

# kill -9 mid-publish
more5, _ = emit("mosq5", "orders5", 10000, 8000, per_tx=8000)
base = len(c5) + len(c3)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NOT NULL") >= base + 800,
              60, interval=0.005, desc="publishing under way")
d.kill(signal.SIGKILL)
pub = b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NOT NULL")
t.ok(pub < base + len(more5), "oncebridge killed mid-publish (%d of %d published)" % (pub - base, len(more5)))
d = b.start()
obtest.wait_applied(b.pg, "in5", len(c5) + len(more5), timeout=120)
obtest.exactly_once(t, b.pg, "in5", c5 + more5)

# Mosquitto restarted mid-publish
last5, _ = emit("mosq5", "orders5", 20000, 8000, per_tx=8000)
base += len(more5)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NOT NULL") >= base + 800,
              60, interval=0.005, desc="publishing under way")
b.mqtt.restart()
t.ok(b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL") > 0,
     "Mosquitto restarted mid-publish")
obtest.wait_applied(b.pg, "in5", len(c5) + len(more5) + len(last5), timeout=180)
obtest.exactly_once(t, b.pg, "in5", c5 + more5 + last5)

# AMQP -> MQTT bridging: RabbitMQ messages with duplicates, forwarded once
fwd_ids, fwd = obtest.event_stream(1000, dup_ratio=0.2, routing_key="fwd.x")
for m in fwd:
    m["message_id"] = json.loads(m["body"])["id"]
    m["body"] = json.dumps({"order": 100000 + json.loads(m["body"])["n"]})
b.rabbit.publish_many(fwd)
b.wait_drained("to-mqtt-q")
emitted = b.pg.execute("SELECT event_id FROM oncebridge.outbox WHERE topic = 'orders5/bridged'")
t.is_(len(emitted), len(fwd_ids), "each AMQP event was forwarded to the MQTT outbox")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0,
      "none twice (a second emit breaks the outbox's unique key and is dead-lettered)")
t.ok({e for (e,) in emitted} == set(fwd_ids), "forwarded events keep their AMQP message_id as event ID")
obtest.wait_applied(b.pg, "in5", len(c5) + len(more5) + len(last5) + len(fwd_ids), timeout=120)
obtest.exactly_once(t, b.pg, "in5", c5 + more5 + last5 + fwd_ids)

t.ok(d.alive(), "oncebridge recovered by itself")
t.is_(d.terminate(timeout=20), 0, "clean stop")
watch5.close()
watch3.close()
raise SystemExit(t.done())
