# SPDX-License-Identifier: Apache-2.0
"""Payload formats beyond JSON, through the same routes: CBOR, MessagePack
and Sparkplug B messages encoded by independent encoders (Debian's
python3-cbor2, python3-msgpack and python3-protobuf with the project's
sparkplug_b.proto compiled by protoc) over AMQP and MQTT 5, each event
published 1-3 times and interleaved with poison, are applied exactly once
with the right column values: integers beyond 2^53 (and beyond int64),
negative integers, floats, booleans, nulls, nested maps and arrays, text
with multibyte UTF-8, byte strings bound as bytea, and the whole payload as
jsonb. Payloads that do not decode are dead-lettered with a reason naming
the format and the offset."""
import os
import random
import subprocess
import sys

import cbor2
import msgpack

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("formats")
b.rabbit = ot.RabbitMQ(b.dir)
b.start_servers()
pbdir = os.path.join(b.dir, "pb")
os.makedirs(pbdir)
subprocess.run(["protoc", "--python_out=" + pbdir, "--proto_path=" + os.path.join(obtest.SRCDIR, "bridge", "core"),
                "sparkplug_b.proto"], check=True)
sys.path.insert(0, pbdir)
import sparkplug_b_pb2 as spb  # noqa: E402

b.pg.execute("CREATE TABLE fmt (route text NOT NULL, event_id text NOT NULL, big numeric, neg bigint, f float8,"
             " flag boolean, nothing text, label text, raw bytea, nested text, doc jsonb)")
SQL = ("INSERT INTO fmt (route, event_id, big, neg, f, flag, nothing, label, raw, nested, doc)"
       " VALUES ($1, $2, $3::numeric, $4::bigint, $5::float8, $6::boolean, $7, $8, $9::bytea, $10, $11::jsonb)")
PARAMS = ["route", "event_id", "field:big", "field:neg", "field:f", "field:flag", "field:nothing", "field:label",
          "field:raw", "field:nested.list.1", "payload"]
# Sparkplug B: the same document as metrics (an edge node's payload), read by index
SPB_PARAMS = ["route", "event_id"] + ["field:metrics.%d.value" % k for k in range(1, 8)] + [
    "field:metrics.8.value.rows.0.1", "payload"]


def spb_encode(d):
    p = spb.Payload(timestamp=1732867200000, seq=0)
    if "id" not in d:
        return p.SerializeToString()  # no metric: no event ID
    for name, dtype, field, value in (
            ("id", 12, "string_value", d["id"]), ("big", 8, "long_value", d["big"]),
            ("neg", 4, "long_value", d["neg"] % 2**64), ("f", 10, "double_value", d["f"]),
            ("flag", 11, "boolean_value", d["flag"]), ("nothing", 10, None, None),
            ("label", 12, "string_value", d["label"]), ("raw", 17, "bytes_value", d["raw"])):
        m = p.metrics.add(name=name, datatype=dtype)
        if field:
            setattr(m, field, value)
        else:
            m.is_null = True
    m = p.metrics.add(name="nested", datatype=16)
    m.dataset_value.num_of_columns = 2
    m.dataset_value.columns.extend(["k", "deep"])
    m.dataset_value.types.extend([12, 3])
    row = m.dataset_value.rows.add()
    row.elements.add(string_value="v")
    row.elements.add(int_value=d["nested"]["list"][1]["deep"])
    return p.SerializeToString()


ENCODE = {"cbor": cbor2.dumps, "msgpack": lambda d: msgpack.packb(d, use_bin_type=True), "sparkplug_b": spb_encode}
POISON = {"cbor": [(b"\xa1\x62id", "invalid CBOR: unexpected end of input at offset 4"),
                   (b"\x62\xc3\x28", "invalid CBOR: text string at offset 0 is not valid UTF-8")],
          "msgpack": [(b"\x92\x01\xc1", "invalid MessagePack: type byte 0xc1 at offset 2"),
                      (b"\xdd\xff\xff\xff\xff", "invalid MessagePack: array of 4294967295 items at offset 0")],
          "sparkplug_b": [(b"\x12\x05\x0a\x03", "invalid Sparkplug B: malformed or truncated field at offset 0"),
                          (b"\x12\x05\x0a\x03\x61\x00\x62",
                           'invalid Sparkplug B: text field "name" at offset 2 is not valid UTF-8')]}
N = 120


def doc(route, i):
    return {"id": "%s-%04d" % (route, i), "big": 2**64 - 1 - i, "neg": -2**62 - i, "f": i + 0.25,
            "flag": i % 2 == 0, "nothing": None, "label": "zwölf € %d ✓" % i, "raw": bytes([i % 256, 0, 255]),
            "nested": {"list": [0, {"deep": i}], "m": {"k": "v"}}}


rng = random.Random(15)
routes_amqp, routes_mqtt, streams = [], [], {}
for fmt in ("cbor", "msgpack", "sparkplug_b"):
    for proto in ("amqp", "mqtt"):
        name = "%s-%s" % (fmt, proto)
        items = []
        for i in range(N):
            body = ENCODE[fmt](doc(name, i))
            items += [body] * rng.randint(1, 3)
        items += [p for p, _ in POISON[fmt]]
        items.append(ENCODE[fmt]({"label": "no id"}))
        rng.shuffle(items)
        streams[name] = items
        r = {"name": name, "format": fmt, "event_id": "field:id", "sql": SQL, "params": PARAMS}
        if fmt == "sparkplug_b":
            r.update(event_id="field:metrics.0.value", params=SPB_PARAMS)
        if proto == "amqp":
            r.update(queue="q-" + name, declare_queue=True, bind_exchange="amq.topic", bind_keys=["fmt." + name])
            routes_amqp.append(r)
        else:
            r["topic"] = "fmt/" + name
            routes_mqtt.append(r)
b.write_config([("10-mosq.conf", b.mqtt_broker(name="mosq"), routes_mqtt),
                ("20-rabbit.conf", b.amqp_broker(name="rabbit"), routes_amqp)])
for r in routes_amqp:
    b.rabbit.declare_queue(r["queue"], keys=r["bind_keys"])
d = b.start()
b.wait_subscribed("mosq")
for name, items in streams.items():
    if name.endswith("amqp"):
        b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "fmt." + name, "body": p} for p in items])
    else:
        b.mqtt.publish_many([("fmt/" + name, p) for p in items], protocol=ot.MQTTv5)
for name in streams:
    obtest.wait_applied(b.pg, name, N, table="fmt", settle=0)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters") >= 18, 60,
              desc="every poison message dead-lettered")

for name in streams:
    fmt = name.rsplit("-", 1)[0]
    obtest.exactly_once(t, b.pg, name, ["%s-%04d" % (name, i) for i in range(N)], table="fmt")
    rows = b.pg.execute("SELECT event_id, big::text, neg, f, flag, nothing, label, raw, nested, doc FROM fmt"
                        " WHERE route = %s", (name,))
    wrong = []
    for eid, big, neg, f, flag, nothing, label, raw, nested, jdoc in rows:
        i = int(eid.rsplit("-", 1)[1])
        want = doc(name, i)
        got = (big, neg, f, flag, nothing, label, bytes(raw), nested)
        exp = (str(want["big"]), want["neg"], want["f"], want["flag"], None, want["label"], want["raw"],
               str(i) if fmt == "sparkplug_b" else '{"deep":%d}' % i)
        if fmt == "sparkplug_b":
            jlabel, jraw = jdoc["metrics"][6]["value"], jdoc["metrics"][7]["value"]
        else:
            jlabel, jraw = jdoc.get("label"), jdoc.get("raw")
        if got != exp or jlabel != want["label"] or jraw != "\\x%02x00ff" % (i % 256):
            wrong.append((eid, got, exp, jdoc))
    t.ok(rows and not wrong, "%s: every column holds the value the producer encoded (uint64, int, float, boolean, "
         "null, multibyte text, bytes as bytea, a nested path, the payload as jsonb)" % name, diag=str(wrong[:2]))
    for _, reason in POISON[fmt]:
        n = b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE consumer = %s AND reason LIKE %s",
                        (name, "%" + reason + "%"))
        t.is_(n, 1, "%s: a payload that does not decode is dead-lettered: \"%s\"" % (name, reason))
    t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE consumer = %s AND reason LIKE"
                      " '%%missing event ID%%'", (name,)), 1, "%s: a document without the ID field is dead-lettered"
          % name)
t.ok(d.alive(), "oncebridge is still running")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
