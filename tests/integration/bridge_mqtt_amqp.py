# SPDX-License-Identifier: Apache-2.0
"""Broker-to-broker bridging, MQTT to AMQP, as composition: an MQTT route
whose effect is oncebridge.emit() to RabbitMQ's outbox with the original
event ID, the relay, and an AMQP route consuming what arrives. kill -9 of
oncebridge mid-stream, restart: the downstream route applies every event
exactly once, and every event was emitted to the outbox exactly once."""
import signal

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("bridge-m2a")
b.rabbit = ot.RabbitMQ(b.dir)
b.start_servers()
obtest.applied_table(b.pg)

forward = {
    "name": "telemetry-to-rabbit",
    "topic": "devices/+/telemetry",
    "event_id": "json:id",
    "sql": "SELECT oncebridge.emit('rabbit', 'telemetry.' || $2, $1::jsonb, $3)",
    "params": ["payload", "topic_level:2", "event_id"],
}
downstream = obtest.applied_route("telemetry-in", "tele-q", declare_queue=True, bind_exchange="amq.topic",
                                  bind_keys=["telemetry.#"], event_id="property:message_id")
b.write_config([("10-mosq.conf", b.mqtt_broker(name="mosq"), [forward]),
                ("20-rabbit.conf", b.amqp_broker(name="rabbit"), [downstream])])
with open(b.config.replace("oncebridge.conf", "conf.d/20-rabbit.conf"), "a") as f:
    f.write('outbox = { batch_size = 200; poll_interval_ms = 200; };\n')
b.rabbit.declare_queue("tele-q", keys=["telemetry.#"])

N = 3000
ids, items = obtest.mqtt_stream(N, topic="devices/7/telemetry", prefix="tele")
d = b.start()
b.wait_subscribed("mosq")
th = obtest.publish_in_background(b.mqtt, items, protocol=ot.MQTTv5, chunk=200)
at = ot.wait_until(lambda: (lambda c: c if c >= N // 5 else 0)(obtest.applied_events(b.pg, "telemetry-in")),
                   120, interval=0.02, desc="bridging under way")
d.kill(signal.SIGKILL)
t.ok(at < N, "oncebridge killed mid-stream (%d of %d applied downstream)" % (at, N))
d = b.start()
th.join(120)
t.ok(th.error is None, "the MQTT producer published every message", diag=str(th.error))
obtest.wait_applied(b.pg, "telemetry-in", N, timeout=180)
obtest.exactly_once(t, b.pg, "telemetry-in", ids)
emitted = b.pg.execute("SELECT event_id, count(*) FROM oncebridge.outbox GROUP BY event_id")
t.is_(len(emitted), N, "each event was emitted to the outbox")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0,
      "no event was emitted twice (a second emit breaks the outbox's unique key and is dead-lettered)")
t.ok(set(e for e, _ in emitted) == set(ids), "the outbox keeps the original event IDs")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
