# SPDX-License-Identifier: Apache-2.0
"""SIGTERM during a steady stream, three times, with an AMQP and an MQTT
worker in one daemon: each time oncebridge drains (the in-flight
transaction commits and is acked, connections close) and exits with status
0 well within shutdown_timeout_ms; after the restarts every event of both
streams is applied exactly once. Real RabbitMQ, Mosquitto and
PostgreSQL."""
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("sigterm-drain")
b.mqtt = ot.Mosquitto(b.dir)
b.start_servers()
b.mqtt.start()
obtest.applied_table(b.pg)

N = 3000
ids_a, msgs_a = obtest.event_stream(N, dup_ratio=0.1, routing_key="st.ev")
ids_m, items_m = obtest.mqtt_stream(N, topic="st/1/reading", dup_ratio=0.1)
b.write_config([("10-rabbit.conf", b.amqp_broker("rabbit", batch_size=100, prefetch=300),
                 [obtest.slow_route("ra", "st-q", ["st.#"], per_event_ms=1.0)]),
                ("20-mosq.conf", obtest.MQTTBridge.mqtt_broker(b, "mosq"),
                 [obtest.mqtt_slow_route("rm", "st/#", per_event_ms=1.0)])],
               shutdown_timeout_ms=10000)
b.rabbit.declare_queue("st-q", keys=["st.#"])
b.rabbit.publish_many(msgs_a)
d = b.start()
obtest.MQTTBridge.wait_subscribed(b, "mosq")
pub = obtest.publish_in_background(b.mqtt, items_m, protocol=ot.MQTTv5)


def done(route):
    return obtest.applied_events(b.pg, route)


for k in range(3):
    target = (k + 1) * N // 5
    ot.wait_until(lambda: done("ra") >= target and done("rm") >= target // 2, 120, interval=0.05,
                  desc="progress %d" % target)
    at = (done("ra"), done("rm"))
    t0 = time.monotonic()
    rc = d.terminate(timeout=15)
    took = time.monotonic() - t0
    obtest.note("SIGTERM %d at %d / %d events: stopped in %.2f s" % (k + 1, at[0], at[1], took))
    t.is_(rc, 0, "SIGTERM %d mid-stream: exit status 0" % (k + 1))
    t.ok(took < 10.0, "SIGTERM %d: drained within shutdown_timeout_ms (%.2f s)" % (k + 1, took))
    log = d.log()
    t.ok(log.count("worker stopped") >= 2 and "killing them" not in log,
         "SIGTERM %d: both workers finished their work and stopped, none was killed" % (k + 1), diag=log[-1500:])
    d = b.start()
    obtest.MQTTBridge.wait_subscribed(b, "mosq")

pub.join(120)
t.ok(pub.error is None, "the MQTT publisher finished", diag=str(pub.error))
b.wait_drained("st-q", timeout=180)
obtest.wait_applied(b.pg, "rm", N, timeout=180)
obtest.exactly_once(t, b.pg, "ra", ids_a)
obtest.exactly_once(t, b.pg, "rm", ids_m)
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
