# SPDX-License-Identifier: Apache-2.0
"""Network faults between oncebridge and Mosquitto, through
tests/harness/faultproxy.py: an inbound worker (QoS 1, persistent session,
a stream with 10 % duplicates and poison messages) and an outbox relay
(large rows), each behind a proxy of its own, with keepalive 2 s. One fault
at a time hits every connection open at that moment, while new connections
pass:

  blackhole  both directions stop, nothing closes (PUBACKs in flight lost)
  read-stop  the broker stops reading: client to broker stops, what the
             broker sends still comes
  latency    3 s each way on every connection for 5 s
  reset      a TCP RST

After each, the same worker and relay processes must be back at work by
themselves; the ledger at the end is exact (every event once, poison
dead-lettered once, every outbox row published and received). Prints the
time to detect and to recover of each fault (see netfault.py)."""
import json

import faultproxy
import netfault
import obtest
import oncetest as ot

KEEPALIVE = 2
WAVE = 1500
POISON_EVERY = 250

t = ot.TAP()
b = obtest.MQTTBridge("net-mqtt")
b.start_servers()
obtest.applied_table(b.pg)
inp = faultproxy.FaultProxy(("127.0.0.1", b.mqtt.port))
outp = faultproxy.FaultProxy(("127.0.0.1", b.mqtt.port), rcvbuf=65536)
inbound = b.mqtt_broker(name="min", url="mqtt://127.0.0.1:%d" % inp.port, keepalive=KEEPALIVE)
relay = b.mqtt_broker(name="mout", url="mqtt://127.0.0.1:%d" % outp.port, keepalive=KEEPALIVE)
b.write_config([("10-in.conf", inbound, [obtest.mqtt_slow_route("nm", "nm/+/ev", per_event_ms=1.0)])])
with open(b.config.replace("oncebridge.conf", "conf.d/20-out.conf"), "w") as f:
    f.write(obtest.lc_file({"broker": relay}))
    f.write("outbox = { batch_size = 200; poll_interval_ms = 200; confirm_timeout_ms = 5000; };\n")
watch = b.mqtt.subscribe("out/#", protocol=ot.MQTTv5)

all_ids, poison, emitted = [], [], []
big = "x" * 65000          # 64 KB rows: the relay spends its time writing


def applied():
    return obtest.progress(b.pg)


def published():
    return b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NOT NULL")


def wave(k):
    """Publish a wave of the inbound stream (duplicates, a few poison
    messages), then emit outbox rows; return when the worker is applying
    and the relay is writing."""
    ids, items = obtest.mqtt_stream(WAVE, topic="nm/w%d/ev" % k, dup_ratio=0.1, seed=k)
    for i in range(0, len(items), POISON_EVERY):
        # a poison message with an event ID: dead-lettered once, even when
        # its PUBACK is lost and it comes back
        poison.append("nm.w%d-poison-%d" % (k, i))
        items.insert(i, ("nm/w%d/ev" % k, json.dumps({"id": poison[-1], "n": "not a number"})))
    all_ids.extend(ids)
    at = applied()
    b.mqtt.publish_many(items)
    sent = outp.bytes_up
    emitted.extend(r[0] for r in b.pg.execute(
        "SELECT oncebridge.emit('mout', 'out/w%d', jsonb_build_object('n', g, 'pad', %%s::text))"
        " FROM generate_series(1, 300) AS g" % k, (big,)))
    ot.wait_until(lambda: outp.bytes_up > sent + (1 << 20) and applied() >= at + 200, 120, interval=0.005,
                  desc="wave %d applied and published" % k)


probes = []


def probe_events():
    """New events right after a fault; true once all are applied."""
    probes.append(1)
    ids, items = obtest.mqtt_stream(20, topic="nm/probe%d/ev" % len(probes), dup_ratio=0, seed=len(probes))
    b.mqtt.publish_many(items)
    all_ids.extend(ids)
    return lambda: b.pg.scalar("SELECT count(DISTINCT event_id) FROM applied WHERE event_id = ANY(%s)", (ids,)) == 20


def probe_rows():
    """New outbox rows right after a fault; true once all are published."""
    ids = [r[0] for r in b.pg.execute("SELECT oncebridge.emit('mout', 'out/probe', jsonb_build_object('n', g))"
                                      " FROM generate_series(1, 5) AS g")]
    emitted.extend(ids)
    return lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE event_id = ANY(%s)"
                               " AND published_at IS NOT NULL", ([str(i) for i in ids],)) == 5


d = b.start()
b.wait_subscribed("min")
workers = None
results = {}
faults = [("blackhole", netfault.blackhole_conns("both"), None),  # PUBACKs in flight vanish
          ("read-stop", netfault.blackhole_conns("up"), None),    # the broker stops reading
          ("latency", lambda p, conns: p.latency(3000), lambda p: p.passthrough()),
          ("reset", netfault.reset_conns, None)]
procs = {"worker": (inp, probe_events, applied), "relay": (outp, probe_rows)}
for k, (name, inject, heal) in enumerate(faults, 1):
    wave(k)
    if workers is None:
        workers = sorted(b.worker_pids())
    results[name] = netfault.measure(name, procs, inject, heal, heal_after=5)

for name, r in results.items():
    for who in ("worker", "relay"):
        t.ok(who in r, "%s: the %s is back at work by itself" % (name, who))

ot.wait_until(lambda: obtest.applied_events(b.pg, "nm") >= len(all_ids), 180, interval=0.5,
              desc="every event applied")
obtest.wait_applied(b.pg, "nm", len(all_ids), timeout=10, settle=2.0)
obtest.exactly_once(t, b.pg, "nm", all_ids)
dead = b.pg.execute("SELECT event_id FROM oncebridge.dead_letters ORDER BY event_id")
t.is_([r[0] for r in dead], sorted(poison), "every poison message dead-lettered once (%d)" % len(poison))
ot.wait_until(lambda: published() == len(emitted), 120, interval=0.5, desc="every outbox row published")


def received():
    return {dict(getattr(m.properties, "UserProperty", []) or []).get("event_id") for m in list(watch.messages)}


ot.wait_until(lambda: set(emitted) <= received(), 60, interval=0.2, desc="every outbox row received")
t.ok(set(emitted) <= received(), "every outbox row arrived (%d)" % len(emitted))
t.is_(sorted(b.worker_pids()), workers, "the same worker and relay processes all along")
t.is_(d.terminate(timeout=20), 0, "clean stop")
inp.close()
outp.close()
raise SystemExit(t.done())
