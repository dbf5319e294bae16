# SPDX-License-Identifier: Apache-2.0
"""A table of hostile inputs from the network, over AMQP and MQTT 5: a
payload over the limit, JSON nested too deep, invalid UTF-8, NUL bytes in
an event ID and in a routing key, an event ID of 10 kB, thousands of
headers and user properties, SQL metacharacters in every bound field. Each
ends in a dead-letter row with its reason or in a clean apply; the good
messages around them are applied once, the worker keeps running (same
process) and nothing else in the database changes."""
import json

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("hostile")
b.rabbit = ot.RabbitMQ(b.dir)
b.start_servers()
b.pg.execute("CREATE TABLE hostile (id bigserial PRIMARY KEY, route text, event_id text, note text, topic text,"
             " hdr text, payload jsonb)")
b.pg.execute("CREATE TABLE canary (x int)")
b.pg.execute("INSERT INTO canary VALUES (1)")

SQL = "INSERT INTO hostile (route, event_id, note, topic, hdr, payload) VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
PARAMS = ["route", "event_id", "json:note", "topic", "header:x-note", "payload"]
amqp_route = {"name": "h-amqp", "queue": "h-q", "declare_queue": True, "bind_exchange": "amq.topic",
              "bind_keys": ["h.#"], "event_id": "json:id", "sql": SQL, "params": PARAMS}
mqtt_route = {"name": "h-mqtt", "topic": "h/#", "event_id": "json:id", "sql": SQL, "params": PARAMS}
b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit", batch_size=20), [amqp_route]),
                ("20-mosq.conf", b.mqtt_broker(name="mosq", mqtt_version=5), [mqtt_route])],
               limits={"max_payload": 65536, "max_event_id_length": 128, "max_json_depth": 32,
                       "max_headers": 128, "max_topic_length": 256})
b.rabbit.declare_queue("h-q", keys=["h.#"])
d = b.start()
b.wait_subscribed("mosq")
workers = sorted(b.worker_pids())

META = "x'); DROP TABLE canary; -- \\\" $1 %s ;"


def good(i, rk="h.good"):
    return {"exchange": "amq.topic", "routing_key": rk, "body": json.dumps({"id": "good-%d" % i, "note": "fine"})}


# (name, message, expected reason or None for a clean apply)
amqp_cases = [
    ("payload over limits.max_payload",
     {"exchange": "amq.topic", "routing_key": "h.big", "body": json.dumps({"id": "big", "pad": "y" * 200000})},
     "exceeds limits.max_payload"),
    ("JSON nested 100 deep", {"exchange": "amq.topic", "routing_key": "h.deep",
                              "body": '{"id": "deep", "x": ' + "[" * 100 + "]" * 100 + "}"}, "invalid JSON"),
    ("invalid UTF-8 in the payload", {"exchange": "amq.topic", "routing_key": "h.utf",
                                      "body": b'{"id": "utf", "note": "\xff\xfe"}'}, "invalid JSON"),
    ("NUL byte in the event ID", {"exchange": "amq.topic", "routing_key": "h.nul",
                                  "body": '{"id": "a\\u0000b"}'}, "contains control characters"),
    ("NUL byte in the routing key", {"exchange": "amq.topic", "routing_key": "h.a\x00b",
                                     "body": json.dumps({"id": "nul-topic"})}, "topic is not valid UTF-8"),
    ("event ID of 10 kB", {"exchange": "amq.topic", "routing_key": "h.long",
                           "body": json.dumps({"id": "z" * 10240})}, "event ID is too long"),
    ("3000 headers", {"exchange": "amq.topic", "routing_key": "h.hdrs", "body": json.dumps({"id": "hdrs"}),
                      "headers": {"h%d" % i: "v" for i in range(3000)}}, "exceed limits.max_headers"),
    ("SQL metacharacters in every bound field",
     {"exchange": "amq.topic", "routing_key": "h.o'reilly;--", "headers": {"x-note": META},
      "body": json.dumps({"id": "meta-" + META, "note": META})}, None),
]
messages = []
for i, (name, msg, _) in enumerate(amqp_cases):
    messages += [good(2 * i), msg, good(2 * i + 1)]
b.rabbit.publish_many(messages)
b.wait_drained("h-q", timeout=60)

mqtt_cases = [
    ("MQTT: 2000 user properties", ("h/props", json.dumps({"id": "m-props"}),
                                    {"UserProperty": [("p%d" % i, "v") for i in range(2000)]}), "exceed limits.max_headers"),
    ("MQTT: payload over limits.max_payload", ("h/big", json.dumps({"id": "m-big", "pad": "q" * 100000})),
     "exceeds limits.max_payload"),
    ("MQTT: SQL metacharacters in every bound field",
     ("h/o'reilly;--", json.dumps({"id": "m-meta-" + META, "note": META}), {"UserProperty": [("x-note", META)]}), None),
]
items = []
for i, (name, it, _) in enumerate(mqtt_cases):
    items += [("h/good", json.dumps({"id": "m-good-%d" % i, "note": "fine"})), it]
b.mqtt.publish_many(items, qos=1, protocol=ot.MQTTv5)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM hostile WHERE route = 'h-mqtt'") >= len(mqtt_cases) + 1
              and b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE broker = 'mosq'") >= 2, 60,
              desc="MQTT cases settled")

for name, msg, reason in amqp_cases + mqtt_cases:
    if isinstance(msg, dict):
        body = msg["body"] if isinstance(msg["body"], bytes) else msg["body"].encode()
    else:
        body = msg[1].encode()
    if reason is None:
        rows = b.pg.execute("SELECT note, topic, hdr FROM hostile WHERE note = %s", (META,))
        t.ok(any(r[0] == META and r[2] == META for r in rows), "%s: applied cleanly, values stored verbatim" % name,
             diag=str(rows))
    else:
        rows = b.pg.execute("SELECT reason FROM oncebridge.dead_letters WHERE substring(payload from 1 for 40) ="
                            " substring(%s::bytea from 1 for 40) AND reason LIKE %s", (body, "%" + reason + "%"))
        t.ok(len(rows) == 1, "%s: one dead letter, \"%s\"" % (name, reason), diag=str(rows))

t.is_(b.pg.scalar("SELECT count(*) FROM hostile WHERE note = 'fine'"), 2 * len(amqp_cases) + len(mqtt_cases),
      "every good message around them was applied")
t.is_(b.pg.scalar("SELECT count(*) FROM hostile"), 2 * len(amqp_cases) + len(mqtt_cases) + 2,
      "nothing else was applied")
t.is_(b.pg.scalar("SELECT count(*) FROM canary"), 1, "the canary table is untouched")
t.is_(sorted(b.worker_pids()), workers, "the same worker processes are still running")
t.ok(d.alive(), "oncebridge is running")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
