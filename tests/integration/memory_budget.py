# SPDX-License-Identifier: Apache-2.0
"""The memory budget (max_inflight_bytes) holds whatever the message sizes,
real RabbitMQ and Mosquitto: 100 events of 1 MB and 3 of 3 MB (larger than
the budget: each passes alone) through AMQP, waiting in the queue as a
backlog before the daemon starts, and the same through MQTT 5, with a
budget of 2 MiB. Every event is applied exactly once, and each worker's
peak resident set stays below its base plus a stated overhead: the
deliveries it holds (the budget plus one message) counted three times
(the body, its decoded value tree, and allocator slack). Without the
budget (before max_inflight_bytes) the AMQP worker took the whole backlog
into one batch and peaked at 333 MB. About 30 s."""
import json
import os
import subprocess

import obtest
import oncetest as ot

MB = 1000000
BUDGET = 2 * 1024 * 1024
BIG = 3 * MB
N_SMALL, N_BIG = 100, 3
BASE_KB = 24 * 1024                       # a worker at rest, with libraries and its database session
BOUND_KB = BASE_KB + 3 * (BUDGET + BIG) // 1024

t = ot.TAP()
b = obtest.Bridge("memory-budget")
b.mqtt = ot.Mosquitto(b.dir)
b.start_servers()
b.mqtt.start()
obtest.applied_table(b.pg)
b.rabbit.declare_queue("q-mem", keys=["mem.#"])


def events(prefix):
    ids, bodies = [], []
    for i in range(N_SMALL + N_BIG):
        e = "%s-%04d" % (prefix, i)
        size = BIG if i % 34 == 33 else MB
        ids.append(e)
        bodies.append(json.dumps({"id": e, "n": i, "pad": "x" * (size - 60)}))
    return ids, bodies


amqp_ids, amqp_bodies = events("amqp")
mqtt_ids, mqtt_bodies = events("mqtt")
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "mem.x", "body": x} for x in amqp_bodies],
                      timeout=300)
obtest.note("%d AMQP messages waiting, %d of them %d bytes" % (len(amqp_ids), N_BIG, BIG))

amqp = b.amqp_broker(name="rabbit", max_inflight_bytes=BUDGET)   # prefetch 500, batch_size 200
mqtt = {"name": "mosq", "type": "mqtt", "url": "mqtt://127.0.0.1:%d" % b.mqtt.port,
        "client_id": "oncebridge-mem", "keepalive": 10, "mqtt_version": 5, "max_inflight_bytes": BUDGET,
        "workers": 1}   # one MQTT worker: its memory is what is measured
b.write_config([("10-rabbit.conf", amqp, [obtest.applied_route("a", "q-mem")]),
                ("20-mosq.conf", mqtt, [obtest.mqtt_route("m", "mem/#")])],
               limits={"max_payload": 4 * 1024 * 1024})
d = b.start()
obtest.MQTTBridge.wait_subscribed(b, "mosq")
b.mqtt.publish_many([("mem/x", x) for x in mqtt_bodies], protocol=ot.MQTTv5, timeout=300)

obtest.wait_applied(b.pg, "a", len(amqp_ids), timeout=300)
obtest.wait_applied(b.pg, "m", len(mqtt_ids), timeout=300)
obtest.exactly_once(t, b.pg, "a", amqp_ids)
obtest.exactly_once(t, b.pg, "m", mqtt_ids)

out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(d.pid)], capture_output=True, text=True).stdout
pids = [int(x) for x in out.split()]
t.is_(len(pids), 2, "two workers (AMQP and MQTT)")
# under valgrind (tests/hardening.sh) or AddressSanitizer the tool's own memory is in the figure
tool = "valgrind" if os.environ.get("ONCEBRIDGE_VALGRIND_DIR") else None
for pid in pids:
    with open("/proc/%d/maps" % pid) as f:
        tool = tool or ("AddressSanitizer" if "libasan" in f.read() else None)
    hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                hwm = int(ln.split()[1])
    if tool:
        t.skip("worker %d peak RSS" % pid, "%s keeps memory of its own" % tool)
        continue
    t.ok(hwm < BOUND_KB, "worker %d: peak RSS %d kB below %d kB (budget %d, largest message %d)"
         % (pid, hwm, BOUND_KB, BUDGET, BIG))
d.terminate()
t.done()
