# SPDX-License-Identifier: Apache-2.0
"""TLS to RabbitMQ, Mosquitto and PostgreSQL, with a throwaway PKI made by
the openssl command. One daemon run holds a broker file per case, each its
own worker: with the right CA the bridge applies every event exactly once
(AMQP and MQTT consumers, and the outbox relay to both brokers); with an
unrelated CA, or a certificate that does not name the host, the worker
logs why, applies nothing and keeps retrying; with verify_hostname = false
the wrong-host case connects and a warning is logged (at start and by
oncebridge -t); a Mosquitto listener that requires a client certificate
takes the one from cert_file/key_file and refuses a client without one.
RabbitMQ's certificate names only IP 127.0.0.1, so amqps://127.0.0.1 needs
oncebridge's IP address check (rabbitmq-c 0.11 matches DNS names only) and
amqps://localhost is the wrong host. Then PostgreSQL over TLS:
sslmode=verify-full with the right root certificate (the sessions show in
pg_stat_ssl), an unrelated root certificate and a wrong host name fail
with libpq's reason and are retried, and verify-ca with the wrong host
name connects, with a warning."""
import json
import os
import re
import subprocess
import time

import obtest
import oncetest as ot

T0 = time.monotonic()
t = ot.TAP()
b = obtest.MQTTBridge("tls")
certs = ot.make_certs(b.dir)
b.pg.tls = certs.server
b.rabbit = ot.RabbitMQ(b.dir, tls={"cert": certs.server_ip[0], "key": certs.server_ip[1]})
mq_ok = b.mqtt.add_tls_listener(*certs.server)
mq_elsewhere = b.mqtt.add_tls_listener(*certs.elsewhere)
mq_client = b.mqtt.add_tls_listener(*certs.server, ca=certs.ca, require_certificate=True)
ot.start_all(b.pg, b.rabbit, b.mqtt)
b.install_schema()
obtest.applied_table(b.pg)
obtest.note("servers up in %.1f s" % (time.monotonic() - T0))

N = 40
PG_TLS = "%s sslmode=verify-full sslrootcert=%s" % (b.pg.conninfo, certs.ca)


def amqp(name, host, **tls):
    return b.amqp_broker(name=name, url="amqps://guest@%s:%d/" % (host, b.rabbit.tls_port),
                         tls=dict({"ca_file": certs.ca}, **tls))


def mqtt(name, port, **tls):
    return b.mqtt_broker(name=name, url="mqtts://127.0.0.1:%d" % port, tls=dict({"ca_file": certs.ca}, **tls))


def aroute(name):
    return obtest.applied_route(name, "q-" + name, declare_queue=True)


def mroute(name):
    return obtest.mqtt_route(name, "tls/%s/#" % name)


# what each case should do: (broker, route, applies?)
AMQP = [("a-ok", "ra-ok", True), ("a-wrongca", "ra-wrongca", False),
        ("a-wronghost", "ra-wronghost", False), ("a-nohostcheck", "ra-nohostcheck", True)]
MQTT = [("m-ok", "rm-ok", True), ("m-wrongca", "rm-wrongca", False),
        ("m-wronghost", "rm-wronghost", False), ("m-nohostcheck", "rm-nohostcheck", True),
        ("m-client", "rm-client", True), ("m-noclient", "rm-noclient", False)]
out_amqp = obtest.applied_route("ra-out", "q-out", declare_queue=True, bind_exchange="amq.topic",
                                bind_keys=["tlsout.#"], event_id="property:message_id")
out_mqtt = obtest.mqtt_route("rm-out", "tlsout/#", event_id="header:event_id",
                             params=["route", "event_id", "json:n"])
files = [
    ("10-a-ok.conf", amqp("a-ok", "127.0.0.1"), [aroute("ra-ok"), out_amqp]),
    ("11-a-wrongca.conf", amqp("a-wrongca", "127.0.0.1", ca_file=certs.other_ca), [aroute("ra-wrongca")]),
    ("12-a-wronghost.conf", amqp("a-wronghost", "localhost"), [aroute("ra-wronghost")]),
    ("13-a-nohostcheck.conf", amqp("a-nohostcheck", "localhost", verify_hostname=False), [aroute("ra-nohostcheck")]),
    ("20-m-ok.conf", mqtt("m-ok", mq_ok), [mroute("rm-ok"), out_mqtt]),
    ("21-m-wrongca.conf", mqtt("m-wrongca", mq_ok, ca_file=certs.other_ca), [mroute("rm-wrongca")]),
    ("22-m-wronghost.conf", mqtt("m-wronghost", mq_elsewhere), [mroute("rm-wronghost")]),
    ("23-m-nohostcheck.conf", mqtt("m-nohostcheck", mq_elsewhere, verify_hostname=False), [mroute("rm-nohostcheck")]),
    ("24-m-client.conf", mqtt("m-client", mq_client, cert_file=certs.client[0], key_file=certs.client[1]),
     [mroute("rm-client")]),
    ("25-m-noclient.conf", mqtt("m-noclient", mq_client), [mroute("rm-noclient")]),
]
# a refused connection is retried quietly (one line when it starts, then a
# summary per log_repeat_interval_s): every second here, to count retries
b.write_config(files, database={"conninfo": PG_TLS}, log_repeat_interval_s=1)
for fn in ("10-a-ok.conf", "20-m-ok.conf"):
    with open(os.path.join(b.confdir, "conf.d", fn), "a") as f:
        f.write("outbox = { batch_size = 50; poll_interval_ms = 200; };\n")
for _, route, _ in AMQP:
    b.rabbit.declare_queue("q-" + route)
b.rabbit.declare_queue("q-out", keys=["tlsout.#"])

# --- oncebridge -t: valid, and both verify_hostname = false are warned about
out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True, timeout=30)
warned = re.findall(r"(\S+):\d+: warning: TLS host name verification is off for broker \"([^\"]+)\"", out.stderr)
t.ok(out.returncode == 0 and sorted(w[1] for w in warned) == ["a-nohostcheck", "m-nohostcheck"],
     "oncebridge -t accepts the TLS configuration and warns about verify_hostname = false, with file and line",
     diag=out.stdout + out.stderr)

# --- the daemon: every case at once
d = b.start()
for name, route, applies in AMQP + MQTT:
    if applies and name.startswith("m-"):
        b.wait_subscribed(name)
    elif applies:
        d.wait_log(r"broker %s: connected to \S+ \(TLS\), consuming" % re.escape(name), timeout=30)
t.ok(all(re.search(r"warning: .*TLS host name verification is off for broker \"%s\"" % n, d.log())
         for n in ("a-nohostcheck", "m-nohostcheck")),
     "the daemon logs the verify_hostname = false warnings at start")

streams = {}
for name, route, _ in AMQP:
    ids, msgs = obtest.event_stream(N, routing_key="ev." + route, seed=len(streams))
    streams[route] = ids
    b.rabbit.publish_many([dict(m, exchange="", routing_key="q-" + route) for m in msgs])
for name, route, _ in MQTT:
    ids, items = obtest.mqtt_stream(N, topic="tls/%s/x" % route, seed=len(streams))
    streams[route] = ids
    b.mqtt.publish_many(items)

for name, route, applies in AMQP + MQTT:
    if applies:
        obtest.wait_applied(b.pg, route, N, timeout=30, settle=0)
time.sleep(1.0)
for name, route, applies in AMQP + MQTT:
    if applies:
        obtest.exactly_once(t, b.pg, route, streams[route])


def failures(name):
    return re.findall(r"broker %s: (?:still failing after [^:]*: )?(could not connect[^\n]*)" % re.escape(name), d.log())


# the refused cases: a clear reason, nothing applied, still retrying
HINT = r"does not name the host, or a client certificate the broker refused or wanted"
REASONS = {
    "a-wrongca": r"could not connect to 127\.0\.0\.1:\d+ \(TLS\): SSL peer cert verification failed: "
                 r"unable to get local issuer certificate",
    "a-wronghost": r"could not connect to localhost:\d+ \(TLS\): SSL peer cert verification failed: hostname mismatch",
    "m-wrongca": r"TLS error: certificate verify failed",
    "m-wronghost": HINT,
    "m-noclient": HINT,
}
for name, reason in REASONS.items():
    ot.wait_until(lambda: len(failures(name)) >= 2, 30, 0.1, "%s failing twice" % name)
    lines = [line for line in d.log().splitlines() if "broker %s:" % name in line]
    t.ok(any(re.search(reason, line) for line in lines),
         "%s: refused with a clear reason (/%s/), retried (%d attempts so far)" % (name, reason, len(failures(name))),
         diag="\n".join(lines[-8:]))
obtest.note("e.g. " + "\n# ".join(next(line for line in d.log().splitlines()
                                        if "broker %s: could not connect" % n in line) for n in REASONS))
route_of = dict((n, r) for n, r, _ in AMQP + MQTT)
applied_wrong = {r: obtest.applied_events(b.pg, r) for r in (route_of[n] for n in REASONS)}
t.ok(not any(applied_wrong.values()), "the refused cases applied nothing", diag=str(applied_wrong))
left = {r: b.rabbit.queue_counts("q-" + r)[0] for r in ("ra-wrongca", "ra-wronghost")}
t.ok(all(v >= N for v in left.values()), "their AMQP queues still hold every message", diag=str(left))

# --- the outbox relays publish over TLS to both brokers
conn = b.pg.connect()
cur = conn.cursor()
cur.execute("SELECT oncebridge.emit('a-ok', 'tlsout.' || g, jsonb_build_object('id', 'x', 'n', g))"
            " FROM generate_series(1, %s) g", (N,))
amqp_out = [r[0] for r in cur.fetchall()]
cur.execute("SELECT oncebridge.emit('m-ok', 'tlsout/' || g, jsonb_build_object('n', g))"
            " FROM generate_series(1, %s) g", (N,))
mqtt_out = [r[0] for r in cur.fetchall()]
conn.close()
obtest.wait_applied(b.pg, "ra-out", N, timeout=30, settle=0)
obtest.wait_applied(b.pg, "rm-out", N, timeout=30, settle=0.5)
obtest.exactly_once(t, b.pg, "ra-out", amqp_out)
obtest.exactly_once(t, b.pg, "rm-out", mqtt_out)
t.ok(re.search(r"connected to 127\.0\.0\.1:%d \(TLS\) for publishing" % b.rabbit.tls_port, d.log())
     and re.search(r"connected to ssl://127\.0\.0\.1:%d for publishing" % mq_ok, d.log()),
     "both relays connected over TLS")

# --- PostgreSQL: every session of the daemon is encrypted
ssl_rows = b.pg.execute("SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                        " WHERE a.application_name LIKE 'oncebridge%%'")
t.ok(ssl_rows and all(r[0] for r in ssl_rows),
     "PostgreSQL: all %d oncebridge sessions use TLS (%s)" % (len(ssl_rows), ",".join(sorted({str(r[1]) for r in ssl_rows}))),
     diag=str(ssl_rows))
t.ok(d.alive(), "the daemon is still running after the refused cases")
d.terminate()


# --- PostgreSQL failure cases: one short run each, one MQTT broker
def pg_run(conninfo):
    b.write_config([("20-m-ok.conf", mqtt("m-ok", mq_ok), [mroute("rm-ok")])], database={"conninfo": conninfo},
                   log_repeat_interval_s=1)
    return b.start()


def db_failures(daemon):
    return re.findall(r"could not connect to the database: ([^\n]*)", daemon.log())


for label, conninfo, reason in [
        ("an unrelated root certificate", "%s sslmode=verify-full sslrootcert=%s" % (b.pg.conninfo, certs.other_ca),
         r"certificate verify failed"),
        ("a host name the certificate does not list",
         "%s hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=%s"
         % (b.pg.conninfo.replace("host=127.0.0.1", "host=elsewhere.example"), certs.ca),
         r"server certificate for \"localhost\" \(and \d+ other names?\) does not match host name \"elsewhere.example\"")]:
    d = pg_run(conninfo)
    ot.wait_until(lambda: len(db_failures(d)) >= 2, 30, 0.1, "two database failures")
    t.ok(re.search(reason, "\n".join(db_failures(d))) is not None and d.alive(),
         "PostgreSQL with %s: refused (/%s/), retried %d times, still running" % (label, reason, len(db_failures(d))),
         diag="\n".join(db_failures(d)[:3]))
    d.terminate()

before = obtest.applied_events(b.pg, "rm-ok")
d = pg_run("%s hostaddr=127.0.0.1 sslmode=verify-ca sslrootcert=%s"
           % (b.pg.conninfo.replace("host=127.0.0.1", "host=elsewhere.example"), certs.ca))
b.wait_subscribed("m-ok")
ids, items = obtest.mqtt_stream(N, topic="tls/rm-ok/x", seed=99, prefix="verify-ca")
b.mqtt.publish_many(items)
obtest.wait_applied(b.pg, "rm-ok", before + N, timeout=30, settle=0.5)
t.ok(obtest.applied_events(b.pg, "rm-ok") == before + N and
     re.search(r"warning: sslmode \"verify-ca\" in key \"conninfo\" does not check", d.log()),
     "PostgreSQL with sslmode=verify-ca and the wrong host name connects, applies %d events, and warns" % N,
     diag=d.log()[-2000:])
d.terminate()

obtest.note("tls.py took %.1f s" % (time.monotonic() - T0))
raise SystemExit(t.done())
