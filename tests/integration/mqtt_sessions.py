# SPDX-License-Identifier: Apache-2.0
"""No loss when the set of MQTT sessions changes (adapters/mqtt_retire.c):

* upgrade: a setup that ran one plain session (workers = 1, the old
  default) has messages queued in it while the daemon is stopped; started
  with the new default (4 workers on $share/) while its topic stays busy
  (the old plain subscription gets a copy of every message, so it is never
  quiet), every queued and every new message is applied exactly once and
  the old session is retired, and gone from the broker;
* fewer workers (MQTT 3.1.1): 4 workers on a shared group, stopped while
  messages are dealt to their offline sessions, then started with
  workers = 1: every message is applied exactly once, the four old
  sessions are gone (nothing is queued for them any more) and so are their
  workers' redelivery horizons, which would hold back pruning.

A session's presence is read from the broker itself: an MQTT 5 connect with
clean start off reports whether the broker had one (and, with session
expiry 0, ends it)."""
import threading
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("mqtt-sessions")
b.start_servers()
obtest.applied_table(b.pg)
# with retention on, each worker keeps a redelivery horizon; a retired
# session's must go with it (MQTT 3.1.1: it would hold pruning for good)
RETENTION = {"dedupe_window_s": 86400, "interval_s": 5}


def session_present(client_id):
    """Whether Mosquitto holds a session for client_id (None: no answer)."""
    import paho.mqtt.client as mqtt
    got, ready = {}, threading.Event()

    def on_connect(client, userdata, flags, rc, properties=None):
        got["present"] = bool(flags.get("session present"))
        ready.set()

    c = mqtt.Client(client_id, protocol=mqtt.MQTTv5)
    c.on_connect = on_connect
    c.connect("127.0.0.1", b.mqtt.port, clean_start=False)
    c.loop_start()
    ready.wait(10)
    c.disconnect()
    c.loop_stop()
    return got.get("present")


class Steady:
    """Publishes one event every 50 ms on topic until stopped: a busy
    topic, whose plain subscription in the old session is never quiet."""

    def __init__(self, topic, prefix):
        import json
        self.ids, self.stop, self.error = [], threading.Event(), None
        self.client = b.mqtt.client(protocol=ot.MQTTv5)

        def loop():
            try:
                while not self.stop.is_set() and len(self.ids) < 2000:
                    e = "%s-%06d" % (prefix, len(self.ids))
                    self.client.publish(topic, json.dumps({"id": e, "n": len(self.ids)}), qos=1).wait_for_publish(10)
                    self.ids.append(e)
                    time.sleep(0.05)
            except Exception as e:
                self.error = e
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def end(self):
        self.stop.set()
        self.thread.join(20)
        self.client.loop_stop()
        self.client.disconnect()
        return self.ids


def retired(d, n):
    return d.log().count("retired the MQTT session") >= n


def run(broker, route, n_queued, n_live, prefix, subscribed, n_retired, steady=False):
    """Start with broker while n_queued messages wait in the old sessions,
    publish n_live more once running (or, steady, one every 50 ms until the
    old sessions are retired); every event applied once."""
    topic = "%s/dev1/reading" % prefix
    ids_q, items_q = obtest.mqtt_stream(n_queued, topic=topic, dup_ratio=0.1, prefix=prefix + "-q")
    b.mqtt.publish_many(items_q, protocol=ot.MQTTv5)
    b.write_config([("10-mosq.conf", broker, [route])], retention=RETENTION)
    d = b.start()
    b.wait_subscribed(count=subscribed)
    if steady:
        pub = Steady(topic, prefix + "-l")
        t.eventually(lambda: retired(d, n_retired), 40,
                     "%s: the old session is retired while its topic is busy (a message every 50 ms)" % prefix)
        ids_l = pub.end()
        t.ok(pub.error is None, "%s: %d messages published meanwhile" % (prefix, len(ids_l)), diag=repr(pub.error))
    else:
        ids_l, items_l = obtest.mqtt_stream(n_live, topic=topic, dup_ratio=0.1, prefix=prefix + "-l")
        b.mqtt.publish_many(items_l, protocol=ot.MQTTv5)
        t.eventually(lambda: retired(d, n_retired), 30, "%s: the %d old sessions were retired" % (prefix, n_retired))
    t.eventually(lambda: obtest.applied_events(b.pg, route["name"]) >= n_queued + len(ids_l), 45,
                 "%s: the %d messages queued in the old sessions and the %d published after the start are applied"
                 % (prefix, n_queued, len(ids_l)))
    obtest.exactly_once(t, b.pg, route["name"], ids_q + ids_l)
    t.is_(d.terminate(timeout=20), 0, "%s: clean stop" % prefix)


# (a) upgrade from one plain session to the default
up = obtest.mqtt_route("up", "up/+/reading")
b.write_config([("10-mosq.conf", b.mqtt_broker(client_id="ob-up", workers=1), [up])])
d = b.start()
b.wait_subscribed()
d.terminate(timeout=20)
run(b.mqtt_broker(client_id="ob-up", workers=None), up, 300, 0, "up", 4, 1, steady=True)
log = b.logs()
t.ok('subscribed to "$share/ob-up/up/+/reading"' in log, "the default subscribes $share/CLIENT_ID/filter")
t.is_(session_present("ob-up"), False, "the old plain session \"ob-up\" is gone from the broker")

# (b) from 4 workers on a shared group down to 1, MQTT 3.1.1
down = obtest.mqtt_route("down", "down/+/reading")
b.write_config([("10-mosq.conf", b.mqtt_broker(client_id="ob-dn", workers=4, mqtt_version=4), [down])],
               retention=RETENTION)
d = b.start()
b.wait_subscribed(count=4)
t.eventually(lambda: b.pg.scalar("SELECT count(DISTINCT worker) FROM oncebridge.consumer_horizons"
                                 " WHERE worker LIKE 'mqtt:ob-dn-%'") == 4, 20,
             "the 4 workers keep their redelivery horizons")
d.terminate(timeout=20)
run(b.mqtt_broker(client_id="ob-dn", workers=1, mqtt_version=4), down, 400, 100, "down", 1, 4)
horizons = [r[0] for r in b.pg.execute("SELECT DISTINCT worker FROM oncebridge.consumer_horizons"
                                       " WHERE worker LIKE 'mqtt:ob-dn%' ORDER BY 1")]
t.is_(horizons, ["mqtt:ob-dn"], "the retired sessions' redelivery horizons are gone, the running worker's stays")
gone = [i for i in range(4) if session_present("ob-dn-%d" % i) is False]
t.is_(gone, [0, 1, 2, 3], "the four old sessions \"ob-dn-N\" are gone from the broker")
raise SystemExit(t.done())
