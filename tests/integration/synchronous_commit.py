# SPDX-License-Identifier: Apache-2.0
"""Acks follow COMMIT, so a COMMIT must be durable, and on a primary with a
synchronous standby it must be on the standby, before oncebridge acks
(issue 11, path 5). Whatever synchronous_commit the database or role sets,
oncebridge's sessions run with at least "on": "off", "local" and
"remote_write" are raised to "on" with a warning naming the value;
"on" and "remote_apply" are kept. The business SQL records the session's
setting. Real Mosquitto and PostgreSQL."""
import json

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("synchronous-commit")
b.start_servers()
b.pg.execute("CREATE TABLE seen (event_id text NOT NULL, setting text NOT NULL)")
route = obtest.mqtt_route("r1", "sc/#", sql="INSERT INTO seen VALUES ($1, current_setting('synchronous_commit'))",
                          params=["event_id"])
b.write_config([("10-mosq.conf", b.mqtt_broker("mosq"), [route])])

CASES = [("off", "on"), ("local", "on"), ("remote_write", "on"), ("on", "on"), ("remote_apply", "remote_apply")]
for configured, want in CASES:
    b.pg.execute("ALTER DATABASE %s SET synchronous_commit = %s" % (b.pg.dbname, configured))
    d = b.start()
    b.wait_subscribed("mosq")
    event = "sc-" + configured
    b.mqtt.publish_many([("sc/1", json.dumps({"id": event}))])
    ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM seen WHERE event_id = %s", (event,)) > 0, 30,
                  desc="event %s applied" % event)
    got = b.pg.scalar("SELECT setting FROM seen WHERE event_id = %s", (event,))
    t.is_(got, want, "database synchronous_commit = %s: oncebridge's session runs with %s" % (configured, want))
    warned = 'synchronous_commit is "%s"' % configured in d.log()
    t.is_(warned, want != configured, "a warning names the value %s" % configured
          if want != configured else "no warning for %s" % configured)
    t.is_(d.terminate(timeout=20), 0, "oncebridge stops with status 0")
t.is_(b.pg.scalar("SELECT count(*) FROM seen"), len(CASES), "one row per event")
raise SystemExit(t.done())
