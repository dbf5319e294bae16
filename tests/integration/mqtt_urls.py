# SPDX-License-Identifier: Apache-2.0
"""MQTT URLs as users write them, against one real Mosquitto with three
more listeners: an IPv6 one (mqtt://[::1]:PORT), a WebSockets one
(ws://127.0.0.1:PORT/mqtt and ws://[::1]:PORT) and a WebSockets one over
TLS (wss://localhost:PORT/mqtt, checked against the harness's CA). One
daemon run holds a broker file per URL, each its own worker and route; a
stream with 10 % duplicates published to each route's topic is applied
exactly once through every one of them, and the outbox relay publishes
through ws:// too. oncebridge -t takes these URLs and refuses an IPv6
address over TLS with host name checks (paho-mqtt-c 1.3 cannot check a
certificate against one), naming file, line and key."""
import os
import re
import subprocess
import time

import obtest
import oncetest as ot

T0 = time.monotonic()
t = ot.TAP()
b = obtest.MQTTBridge("mqtt-urls")
certs = ot.make_certs(b.dir)
v6 = b.mqtt.add_ipv6_listener()
ws = b.mqtt.add_websockets_listener()
wss = b.mqtt.add_websockets_listener(*certs.server)
b.start_servers()
obtest.applied_table(b.pg)
obtest.note("servers up in %.1f s" % (time.monotonic() - T0))

N = 400
CASES = [  # (broker, url, tls group, paho's form)
    ("v6", "mqtt://[::1]:%d" % v6, None, "tcp://[::1]:%d" % v6),
    ("ws", "ws://127.0.0.1:%d/mqtt" % ws, None, "ws://127.0.0.1:%d/mqtt" % ws),
    ("ws6", "ws://[::1]:%d" % ws, None, "ws://[::1]:%d" % ws),
    ("wss", "wss://localhost:%d/mqtt" % wss, {"ca_file": certs.ca}, "wss://localhost:%d/mqtt" % wss),
]
files, streams = [], {}
for i, (name, url, tls, _) in enumerate(CASES):
    broker = b.mqtt_broker(name=name, url=url, client_id="ob-url-" + name)
    if tls:
        broker["tls"] = tls
    routes = [obtest.mqtt_route("r-" + name, "urls/%s/+" % name)]
    if name == "ws":
        routes.append(obtest.mqtt_route("r-out", "urlsout/#", event_id="header:event_id",
                                        params=["route", "event_id", "json:n"]))
    files.append(("%d-%s.conf" % (10 + i, name), broker, routes))
    streams[name] = obtest.mqtt_stream(N, topic="urls/%s/reading" % name, prefix="u" + name, seed=i)
config = b.write_config(files)
with open(os.path.join(b.confdir, "conf.d", "11-ws.conf"), "a") as f:
    f.write("outbox = { poll_interval_ms = 100; };\n")

out = subprocess.run(obtest.daemon_argv(config) + ["-t"], capture_output=True, text=True, timeout=30)
t.ok(out.returncode == 0, "oncebridge -t takes mqtt://[::1], ws://, ws://[::1] and wss:// URLs",
     diag=out.stdout + out.stderr)

d = b.start()
for c in CASES:
    b.wait_subscribed(c[0])
for name, url, _, paho in CASES:
    t.ok(re.search(r"broker %s: connected to %s as" % (name, re.escape(paho)), d.log()),
         "broker %s connected through %s (paho's %s)" % (name, url, paho))
pubs = [obtest.publish_in_background(b.mqtt, streams[c[0]][1], protocol=ot.MQTTv5) for c in CASES]
# outbox rows, published by the relay through ws:// and consumed back by route r-out
out_ids = ["out-%04d" % i for i in range(100)]
for e in out_ids:
    b.pg.execute("SELECT oncebridge.emit('ws', 'urlsout/x', '{\"n\": 1}'::jsonb, %s)", (e,))
for p in pubs:
    p.join(120)
    t.ok(p.error is None, "stream published", diag=repr(p.error))
for c in CASES:
    obtest.wait_applied(b.pg, "r-" + c[0], N, timeout=120, settle=0)
obtest.wait_applied(b.pg, "r-out", len(out_ids), timeout=60)
for name, url, _, _ in CASES:
    obtest.exactly_once(t, b.pg, "r-" + name, streams[name][0])
obtest.exactly_once(t, b.pg, "r-out", out_ids)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL"), 0,
      "every outbox row published")
t.ok(re.search(r"relay ws: connected to ws://127\.0\.0\.1:%d/mqtt for publishing" % ws, d.log()),
     "the relay published through ws://", diag=d.log()[-2000:])
t.is_(d.terminate(timeout=20), 0, "clean stop")

# -t: an IPv6 address over TLS cannot have its host name checked
bad = dict(b.mqtt_broker(name="v6tls", url="mqtts://[::1]:8883", client_id="ob-v6tls"), tls={"ca_file": certs.ca})
config = b.write_config([("10-v6tls.conf", bad, [obtest.mqtt_route("r-v6tls", "x/#")])])
out = subprocess.run(obtest.daemon_argv(config) + ["-t"], capture_output=True, text=True, timeout=30)
t.ok(out.returncode != 0 and re.search(r'conf\.d/10-v6tls\.conf:\d+: error: invalid value of key "url" in group '
                                       r'"broker": paho-mqtt-c 1\.3 cannot check a certificate against an IPv6',
                                       out.stdout + out.stderr),
     "-t refuses mqtts://[::1] with host name checks, naming file, line and key", diag=out.stdout + out.stderr)
obtest.note("run time %.1f s" % (time.monotonic() - T0))
raise SystemExit(t.done())
