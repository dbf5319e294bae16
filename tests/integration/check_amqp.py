# SPDX-License-Identifier: Apache-2.0
"""oncebridge check against real PostgreSQL and RabbitMQ (issue 14). A
good setup -- a least-privilege role, durable classic and quorum queues,
a binding, an outbox exchange -- is all ok and exits 0, in text and in
--json. Then one precondition at a time is broken for real and check
names it, with the file and key or the server object: a missing table, a
wrong column, a missing queue, a non-durable queue, a missing binding
exchange, a quorum queue whose delivery limit is below
retry.max_attempts, fsync = off, a role without INSERT on the business
table, a role without the grants of sql/oncebridge-grants.sql, a role
that may write more than it needs. check changes nothing: queue depths
and database rows are the same before and after. Then try runs good,
duplicate, poison and transient payloads through the sample
configuration's route and leaves the database as it was. Real servers,
one start of each."""
import json
import os
import re
import subprocess
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("check-amqp")
b.start_servers()
obtest.applied_table(b.pg)
b.pg.execute("CREATE TABLE other (x int)")
ROLE, PASSWORD = "ob_app", "check-db-secret-2f9a"
b.pg.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, PASSWORD))
out = subprocess.run(["psql", "-X", "-q", "-d", b.pg.conninfo, "-v", "role=" + ROLE, "-f",
                      os.path.join(obtest.SRCDIR, "sql", "oncebridge-grants.sql")],
                     capture_output=True, text=True, timeout=60)
t.is_(out.returncode, 0, "sql/oncebridge-grants.sql applies") or t.diag(out.stderr)
b.pg.execute("GRANT INSERT ON applied TO %s" % ROLE)
b.pg.execute("GRANT USAGE ON SEQUENCE applied_id_seq TO %s" % ROLE)
ENV = dict(os.environ, OB_TEST_DB_PASSWORD=PASSWORD)

b.rabbit.declare_queue("ck-classic", keys=["ck.classic"])
b.rabbit.declare_queue("ck-quorum", keys=["ck.quorum"], arguments={"x-queue-type": "quorum", "x-delivery-limit": 10})
b.rabbit.declare_queue("ck-low-limit", arguments={"x-queue-type": "quorum", "x-delivery-limit": 2})
conn = b.rabbit.connection()
conn.channel().queue_declare("ck-transient", durable=False)
conn.close()


def routes(**broken):
    """The good routes; broken replaces keys of one of them."""
    rs = [obtest.applied_route("classic", "ck-classic"),
          obtest.applied_route("quorum", "ck-quorum"),
          obtest.applied_route("declared", "ck-declared", declare_queue=True, bind_exchange="amq.topic",
                               bind_keys=["ck.declared"])]
    for key, value in broken.items():
        rs[0][key] = value
    return rs


def configure(max_attempts=3, **broken):
    b.write_config([("10-rabbit.conf", b.amqp_broker(), routes(**broken))],
                   database={"conninfo": b.pg.conninfo.replace("user=postgres", "user=" + ROLE),
                             "password_env": "OB_TEST_DB_PASSWORD"},
                   retry={"initial_ms": 100, "max_ms": 2000, "max_attempts": max_attempts})
    with open(os.path.join(b.confdir, "conf.d", "10-rabbit.conf"), "a") as f:
        f.write('outbox = { exchange = "amq.topic"; };\n')


def check(*args):
    started = time.monotonic()
    out = subprocess.run([obtest.BIN, "-c", b.config, "check"] + list(args), capture_output=True, text=True,
                         timeout=120, env=ENV)
    return out.returncode, out.stdout, out.stderr, time.monotonic() - started


def lines(text, level):
    return [ln for ln in text.splitlines() if ln.startswith(level + " ")]


configure()
rc, text, err, took = check()
t.diag("check of the good setup took %.1f s:\n%s" % (took, text))
t.is_(rc, 0, "good setup: check exits 0")
t.ok(not lines(text, "warning") and not lines(text, "error"), "good setup: every check is ok", diag=text + err)
rc, doc, err, took = check("--json")
doc = json.loads(doc)
t.ok(rc == 0 and doc["status"] == 0 and doc["summary"] == {"ok": len(doc["checks"]), "warning": 0, "error": 0}
     and all(set(c) == {"status", "subject", "reason", "fix"} for c in doc["checks"]),
     "--json: status, summary and one object per check with status, subject, reason and fix", diag=doc)

# check changes nothing: messages waiting in the queues, rows in the database
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": key, "body": '{"id": "w-%s", "n": 1}' % key}
                       for key in ("ck.classic", "ck.quorum")])
b.pg.execute("INSERT INTO oncebridge.processed_events (consumer, event_id) VALUES ('classic', 'seen-1')")
TABLES = ("applied", "oncebridge.processed_events", "oncebridge.dead_letters", "oncebridge.outbox",
          "oncebridge.consumer_horizons")


def depths():
    """{queue: (messages, consumers)} of the test's queues, by passive
    declares on one connection (rabbitmqctl takes seconds per call)."""
    conn = b.rabbit.connection()
    try:
        ch = conn.channel()
        out = {}
        for q in ("ck-classic", "ck-quorum", "ck-low-limit", "ck-transient"):
            m = ch.queue_declare(q, passive=True).method
            out[q] = (m.message_count, m.consumer_count)
        return out
    finally:
        conn.close()


def state():
    return (depths(), [b.pg.scalar("SELECT count(*) FROM %s" % tbl) for tbl in TABLES])


ot.wait_until(lambda: depths().get("ck-quorum") == (1, 0), 30, desc="the quorum queue reports its message")
before = state()
t.is_(before[0]["ck-classic"], (1, 0), "one message waits in ck-classic, one in ck-quorum")


def expect(desc, level, pattern, rc_want=2, strict=False, **broken):
    """Run check with the routes broken as said; one line of level must
    match pattern; exit status rc_want."""
    configure(**broken)
    rc, text, err, took = check(*(["--strict"] if strict else []))
    hits = [ln for ln in lines(text, level) if re.search(pattern, ln)]
    t.ok(rc == rc_want and hits, "%s: %s naming it, exit %d" % (desc, level, rc_want), diag=text + err)
    return text


expect("a route's SQL on a missing table", "error",
       r'10-rabbit\.conf:\d+ route "classic" key "sql" +does not prepare: relation "nope" does not exist \(SQLSTATE 42P01\)',
       sql="INSERT INTO nope (route, event_id, n) VALUES ($1, $2, $3)")
expect("a route's SQL with a wrong column", "error",
       r'10-rabbit\.conf:\d+ route "classic" key "sql" +does not prepare: column "nn" of relation "applied" does not exist',
       sql="INSERT INTO applied (route, event_id, nn) VALUES ($1, $2, $3)")
expect("a queue that does not exist", "error",
       r'queue "ck-none" \(\S+10-rabbit\.conf:\d+ route "classic" key "queue"\) +does not exist on broker "rabbit"',
       queue="ck-none")
expect("a non-durable queue", "error",
       r'queue "ck-transient" \(\S+10-rabbit\.conf:\d+ route "classic" key "queue"\) +is not durable',
       queue="ck-transient")
expect("a binding to an exchange that does not exist", "error",
       r'exchange "ck-nowhere" \(\S+10-rabbit\.conf:\d+ route "classic" key "bind_exchange"\) +does not exist on '
       r'broker "rabbit": the binding fails', queue="ck-bound", declare_queue=True, bind_exchange="ck-nowhere",
       bind_keys=["ck.x"])
expect("a quorum queue whose delivery limit is below retry.max_attempts", "error",
       r'queue "ck-low-limit" \(\S+10-rabbit\.conf:\d+ route "classic" key "queue"\) +quorum queue with delivery '
       r'limit 2, below retry\.max_attempts \(3\) in "\S+oncebridge\.conf"', queue="ck-low-limit")
configure()

b.pg.execute("ALTER SYSTEM SET fsync = off")
b.pg.execute("SELECT pg_reload_conf()")
t.eventually(lambda: b.pg.scalar("SHOW fsync") == "off", 10, "fsync is off after the reload")
expect("fsync = off", "error", r'server setting "fsync" +is off: a crash')
b.pg.execute("ALTER SYSTEM RESET fsync")
b.pg.execute("SELECT pg_reload_conf()")
t.eventually(lambda: b.pg.scalar("SHOW fsync") == "on", 10, "fsync is on again")

b.pg.execute("REVOKE INSERT ON applied FROM %s" % ROLE)
expect("a role without INSERT on the business table", "error",
       r'10-rabbit\.conf:\d+ route "classic" key "sql" +prepares, but role "ob_app" may not run it: permission denied '
       r'for table applied')
b.pg.execute("GRANT INSERT ON applied TO %s" % ROLE)
b.pg.execute("REVOKE SELECT ON oncebridge.outbox FROM %s" % ROLE)
b.pg.execute("REVOKE INSERT ON oncebridge.dead_letters FROM %s" % ROLE)
expect("a role without the grants of sql/oncebridge-grants.sql", "error",
       r'role "ob_app" +lacks privileges the daemon needs: INSERT on oncebridge\.dead_letters, SELECT on oncebridge\.outbox; '
       r'fix: as the schema\'s owner: psql -v role=ob_app -f \S+oncebridge-grants\.sql')
b.pg.execute("GRANT SELECT ON oncebridge.outbox TO %s" % ROLE)
b.pg.execute("GRANT INSERT ON oncebridge.dead_letters TO %s" % ROLE)
b.pg.execute("GRANT UPDATE, DELETE ON applied, other TO %s" % ROLE)
expect("a role that may write more than it needs", "warning",
       r'role "ob_app" +may write more than the daemon and the routes\' SQL need: DELETE on public\.applied, '
       r'UPDATE on public\.applied, DELETE on public\.other, UPDATE on public\.other', rc_want=0)
expect("the same with --strict", "warning", r'role "ob_app" +may write more', rc_want=1, strict=True)
b.pg.execute("REVOKE UPDATE, DELETE ON applied, other FROM %s" % ROLE)

t.is_(state(), before, "check changed nothing: queue depths and rows are as before")

# --- try, on the sample configuration (conf/), pointed at these servers
b.pg.run_psql_file(os.path.join(obtest.SRCDIR, "conf", "demo-business.sql"))
with open(os.path.join(obtest.SRCDIR, "conf", "oncebridge.conf")) as f:
    main = f.read()
main = re.sub(r'conninfo = "[^"]*"', 'conninfo = "%s"' % b.pg.conninfo, main)
main = re.sub(r"statement_timeout_ms = \d+", "statement_timeout_ms = 500", main)
with open(os.path.join(obtest.SRCDIR, "conf", "conf.d", "rabbitmq.conf")) as f:
    rabbit = f.read().replace("oncebridge@127.0.0.1:5672", "%s@127.0.0.1:%d" % (b.rabbit.user, b.rabbit.port))
for fn in os.listdir(os.path.join(b.confdir, "conf.d")):
    os.unlink(os.path.join(b.confdir, "conf.d", fn))
with open(os.path.join(b.confdir, "oncebridge.conf"), "w") as f:
    f.write(main)
with open(os.path.join(b.confdir, "conf.d", "rabbitmq.conf"), "w") as f:
    f.write(rabbit)
# the sample names its password file relative to itself (or, before, to the main file's directory)
m = re.search(r'password_file = "([^"]+)"', rabbit)
obtest.write_secret(os.path.normpath(os.path.join(b.confdir, "conf.d", m.group(1))), b.rabbit.password)
b.config = os.path.join(b.confdir, "oncebridge.conf")

# a real apply of one event by the daemon
d = b.start()
GOOD = '{"event_id": "ev-applied", "meter": "m-7", "kwh": 1.5}'
t.eventually(lambda: "consuming" in d.log(), 30, "the daemon consumes the sample queue")
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "meters.m-7", "body": GOOD}])
t.eventually(lambda: b.pg.scalar("SELECT count(*) FROM meter_readings") == 1, 30, "the daemon applied ev-applied")
t.is_(d.terminate(timeout=20), 0, "the daemon stops with status 0")
SAMPLE_TABLES = ("meter_readings", "meter_totals", "oncebridge.processed_events", "oncebridge.dead_letters")


def rows():
    return [b.pg.scalar("SELECT count(*) FROM %s" % tbl) for tbl in SAMPLE_TABLES]


def tryit(payload, *args):
    out = subprocess.run([obtest.BIN, "-c", b.config, "try", "meter-readings", "--topic", "meters.m-7"] + list(args),
                         input=payload, capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr


def outcome(text):
    m = re.search(r"^outcome +(.*)$", text, re.M)
    return m.group(1) if m else None


rows_before = rows()
rc, text = tryit('{"event_id": "ev-new", "meter": "m-8", "kwh": 2.25}')
t.ok(rc == 0 and re.search(r'^event ID +"ev-new" \(json:event_id\)$', text, re.M)
     and re.search(r'^\$1 +"ev-new" \(event_id\)$', text, re.M) and re.search(r'^\$3 +"2.25" \(json:kwh\)$', text, re.M)
     and re.search(r'^\$4 +"m-7" \(topic_level:2\)$', text, re.M) and outcome(text).startswith("extracted"),
     "try, good payload: the event ID and each parameter with its source and value", diag=text)
rc, text = tryit('{"event_id": "ev-new", "meter": "m-8"}')
t.ok(rc == 0 and re.search(r'^\$3 +SQL NULL \(json:kwh\)$', text, re.M), "try: a missing field is SQL NULL",
     diag=text)
rc, text = tryit('{"event_id": "ev-new", "meter": "m-8", "kwh": 2.25}', "--db")
t.ok(rc == 0 and outcome(text) == "applied: 1 row affected (rolled back)", "try --db, good payload: applied, 1 row",
     diag=text)
rc, text = tryit(GOOD, "--db")
t.ok(rc == 0 and outcome(text).startswith('duplicate: route "meter-readings" processed event ID "ev-applied" before'),
     "try --db, the payload the daemon applied: duplicate", diag=text)
rc, text = tryit('{"event_id": "ev-bad", "meter": ', "--db")
t.ok(rc == 1 and outcome(text).startswith("dead-lettered: invalid JSON"), "try, bad JSON: dead-lettered", diag=text)
rc, text = tryit('{"meter": "m-8", "kwh": 1}', "--db")
t.ok(rc == 1 and outcome(text) == "dead-lettered: missing event ID", "try, no event ID: dead-lettered", diag=text)
rc, text = tryit('{"event_id": "ev-neg", "meter": "m-8", "kwh": -1}', "--db")
t.ok(rc == 1 and re.match(r"dead-lettered: the business SQL failed with SQLSTATE 23514: new row for relation "
                          r'"meter_readings" violates check constraint', outcome(text) or ""),
     "try --db, a CHECK violation: dead-lettered with SQLSTATE 23514 and the message", diag=text)
locker = b.pg.connect(autocommit=False)
locker.cursor().execute("LOCK TABLE meter_readings IN SHARE MODE")
started = time.monotonic()
rc, text = tryit('{"event_id": "ev-locked", "meter": "m-8", "kwh": 1}', "--db")
t.ok(rc == 1 and re.match(r"transient: .* failed with SQLSTATE 57014: canceling statement due to statement timeout; "
                          r"not acked, retried with backoff", outcome(text) or ""),
     "try --db, the table locked past statement_timeout_ms: transient (57014) in %.1f s" % (time.monotonic() - started),
     diag=text)
locker.rollback()
locker.close()
t.is_(rows(), rows_before, "try changed no row: business tables, processed_events, dead_letters")
raise SystemExit(t.done())
