# SPDX-License-Identifier: Apache-2.0
"""The README's demo: oncebridge's main job on a throwaway setup. Starts a
private PostgreSQL, RabbitMQ and Mosquitto in a temp dir, installs the
schema and the sample business tables, runs oncebridge with the sample
configuration from conf/ (only the ports changed), publishes sample events
over AMQP and MQTT including duplicates and poison messages, emits an event
through the outbox, and shows the resulting rows."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import obtest
import oncetest as ot

SRC = obtest.SRCDIR


def show(title, pg, sql):
    rows = pg.execute(sql)
    print("\n== %s\n   %s" % (title, sql))
    for r in rows:
        print("   " + " | ".join("" if v is None else str(v) for v in r))


def main():
    b = obtest.MQTTBridge("demo")
    b.rabbit = ot.RabbitMQ(b.dir)
    print("starting a private PostgreSQL, RabbitMQ and Mosquitto in %s ..." % b.dir, flush=True)
    b.start_servers()
    pg, rabbit, mqtt = b.pg, b.rabbit, b.mqtt

    # what a DBA and a RabbitMQ operator would do once
    pg.execute("CREATE ROLE oncebridge LOGIN")
    pg.execute("GRANT USAGE ON SCHEMA oncebridge TO oncebridge")
    pg.execute("GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA oncebridge TO oncebridge")
    pg.execute("GRANT UPDATE ON oncebridge.outbox TO oncebridge")
    with open(os.path.join(SRC, "conf", "demo-business.sql")) as f:
        pg.execute(f.read())
    pg.execute("GRANT SELECT, INSERT, UPDATE ON meter_readings, meter_totals TO oncebridge")
    rabbit.ctl("add_user", "oncebridge", "demo-secret")
    rabbit.ctl("set_permissions", "-p", "/", "oncebridge", ".*", ".*", ".*")

    # the sample configuration, with this setup's ports
    etc = os.path.join(b.dir, "etc")
    os.makedirs(os.path.join(etc, "conf.d"), exist_ok=True)
    with open(os.path.join(SRC, "conf", "oncebridge.conf")) as f:
        main_conf = f.read().replace("port=5432", "port=%d" % pg.port).replace("dbname=oncebridge", "dbname=%s" % pg.dbname)
    with open(os.path.join(etc, "oncebridge.conf"), "w") as f:
        f.write(main_conf)
    with open(os.path.join(SRC, "conf", "conf.d", "rabbitmq.conf")) as f:
        broker_conf = f.read().replace(":5672/", ":%d/" % rabbit.port)
    with open(os.path.join(etc, "conf.d", "rabbitmq.conf"), "w") as f:
        f.write(broker_conf)
    with open(os.path.join(SRC, "conf", "conf.d", "mosquitto.conf")) as f:
        mqtt_conf = f.read().replace(":1883", ":%d" % mqtt.port)
    with open(os.path.join(etc, "conf.d", "mosquitto.conf"), "w") as f:
        f.write(mqtt_conf)
    # the sample broker file names its password file relative to itself
    obtest.write_secret(os.path.join(etc, "conf.d", "rabbitmq.password"), "demo-secret")
    b.config = os.path.join(etc, "oncebridge.conf")

    check = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True)
    print("\n$ oncebridge -t -c %s\n%s%s" % (b.config, check.stdout, check.stderr), flush=True)
    if check.returncode != 0:
        return 1

    d = b.start()
    ot.wait_until(lambda: "consuming" in b.logs(), 30, desc="oncebridge consuming")
    b.wait_subscribed("mosquitto-main")

    events = [
        {"event_id": "6f0c1f5e-0001-4d6e-9a43-1b2c3d4e5f60", "meter": "berlin-7", "kwh": 12.5},
        {"event_id": "6f0c1f5e-0002-4d6e-9a43-1b2c3d4e5f60", "meter": "berlin-7", "kwh": 3.25},
        {"event_id": "6f0c1f5e-0003-4d6e-9a43-1b2c3d4e5f60", "meter": "paris-2", "kwh": 7.0},
    ]
    msgs = []
    for e in events:
        site = e["meter"].split("-")[0]
        msgs.append({"exchange": "amq.topic", "routing_key": "meters.%s.%s" % (site, e["meter"]),
                     "body": json.dumps(e)})
    # a producer retrying after a lost confirm: the same events again
    msgs += [dict(m) for m in msgs[:2]]
    # poison: invalid JSON, no event ID, and a reading the CHECK constraint refuses
    msgs.append({"exchange": "amq.topic", "routing_key": "meters.berlin.berlin-9", "body": '{"event_id": "x", "kwh": '})
    msgs.append({"exchange": "amq.topic", "routing_key": "meters.berlin.berlin-9", "body": json.dumps({"meter": "berlin-9", "kwh": 1})})
    msgs.append({"exchange": "amq.topic", "routing_key": "meters.rome.rome-1",
                 "body": json.dumps({"event_id": "6f0c1f5e-0004-4d6e-9a43-1b2c3d4e5f60", "meter": "rome-1", "kwh": -4})})
    print("publishing %d messages: 3 events, 2 of them twice, and 3 poison messages" % len(msgs), flush=True)
    rabbit.publish_many(msgs)

    mqtt_events = [
        {"event_id": "9a1b2c3d-0001-4e5f-8a9b-0c1d2e3f4a5b", "meter": "lyon-3", "kwh": 1.5},
        {"event_id": "9a1b2c3d-0002-4e5f-8a9b-0c1d2e3f4a5b", "meter": "lyon-4", "kwh": 2.5},
    ]
    items = [("meters/lyon/reading", json.dumps(e)) for e in mqtt_events]
    items.append(items[0])  # a device retrying after a lost PUBACK
    items.append(("meters/lyon/reading", "not json"))
    print("publishing %d MQTT messages: 2 events, one of them twice, and 1 poison message" % len(items), flush=True)
    mqtt.publish_many(items, qos=1, protocol=ot.MQTTv5)

    print("emitting one event through the outbox: "
          "SELECT oncebridge.emit('rabbit-main', 'meters.oslo.oslo-1', ...)", flush=True)
    oslo = "5e6f7a8b-0001-4c2d-9e0f-1a2b3c4d5e6f"
    pg.execute("SELECT oncebridge.emit('rabbit-main', 'meters.oslo.oslo-1', %s::jsonb, %s)",
               (json.dumps({"event_id": oslo, "meter": "oslo-1", "kwh": 9.75}), oslo))
    ot.wait_until(lambda: pg.scalar("SELECT count(*) FROM meter_readings") >= 6, 60, desc="rows applied")
    b.wait_drained("meter-readings", timeout=60)
    time.sleep(1.0)

    show("meter_readings: one row per event (AMQP, MQTT and the outbox round trip), duplicates applied once", pg,
         "SELECT event_id, meter, reading, site FROM meter_readings ORDER BY event_id")
    show("meter_totals: a second route over the same events", pg,
         "SELECT meter, total FROM meter_totals ORDER BY meter")
    show("oncebridge.processed_events: the dedupe keys", pg,
         "SELECT consumer, event_id FROM oncebridge.processed_events ORDER BY consumer, event_id")
    show("oncebridge.outbox: emitted in a transaction, published after the broker confirmed", pg,
         "SELECT id, event_id, destination, topic, published_at IS NOT NULL AS published FROM oncebridge.outbox")
    show("oncebridge.dead_letters: poison, kept with the reason", pg,
         "SELECT id, consumer, event_id, topic, reason, sqlstate FROM oncebridge.dead_letters ORDER BY id")
    rc = d.terminate(timeout=20)
    print("\n== oncebridge log\n" + b.logs())
    print("oncebridge stopped with status %d; the throwaway servers are removed now" % rc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
