# SPDX-License-Identifier: Apache-2.0
"""Sparkplug B through the worked example (conf/sparkplug/sparkplug.conf and
sparkplug.sql, run as written but for the broker's address): an edge
node's NBIRTH, a run of NDATA carrying metric aliases only (some published
twice), oncebridge killed with SIGKILL in the middle and started again, a
device's DBIRTH and DDATA, the edge node's NDEATH. Payloads are encoded by
python3-protobuf from the same sparkplug_b.proto (compiled with protoc).
Every metric row is applied once with the right name, data type and value;
a payload that does not decode and a data message with an alias no birth
defined are dead-lettered."""
import os
import random
import re
import signal
import subprocess
import sys
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("sparkplug")
b.start_servers()
example = os.path.join(obtest.SRCDIR, "conf", "sparkplug")
with open(os.path.join(example, "sparkplug.sql")) as f:
    b.pg.execute(f.read())

pbdir = os.path.join(b.dir, "pb")
os.makedirs(pbdir)
subprocess.run(["protoc", "--python_out=" + pbdir, "--proto_path=" + os.path.join(obtest.SRCDIR, "bridge", "core"),
                "sparkplug_b.proto"], check=True)
sys.path.insert(0, pbdir)
import sparkplug_b_pb2 as spb  # noqa: E402

b.write_config([])
with open(os.path.join(example, "sparkplug.conf")) as f:
    conf = f.read().replace("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:%d" % b.mqtt.port)
with open(os.path.join(b.confdir, "conf.d", "sparkplug.conf"), "w") as f:
    f.write(conf)

T0 = 1732867200000
DOUBLE, INT32, INT64, UINT64, STRING, BOOLEAN, BYTES = 10, 3, 4, 8, 12, 11, 17
node = "spBv1.0/plant/%s/edge1"
device = "spBv1.0/plant/%s/edge1/pump7"
expected = []  # (event ID, name, datatype name, value as Python)
seq = [0]


def payload(metrics, ts, with_seq=True):
    p = spb.Payload()
    p.timestamp = ts
    if with_seq:
        p.seq = seq[0] % 256
        seq[0] += 1
    for m in metrics:
        x = p.metrics.add()
        for k, v in m.items():
            setattr(x, k, v)
    return p


def message(topic, metrics, ts, names, with_seq=True):
    """Encode; remember the rows it must give (names: alias -> (name, type))."""
    p = payload(metrics, ts, with_seq)
    eid = "%s/%d/%s" % (topic, ts, p.seq if with_seq else "")
    for m in metrics:
        name, dtype = (m["name"], m["datatype"]) if "name" in m else names[m["alias"]]
        value = [v for k, v in m.items() if k.endswith("_value")][0]
        if dtype == BYTES:
            value = "\\x" + value.hex()
        elif dtype == INT32:
            value = value - 2**32 if value >= 2**31 else value
        expected.append((eid, name, spb.DataType.Name(dtype), value))
    return topic, p.SerializeToString()


names = {1: ("temp", DOUBLE), 2: ("count", INT32), 3: ("label", STRING), 4: ("raw", BYTES), 5: ("big", UINT64),
         10: ("pump7/pressure", DOUBLE), 11: ("pump7/running", BOOLEAN)}
births = [{"name": "bdSeq", "datatype": UINT64, "long_value": 3}] + [
    {"name": n, "alias": a, "datatype": d, **({DOUBLE: {"double_value": 20.5}, INT32: {"int_value": 2**32 - 5},
                                                STRING: {"string_value": "zwölf €"}, BYTES: {"bytes_value": b"\x00\xff"},
                                                UINT64: {"long_value": 2**64 - 2}}[d])}
    for a, (n, d) in names.items() if a < 10]
nbirth = message(node % "NBIRTH", births, T0, names)
rng = random.Random(17)


def ndata(i):
    return message(node % "NDATA", [
        {"alias": 1, "double_value": 20 + i / 4, "timestamp": T0 + 1000 * i},
        {"alias": 2, "int_value": (-i) % 2**32},
        {"alias": 3, "string_value": "run %d ✓" % i}], T0 + 1000 * i, names)


first = [ndata(i) for i in range(1, 61)]
second = [ndata(i) for i in range(61, 121)]
dbirth = message(device % "DBIRTH", [{"name": n, "alias": a, "datatype": d,
                                      **({"double_value": 1.25} if d == DOUBLE else {"boolean_value": True})}
                                     for a, (n, d) in names.items() if a >= 10], T0 + 200000, names)
ddata = [message(device % "DDATA", [{"alias": 10, "double_value": 1 + i / 8}, {"alias": 11, "boolean_value": i % 2 == 0}],
                 T0 + 200000 + 1000 * i, names) for i in range(1, 41)]
ndeath = message(node % "NDEATH", [{"name": "bdSeq", "datatype": UINT64, "long_value": 3}], T0 + 300000, names,
                 with_seq=False)
n_rows = len(expected)


def with_copies(items):
    out = []
    for it in items:
        out += [it] * (2 if rng.random() < 0.1 else 1)
    return out


d = b.start()
b.wait_subscribed("sparkplug")
b.mqtt.publish_many([nbirth] + with_copies(first), protocol=ot.MQTTv5)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM metrics") >= 30, 60, interval=0.05, desc="NDATA under way")
d.kill(signal.SIGKILL)
applied = b.pg.scalar("SELECT count(DISTINCT event_id) FROM metrics WHERE message_type = 'NDATA'")
t.ok(applied < len(first) + len(second), "oncebridge killed with SIGKILL during the NDATA run (%d of %d NDATA "
     "messages applied)" % (applied, len(first) + len(second)))
b.mqtt.publish_many(with_copies(second), protocol=ot.MQTTv5)
d = b.start()
b.mqtt.publish_many([dbirth] + with_copies(ddata) + [ndeath], protocol=ot.MQTTv5)
# poison: a truncated payload, and a data message with an alias no birth defined
b.mqtt.publish_many([(node % "NDATA", nbirth[1][:9]),
                     (node % "NDATA", payload([{"alias": 99, "double_value": 1.0}], T0 + 400000).SerializeToString())],
                    protocol=ot.MQTTv5)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM metrics") >= n_rows and
              b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters") >= 2, 120, interval=0.1,
              desc="every metric applied")
time.sleep(1)

rows = b.pg.execute("SELECT event_id, name, datatype, value FROM metrics ORDER BY id")
got = {}
for eid, name, dtype, value in rows:
    got.setdefault((eid, name), []).append((dtype, value))
missing = [e for e in expected if (e[0], e[1]) not in got]
twice = [k for k, v in got.items() if len(v) > 1]
wrong = [e for e in expected if (e[0], e[1]) in got and got[(e[0], e[1])][0] != (e[2], e[3])]
t.is_(len(rows), n_rows, "%d metric rows from %d messages" % (n_rows, 2 + len(first) + len(second) + len(ddata) + 1))
t.ok(not missing, "no metric lost", diag=str(missing[:5]))
t.ok(not twice, "no metric applied twice (duplicates published, SIGKILL mid-stream)", diag=str(twice[:5]))
t.ok(not wrong, "every metric has its name (resolved from the alias for NDATA and DDATA), data type and value",
     diag=str([(e, got[(e[0], e[1])]) for e in wrong[:3]]))
t.is_(b.pg.scalar("SELECT count(*) FROM metrics WHERE message_type = 'NDATA' AND name = 'temp'"), 120,
      "all 120 NDATA temperatures, sent by alias, carry the name the NBIRTH gave")
t.is_(b.pg.execute("SELECT DISTINCT device FROM metrics WHERE message_type IN ('DBIRTH', 'DDATA')"), [("pump7",)],
      "device messages name their device")
t.is_(b.pg.scalar("SELECT count(*) FROM metrics WHERE message_type = 'NDEATH' AND name = 'bdSeq'"), 1,
      "the NDEATH's bdSeq is applied once")
dl = b.pg.execute("SELECT reason, sqlstate FROM oncebridge.dead_letters ORDER BY id")
t.ok(any(r.startswith("invalid Sparkplug B: malformed or truncated field at offset") for r, _ in dl),
     "a truncated payload is dead-lettered naming the format and the offset", diag=str(dl))
t.ok(any(s == "23502" for _, s in dl), "a data message whose alias no birth defined is dead-lettered (NOT NULL name)",
     diag=str(dl))
t.ok(d.alive(), "oncebridge is still running")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
