# SPDX-License-Identifier: Apache-2.0
"""oncebridge check and try against real PostgreSQL and Mosquitto (issue
14). With the MQTT 5 and 3.1.1 client IDs of the configuration, check
reports "no session yet" and leaves none behind; after the daemon made its
session and went away with 20 messages queued for it, check reports the
session present and the messages held, and consumes none of them: the
daemon applies all 20 afterwards, exactly once, and the database rows are
the same before and after check. A client ID shared by two broker files
is an error naming both files and the key; a dedupe window shorter than
the session expiry a warning. A streaming standby: asynchronous is a
warning (and a role that may not see it is told so), synchronous is ok.
try with a topic outside the route's filter, with a header as the event
ID, and on a CBOR route (the worker's own decoder). Real servers: one start of each, and one standby."""
import json
import os
import re
import subprocess

import cbor2

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("check-mqtt")
b.start_servers()
obtest.applied_table(b.pg)
ROLE, PASSWORD = "ob_app", "check-mqtt-secret-81c3"
b.pg.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, PASSWORD))
out = subprocess.run(["psql", "-X", "-q", "-d", b.pg.conninfo, "-v", "role=" + ROLE, "-f",
                      os.path.join(obtest.SRCDIR, "sql", "oncebridge-grants.sql")],
                     capture_output=True, text=True, timeout=60)
t.is_(out.returncode, 0, "sql/oncebridge-grants.sql applies") or t.diag(out.stderr)
b.pg.execute("GRANT INSERT ON applied TO %s" % ROLE)
b.pg.execute("GRANT USAGE ON SEQUENCE applied_id_seq TO %s" % ROLE)
ENV = dict(os.environ, OB_TEST_DB_PASSWORD=PASSWORD)
ROUTES = [obtest.mqtt_route("m1", "ck/+/reading"),
          obtest.mqtt_route("m2", "ck/+/hdr", event_id="header:x-id"),
          obtest.mqtt_route("m3", "ck/+/cbor", format="cbor", event_id="field:id",
                            params=["route", "event_id", "field:n"])]


def configure(extra_files=(), **main):
    b.write_config([("10-mosq.conf", b.mqtt_broker("mosq", client_id="ck-mosq", session_expiry=3600), ROUTES)]
                   + list(extra_files),
                   database={"conninfo": b.pg.conninfo.replace("user=postgres", "user=" + ROLE),
                             "password_env": "OB_TEST_DB_PASSWORD"}, **main)


def check(*args):
    out = subprocess.run([obtest.BIN, "-c", b.config, "check"] + list(args), capture_output=True, text=True,
                         timeout=120, env=ENV)
    return out.returncode, out.stdout + out.stderr


def session_line(text, client_id):
    m = re.search(r'^(\w+) +session "%s" \(\S+ key "client_id"\) +(.*)$' % re.escape(client_id), text, re.M)
    return (m.group(1), m.group(2)) if m else (None, text)


def rows():
    return [b.pg.scalar("SELECT count(*) FROM %s" % tbl)
            for tbl in ("applied", "oncebridge.processed_events", "oncebridge.dead_letters")]


# --- sessions: none yet, and none left behind by check
configure()
rc, text = check()
t.diag("check before the first start:\n" + text)
t.ok(rc == 0 and not re.search(r"^(warning|error) ", text, re.M) and re.search(r"^\d+ checks: (\d+) ok, 0 warnings, 0 errors$",
                                                                          text, re.M),
     "good setup: every check is ok, exit 0", diag=text)
level, reason = session_line(text, "ck-mosq")
t.ok(level == "ok" and reason.startswith("no session yet"), "MQTT 5: no session yet", diag=reason)
rc, text = check()
level, reason = session_line(text, "ck-mosq")
t.ok(level == "ok" and reason.startswith("no session yet"), "MQTT 5: check left no session behind", diag=reason)
v4 = ("20-v4.conf", b.mqtt_broker("v4", client_id="ck-v4", mqtt_version=4), [obtest.mqtt_route("v4", "v4/#")])
configure([v4])
for i in range(2):
    rc, text = check()
    level, reason = session_line(text, "ck-v4")
    t.ok(level == "ok" and reason.startswith("no session yet"),
         "MQTT 3.1.1: no session yet (%s check)" % ("first", "second")[i], diag=reason)

# --- a kept session with messages queued: check consumes none of them
configure()
d = b.start(env=ENV)
b.wait_subscribed("mosq")
t.is_(d.terminate(timeout=20), 0, "the daemon made its session and stopped")
ids = ["held-%d" % i for i in range(20)]
b.mqtt.publish_many([("ck/1/reading", json.dumps({"id": e, "n": i})) for i, e in enumerate(ids)])
rows_before = rows()
for i in range(2):
    rc, text = check()
    level, reason = session_line(text, "ck-mosq")
    t.ok(rc == 0 and level == "ok" and reason.startswith("session present") and "with messages held" in reason
         and "took the session over" in reason,
         "check %d: session present with messages held, and says it took the session over" % (i + 1), diag=text)
t.is_(rows(), rows_before, "check wrote no row")
d = b.start(env=ENV)
obtest.wait_applied(b.pg, "m1", 20, timeout=60)
obtest.exactly_once(t, b.pg, "m1", ids)
t.is_(d.terminate(timeout=20), 0, "the daemon stops with status 0")

# --- a client ID shared by two broker files; a window shorter than the session expiry
twin = ("20-twin.conf", b.mqtt_broker("twin", client_id="ck-mosq"), [obtest.mqtt_route("tw", "tw/#")])
configure([twin])
rc, text = check()
t.ok(rc == 2 and re.search(r'^error +\S+10-mosq\.conf key "client_id" \(broker "mosq"\) +client ID "ck-mosq" is also '
                           r'used by broker "twin" in "\S+20-twin\.conf"', text, re.M),
     "a client ID in two broker files: an error naming both files and the key, exit 2", diag=text)
configure(retention={"dedupe_window_s": 600})
rc, text = check("--strict")
t.ok(rc == 1 and re.search(r'^warning +\S+oncebridge\.conf(:\d+)? +retention\.dedupe_window_s \(600 s\) is shorter than '
                           r'session_expiry \(3600 s\) of broker "mosq"', text, re.M),
     "a dedupe window shorter than the session expiry: a warning, exit 1 with --strict", diag=text)

# --- try: a topic outside the route's filter; a header as the event ID
configure()


def tryit(route, payload, *args):
    out = subprocess.run([obtest.BIN, "-c", b.config, "try", route] + list(args), input=payload,
                         capture_output=True, text=True, timeout=60, env=ENV)
    return out.returncode, out.stdout + out.stderr


rc, text = tryit("m1", '{"id": "x-1", "n": 1}', "--topic", "other/1/reading")
t.ok(rc == 1 and re.search(r'^outcome +not taken: topic "other/1/reading" does not match the route$', text, re.M),
     "try, a topic outside the route's filter: not taken", diag=text)
rc, text = tryit("m2", '{"n": 7}', "--topic", "ck/1/hdr", "--header", "x-id=h-1", "--db")
t.ok(rc == 0 and re.search(r'^event ID +"h-1" \(header:x-id\)$', text, re.M)
     and re.search(r'^\$3 +"7" \(json:n\)$', text, re.M)
     and re.search(r"^outcome +applied: 1 row affected \(rolled back\)$", text, re.M),
     "try --db with a header as the event ID: applied, 1 row", diag=text)
rc, text = tryit("m1", '{"id": "held-3", "n": 3}', "--topic", "ck/1/reading", "--db")
t.ok(rc == 0 and re.search(r'^outcome +duplicate: route "m1" processed event ID "held-3" before', text, re.M),
     "try --db with an event the daemon applied: duplicate", diag=text)
out = subprocess.run([obtest.BIN, "-c", b.config, "try", "m3", "--topic", "ck/1/cbor", "--db"],
                     input=cbor2.dumps({"id": "c-1", "n": 9}), capture_output=True, timeout=60, env=ENV)
text = (out.stdout + out.stderr).decode(errors="replace")
t.ok(out.returncode == 0 and re.search(r'^event ID +"c-1" \(field:id\)$', text, re.M)
     and re.search(r'^\$3 +"9" \(field:n\)$', text, re.M)
     and re.search(r"^outcome +applied: 1 row affected \(rolled back\)$", text, re.M),
     "try --db on a CBOR route: the worker's decoder, applied", diag=text)
out = subprocess.run([obtest.BIN, "-c", b.config, "try", "m3", "--topic", "ck/1/cbor"], input=b"\xa1\x62id",
                     capture_output=True, timeout=60, env=ENV)
text = (out.stdout + out.stderr).decode(errors="replace")
t.ok(out.returncode == 1 and re.search(r"^outcome +dead-lettered: invalid CBOR: unexpected end of input at offset 4$",
                                       text, re.M), "try, a truncated CBOR payload: dead-lettered, as a worker would",
     diag=text)
t.is_(rows(), [20, 20, 0], "try wrote no row")

# --- a streaming standby (the harness's): asynchronous, then synchronous
ot.Standby(b.pg, sync=False).start()
rc, text = check("--strict")
t.ok(rc == 1 and re.search(r'^warning +standbys +no standby is synchronous \((standby|\?) \((async|hidden)\)\): a failover '
                           r'to an asynchronous standby may lose effects', text, re.M),
     "an asynchronous standby (synchronous_standby_names empty): a warning, even to a role that may not see "
     "pg_stat_replication's details; exit 1 with --strict", diag=text)
b.pg.execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
b.pg.execute("SELECT pg_reload_conf()")
t.eventually(lambda: b.pg.scalar("SELECT sync_state FROM pg_stat_replication") == "sync", 30,
             "the standby is synchronous")
rc, text = check()
t.ok(re.search(r'^warning +standbys +1 standby connections, but this role may not see whether they are synchronous; '
               r'fix: GRANT pg_monitor', text, re.M), "a standby the role may not see: a warning saying so", diag=text)
b.pg.execute("GRANT pg_monitor TO %s" % ROLE)
rc, text = check("--strict")
t.ok(rc == 0 and re.search(r'^ok +standbys +1 of 1 standbys synchronous: standby \(sync\)$', text, re.M),
     "a synchronous standby, seen with pg_monitor: ok, exit 0 with --strict", diag=text)
raise SystemExit(t.done())
