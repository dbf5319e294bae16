# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL failover scenarios for the integration tests: a primary and
a streaming standby, RabbitMQ and Mosquitto, oncebridge with a conninfo
naming both servers (target_session_attrs=read-write), an AMQP and an MQTT
stream with 10 % duplicates and some poison, an outbox relay; and the
ledger on whichever server is the primary at the end."""
import json
import os
import time

import obtest
import oncetest as ot


class Failover(obtest.Bridge):
    """obtest.Bridge with a standby (sync or async) and a Mosquitto."""

    def __init__(self, name, sync=True):
        obtest.Bridge.__init__(self, name)
        self.mqtt = ot.Mosquitto(self.dir)
        self.sync = sync
        self.standby = None
        self.amqp_ids, self.mqtt_ids, self.n_poison = [], [], 0

    wait_subscribed = obtest.MQTTBridge.wait_subscribed

    def start_servers(self):
        self.pg.start()
        self.install_schema()
        obtest.applied_table(self.pg)
        self.standby = ot.Standby(self.pg, sync=self.sync).start()
        self.rabbit.start()
        self.mqtt.start()
        self.rabbit.declare_queue("watch-q", keys=["fo.out.#"])
        self.rabbit.declare_queue("fo-q", keys=["fo.in.#"])

    def main_config(self, **overrides):
        cfg = obtest.Bridge.main_config(self, **overrides)
        cfg["database"] = dict({"conninfo": ot.failover_conninfo(self.pg, self.standby),
                                "statement_timeout_ms": 2000}, **overrides.get("database", {}))
        return cfg

    def configure(self, amqp_ms=0.5, mqtt_ms=1.0, **main):
        mqtt = {"name": "mosq", "type": "mqtt", "url": "mqtt://127.0.0.1:%d" % self.mqtt.port,
                "client_id": "oncebridge-fo", "keepalive": 5, "mqtt_version": 5,
                "workers": 1}   # one session, as the failover figures were measured
        self.write_config([
            ("10-rabbit.conf", self.amqp_broker(batch_size=100, prefetch=300, heartbeat=5),
             [obtest.slow_route("amqp-r", "fo-q", ["fo.in.#"], per_event_ms=amqp_ms)]),
            ("20-mosq.conf", mqtt, [obtest.mqtt_slow_route("mqtt-r", "fo/+/in", per_event_ms=mqtt_ms)]),
        ], **main)
        with open(os.path.join(self.confdir, "conf.d", "10-rabbit.conf"), "a") as f:
            f.write('outbox = { batch_size = 100; poll_interval_ms = 500; };\n')

    def streams(self, n_amqp, n_mqtt, n_poison=5, tag="a"):
        """Publish both streams (MQTT in the background; event IDs carry
        tag); returns the number of messages. Adds to the expected IDs per
        route and the number of poison messages (the ledger counts all
        streams since the first)."""
        amqp_ids, msgs = obtest.event_stream(n_amqp, dup_ratio=0.1, routing_key="fo.in." + tag)
        mqtt_ids, items = obtest.mqtt_stream(n_mqtt, topic="fo/d1/in", dup_ratio=0.1, prefix="fo.m" + tag)
        self.amqp_ids += amqp_ids
        self.mqtt_ids += mqtt_ids
        # poison with an event ID (a data error in the business SQL), so
        # that a redelivery after a COMMIT of unknown outcome is a duplicate
        # of its dead letter; a message without an ID cannot be recognised
        # again and may be dead-lettered twice then
        for i in range(n_poison):
            bad = {"n": "not a number"}
            msgs.insert((i + 1) * len(msgs) // (n_poison + 1),
                        {"exchange": "amq.topic", "routing_key": "fo.in.p",
                         "body": json.dumps(dict(bad, id="fo.pa%s-%d" % (tag, i)))})
            items.insert((i + 1) * len(items) // (n_poison + 1),
                         ("fo/d9/in", json.dumps(dict(bad, id="fo.pm%s-%d" % (tag, i)))))
        self.n_poison += 2 * n_poison
        self.rabbit.publish_many(msgs)
        self.mqtt_thread = obtest.publish_in_background(self.mqtt, items, protocol=ot.MQTTv5)
        return len(msgs) + len(items)

    def emit(self, pg, key):
        """One outbox event, committed on pg; returns its ID."""
        return pg.scalar("SELECT oncebridge.emit('rabbit', %s, %s::jsonb)", (key, json.dumps({"k": key})))

    def watched(self):
        """Event IDs the relay published so far (read from watch-q)."""
        self.seen = getattr(self, "seen", set())
        for body, props, _ in self.rabbit.get_messages("watch-q"):
            self.seen.add(props.message_id)
        return self.seen

    def ledger(self, t, pg, timeout=180, strict=True):
        """Wait for both routes and the dead letters on pg, then check
        every event once. strict=False reports losses instead of failing
        on them (an asynchronous standby may lose acked effects)."""
        want = len(self.amqp_ids) + len(self.mqtt_ids)

        def done():
            return (obtest.progress(pg) >= want and
                    pg.scalar("SELECT count(*) FROM oncebridge.dead_letters") >= self.n_poison)
        ok = True
        try:
            if not strict:     # losses never arrive: wait for the queue instead
                self.wait_drained("fo-q", timeout=timeout)
                self.mqtt_thread.join(timeout)
                timeout = 10
            ot.wait_until(done, timeout, interval=0.2, desc="%d events applied" % want)
            time.sleep(1.0)
        except TimeoutError:
            ok = False
        self.mqtt_thread.join(60)
        t.ok(self.mqtt_thread.error is None, "the MQTT stream was published", diag=str(self.mqtt_thread.error))
        if strict:
            t.ok(ok, "every event applied within %d s" % timeout,
                 diag="%d of %d rows" % (obtest.progress(pg), want))
            obtest.exactly_once(t, pg, "amqp-r", self.amqp_ids)
            obtest.exactly_once(t, pg, "mqtt-r", self.mqtt_ids)
            t.is_(pg.scalar("SELECT count(DISTINCT event_id) FROM oncebridge.dead_letters WHERE sqlstate = '22P02'"),
                  self.n_poison, "every poison message dead-lettered")
            t.is_(pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), self.n_poison,
                  "each once")
        twice = pg.scalar("SELECT count(*) FROM (SELECT 1 FROM applied GROUP BY route, event_id"
                          " HAVING count(*) > 1) x")
        t.is_(twice, 0, "no event applied twice")
        have = {r[0] for r in pg.execute("SELECT event_id FROM applied")}
        return len(set(self.amqp_ids + self.mqtt_ids) - have)


def first_commit_after(pg, since_wall, timeout=120):
    """Seconds from since_wall (time.time()) to the first row applied on
    pg after it, as the database's clock saw it; None when none came
    within timeout."""
    try:
        ot.wait_until(lambda: pg.scalar("SELECT count(*) FROM applied WHERE at > to_timestamp(%s)", (since_wall,)),
                      timeout, interval=0.1, desc="a commit on the new primary")
    except TimeoutError:
        return None
    return float(pg.scalar("SELECT extract(epoch FROM min(at)) FROM applied WHERE at > to_timestamp(%s)",
                           (since_wall,))) - since_wall
